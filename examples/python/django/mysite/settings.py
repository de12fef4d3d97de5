"""A minimal Django project: one app, no database.

    rgunicorn --chdir examples/python/django mysite.wsgi
"""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "development-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "mysite.urls"
INSTALLED_APPS = ["hello"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES = {}
USE_TZ = True
