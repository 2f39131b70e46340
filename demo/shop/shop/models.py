"""A small shop: categories, tagged products with images, orders with lines. Every model has a
natural key, so ``dumpdata --natural-foreign --natural-primary`` fixtures load into any database."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class NaturalKeyManager(models.Manager):
    key_fields = ()

    def get_by_natural_key(self, *key):
        return self.get(**dict(zip(self.key_fields, key)))


class CategoryManager(NaturalKeyManager):
    key_fields = ('slug',)


class Category(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)

    objects = CategoryManager()

    class Meta:
        verbose_name_plural = 'categories'
        ordering = ['name']

    def natural_key(self):
        return (self.slug,)

    def __str__(self):
        return self.name


class TagManager(NaturalKeyManager):
    key_fields = ('name',)


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)

    objects = TagManager()

    def natural_key(self):
        return (self.name,)

    def __str__(self):
        return self.name


class ProductManager(NaturalKeyManager):
    key_fields = ('sku',)


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name='products')
    price = models.DecimalField(max_digits=10, decimal_places=2)
    image = models.ImageField(upload_to='products/', blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name='products')
    stock = models.PositiveIntegerField(default=0)
    slug = models.SlugField(max_length=220, blank=True, default='')
    if settings.SHOP_PENDING_CHANGE:
        # A model change with no migration, for the `makemigrations --check` question (SHOP_PENDING_CHANGE=1).
        weight_grams = models.PositiveIntegerField(null=True, blank=True)

    objects = ProductManager()

    class Meta:
        ordering = ['sku']

    def natural_key(self):
        return (self.sku,)

    natural_key.dependencies = ['shop.category', 'shop.tag']

    def __str__(self):
        return '%s %s' % (self.sku, self.name)


class OrderManager(NaturalKeyManager):
    key_fields = ('number',)


class Order(models.Model):
    STATUSES = [('new', 'New'), ('paid', 'Paid'), ('shipped', 'Shipped'), ('cancelled', 'Cancelled')]

    number = models.CharField(max_length=20, unique=True)
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name='orders')
    created = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=10, choices=STATUSES, default='new')
    products = models.ManyToManyField(Product, through='OrderLine', related_name='orders')
    total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    priority = models.PositiveSmallIntegerField(default=0)

    objects = OrderManager()

    class Meta:
        ordering = ['number']

    def natural_key(self):
        return (self.number,)

    natural_key.dependencies = ['auth.user', 'shop.product']

    def __str__(self):
        return self.number


class OrderLineManager(models.Manager):
    def get_by_natural_key(self, number, sku):
        return self.get(order__number=number, product__sku=sku)


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name='lines')
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name='+')
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)

    objects = OrderLineManager()

    class Meta:
        unique_together = [('order', 'product')]

    def natural_key(self):
        return (self.order.number, self.product.sku)

    natural_key.dependencies = ['shop.order', 'shop.product']
