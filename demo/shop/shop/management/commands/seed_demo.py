"""Fill the shop with deterministic demo data: ``manage.py seed_demo --products 50 --orders 20 --with-images``.

Running it again adds nothing that is already there (rows are matched by their natural keys), so a
deploy can seed unconditionally."""

import io
import random
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand
from django.db import transaction

from shop.models import Category, Order, OrderLine, Product, Tag

CATEGORIES = [('tools', 'Tools'), ('garden', 'Garden'), ('kitchen', 'Kitchen'), ('books', 'Books')]
TAGS = ['new', 'sale', 'eco', 'bestseller', 'gift']


def png_bytes(rng, size=48):
    from PIL import Image  # Pillow is a requirement of ImageField anyway
    colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    buf = io.BytesIO()
    Image.new('RGB', (size, size), colour).save(buf, format='PNG')
    return buf.getvalue()


class Command(BaseCommand):
    help = 'Create demo categories, tags, products (optionally with images), customers and orders.'

    def add_arguments(self, parser):
        parser.add_argument('--products', type=int, default=20)
        parser.add_argument('--orders', type=int, default=10)
        parser.add_argument('--customers', type=int, default=3)
        parser.add_argument('--with-images', action='store_true', help='write a PNG per product into MEDIA_ROOT')
        parser.add_argument('--seed', type=int, default=42, help='random seed: the same seed gives the same data')

    @transaction.atomic
    def handle(self, *args, **opts):
        rng = random.Random(opts['seed'])
        cats = [Category.objects.get_or_create(slug=slug, defaults={'name': name})[0] for slug, name in CATEGORIES]
        tags = [Tag.objects.get_or_create(name=name)[0] for name in TAGS]
        User = get_user_model()
        customers = []
        for i in range(opts['customers']):
            user, created = User.objects.get_or_create(username='customer%03d' % i,
                                                       defaults={'email': 'customer%03d@example.com' % i})
            if created:
                user.set_unusable_password()
                user.save()
            customers.append(user)
        products = []
        for i in range(opts['products']):
            sku = 'SKU-%05d' % i
            price = Decimal(rng.randrange(100, 20000)) / 100
            product, created = Product.objects.get_or_create(sku=sku, defaults={
                'name': 'Demo product %d' % i, 'category': rng.choice(cats), 'price': price,
                'stock': rng.randrange(0, 500), 'slug': 'sku-%05d-demo-product-%d' % (i, i)})
            if created:
                product.tags.set(rng.sample(tags, rng.randrange(0, 3)))
            if opts['with_images'] and not product.image:
                product.image.save('%s.png' % sku.lower(), ContentFile(png_bytes(rng)), save=True)
            products.append(product)
        made = 0
        for i in range(opts['orders'] if customers and products else 0):
            number = 'ORD-%06d' % i
            if Order.objects.filter(number=number).exists():
                continue
            order = Order.objects.create(number=number, customer=rng.choice(customers),
                                         status=rng.choice(['new', 'paid', 'shipped']))
            total = Decimal(0)
            for product in rng.sample(products, min(len(products), rng.randrange(1, 4))):
                qty = rng.randrange(1, 5)
                OrderLine.objects.create(order=order, product=product, quantity=qty, unit_price=product.price)
                total += qty * product.price
            order.total = total
            order.save(update_fields=['total'])
            made += 1
        self.stdout.write('seeded: %d categories, %d tags, %d customers, %d products, %d new orders'
                          % (len(cats), len(tags), len(customers), len(products), made))
