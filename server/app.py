"""The application factory."""
from __future__ import annotations

import os
from collections.abc import Mapping

import json

from fidelis.core import Ledger
from flask import Flask, Request, request
from flask.json.provider import DefaultJSONProvider

from . import customers, errors, meta, receipts, returns
from .config import BATCH_ENDPOINTS, settings
from .errors import ApiError
from .spec import spec


class StrictJSON(DefaultJSONProvider):
    """Request bodies parsed strictly: a key given twice is refused (which one a client meant
    is unknowable; JSON parsers disagree), and so is nesting too deep to be a receipt."""

    sort_keys = False

    def loads(self, s, **kwargs):
        try:
            return json.loads(s, object_pairs_hook=_without_duplicates, **kwargs)
        except RecursionError:
            raise ValueError("nested too deeply") from None


class StrictRequest(Request):
    """A request whose body that is not valid JSON says why (the key given twice, the depth)."""

    def on_json_loading_failed(self, e: ValueError | None):
        raise ApiError(400, "malformed_json", f"the request body is not valid JSON: {e}")


def _without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    found = dict(pairs)
    if len(found) < len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"the key {twice!r} appears more than once")
    return found


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    """The Fidelis API for one ledger. Settings: :data:`.config.DEFAULTS`, then ``FIDELIS_*``
    environment variables, then ``config``. The ledger is opened (and migrated) once here, so
    a wrong path fails at start, not on the first request."""
    effective = settings(config, os.environ)
    # (no instance folder is used; naming one spares Flask a package search that editable
    # installs with mapped package folders cannot answer)
    app = Flask(__name__, instance_path=os.path.abspath(os.path.dirname(str(effective["LEDGER"])) or "."))
    app.config.update(effective)
    app.json = StrictJSON(app)
    app.request_class = StrictRequest
    Ledger(app.config["LEDGER"]).close()

    @app.before_request
    def bound_the_body():
        batch = request.endpoint in BATCH_ENDPOINTS
        limit = app.config["MAX_BATCH_BYTES" if batch else "MAX_JSON_BYTES"]
        request.max_content_length = limit
        if request.method == "POST" and request.content_length is None:
            # a body of unknown length could only be cut short at the limit: refuse it whole
            raise ApiError(411, "length_required", "send the body with a Content-Length header")
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, "request_entity_too_large",
                           f"the request body is {request.content_length} bytes; this endpoint takes at most {limit}")

    errors.init_app(app)
    for module in (meta, customers, receipts, returns):
        app.register_blueprint(module.blueprint)
    spec.register(app)
    return app
