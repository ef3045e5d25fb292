"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

from idp.app import create_app

app = create_app()
