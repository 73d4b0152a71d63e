from flask import Flask


def init_app(app: Flask) -> None:
    from .routes import bp, clinic_bp

    app.register_blueprint(bp)
    app.register_blueprint(clinic_bp)
