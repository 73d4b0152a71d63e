from flask import Flask


def init_app(app: Flask) -> None:
    from . import print_routes, result_routes, viewer_routes  # noqa: F401 - register their routes on bp
    from .effects import listen
    from .routes import bp

    listen()
    app.register_blueprint(bp)
