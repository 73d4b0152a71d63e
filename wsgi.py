"""WSGI entry point: ``gunicorn wsgi:app``."""

from ghimaging import create_app

app = create_app()
