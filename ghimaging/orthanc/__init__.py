from flask import Flask


def init_app(app: Flask) -> None:
    from . import matching
    from .routes import bp

    matching.connect()
    app.register_blueprint(bp)
