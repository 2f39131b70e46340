from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import path

from shop import views

urlpatterns = [
    path('', views.product_list, name='product_list'),
    path('products/<str:sku>/', views.product_detail, name='product_detail'),
    path('health/', views.health, name='health'),
    path('admin/', admin.site.urls),
] + static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
