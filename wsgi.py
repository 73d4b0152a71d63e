"""WSGI entry point for any WSGI server. With gunicorn, use ghimaging's
settings (threaded workers, see ``ghimaging/gunicorn_conf.py``)::

    gunicorn -c python:ghimaging.gunicorn_conf -b 0.0.0.0:8000 wsgi:app

Starts the Orthanc sync thread in each worker process; a lease in the
database keeps one sync per server."""

from ghimaging import create_app
from ghimaging.orthanc import worker

app = create_app()
worker.start(app)
