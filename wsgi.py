"""WSGI entry point: ``gunicorn wsgi:app``. Starts the Orthanc sync thread in
each worker process; a lease in the database keeps one sync per server."""

from ghimaging import create_app
from ghimaging.orthanc import worker

app = create_app()
worker.start(app)
