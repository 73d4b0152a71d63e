from flask import Flask


def init_app(app: Flask) -> None:
    from ..extensions import csrf
    from . import (  # noqa: F401 - each module registers its routes on bp
        catalog,
        orthanc,
        patients,
        requests,
        servers,
    )
    from .routes import bp

    csrf.exempt(bp)  # bearer tokens, no cookies: CSRF does not apply
    app.register_blueprint(bp)
