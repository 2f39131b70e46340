from django.contrib import admin

from shop.models import Category, Order, OrderLine, Product, Tag


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ('number', 'customer', 'status', 'total', 'created')
    inlines = [OrderLineInline]


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ('sku', 'name', 'category', 'price', 'stock')
    search_fields = ('sku', 'name')


admin.site.register(Category)
admin.site.register(Tag)
