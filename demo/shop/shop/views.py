from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render

from shop.models import Category, Order, OrderLine, Product, Tag


def product_list(request):
    products = Product.objects.select_related('category').prefetch_related('tags')[:100]
    return render(request, 'shop/product_list.html', {'products': products, 'count': Product.objects.count()})


def product_detail(request, sku):
    product = get_object_or_404(Product.objects.select_related('category'), sku=sku)
    return render(request, 'shop/product_detail.html', {'product': product})


def health(request):
    """What an HTTP check needs to tell a working release from a broken one: the database answers,
    every migration on disk is applied, and the shop's tables can be read."""
    try:
        executor = MigrationExecutor(connection)
        applied = executor.loader.applied_migrations
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        rows = {
            'category': Category.objects.count(),
            'tag': Tag.objects.count(),
            'product': Product.objects.count(),
            'order': Order.objects.count(),
            'orderline': OrderLine.objects.count(),
        }
    except Exception as e:  # noqa: BLE001 - a health check reports every failure, it never raises
        return JsonResponse({'ok': False, 'error': '%s: %s' % (type(e).__name__, e)}, status=503)
    ok = not pending
    return JsonResponse({
        'ok': ok,
        'applied_migrations': len(applied),
        'pending_migrations': ['%s.%s' % (m.app_label, m.name) for m, _backwards in pending],
        'rows': rows,
    }, status=200 if ok else 503)
