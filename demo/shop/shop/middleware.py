"""Maintenance mode the way a proxy would do it: while the flag file exists, answer 503.

Verification during a maintenance window must reach the new release before users do, so a request
carrying the bypass token (``X-Djangoops-Bypass``, set in SHOP_MAINTENANCE_BYPASS) is let through."""

import os

from django.conf import settings
from django.http import HttpResponse


class MaintenanceModeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        flag = settings.SHOP_MAINTENANCE_FLAG
        if flag and os.path.exists(flag):
            token = settings.SHOP_MAINTENANCE_BYPASS
            if not token or request.headers.get('X-Djangoops-Bypass') != token:
                response = HttpResponse('<h1>Down for maintenance</h1><p>Back in a few minutes.</p>', status=503)
                response['Retry-After'] = '120'
                return response
        return self.get_response(request)
