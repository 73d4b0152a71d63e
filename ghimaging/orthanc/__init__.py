from flask import Flask


def init_app(app: Flask) -> None:
    from . import matching
    from . import inbox  # noqa: F401  (registers the Inbox views on bp)
    from .routes import bp

    matching.connect()
    app.register_blueprint(bp)
