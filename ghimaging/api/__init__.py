from flask import Flask


def init_app(app: Flask) -> None:
    from ..extensions import csrf
    from . import (
        orthanc,  # noqa: F401 - registers its routes on bp
        servers,  # noqa: F401 - registers its routes on bp
    )
    from .routes import bp

    csrf.exempt(bp)  # bearer tokens, no cookies: CSRF does not apply
    app.register_blueprint(bp)
