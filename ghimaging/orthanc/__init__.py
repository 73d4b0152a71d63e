from flask import Flask


def init_app(app: Flask) -> None:
    from . import images, inbox, matching, rendering  # noqa: F401  (images and inbox register their views on bp)
    from .routes import bp

    app.register_blueprint(bp)
    # Templates ask what a series holds (preview or placeholder) and which
    # studies a request's report is about (the print names their patients).
    app.jinja_env.globals["series_kind"] = rendering.series_kind
    app.jinja_env.globals["linked_studies"] = matching.studies_of
