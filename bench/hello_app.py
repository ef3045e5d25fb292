"""The baseline for bench/http_ratio.py: a plain hello-world Flask view, served by the same gunicorn config."""

from __future__ import annotations

from flask import Flask


def create_app() -> Flask:
    app = Flask("hello")

    @app.get("/hello")
    def hello() -> str:
        return "Hello, World!"

    return app
