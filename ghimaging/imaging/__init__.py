from flask import Flask


def init_app(app: Flask) -> None:
    from . import result_routes  # noqa: F401 - registers its routes on bp
    from .effects import listen
    from .routes import bp

    listen()
    app.register_blueprint(bp)
