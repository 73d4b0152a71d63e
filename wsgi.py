"""WSGI entry point for any WSGI server. With gunicorn, use ghimaging's
settings (threaded workers, see ``ghimaging/gunicorn_conf.py``)::

    gunicorn -c python:ghimaging.gunicorn_conf -b 0.0.0.0:8000 wsgi:app

Starts the background threads (Orthanc sync, GNU Health) in each worker
process (once: gunicorn_conf's ``post_worker_init`` finds them running);
leases in the database keep each job single."""

from ghimaging import background, create_app

app = create_app()
background.start(app)
