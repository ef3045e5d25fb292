"""Gunicorn configuration for `gunicorn wsgi:app` (the same settings `idp serve` uses)."""

from idp.gunicorn_conf import *  # noqa: F401,F403
