"""`serving.asgi:app` for uvicorn: settings from the environment (read when uvicorn imports it)."""

from __future__ import annotations

from serving.app import create_app

app = create_app()
