"""Refuse request values PostgreSQL cannot store (the NUL character) with a 400, before any view runs."""
from __future__ import annotations

from flask import abort, request


def refuse_nul() -> None:
    """A NUL in a form field or query value would fail deep in the database with a 500; say so up front."""
    for values in (request.args, request.form):
        for key, value in values.items(multi=True):
            if "\x00" in key or "\x00" in value:
                abort(400, "The request contains a NUL character, which no field accepts.")


def init_app(app) -> None:
    app.before_request(refuse_nul)
