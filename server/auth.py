"""API keys: every route but health and the API document needs one.

Keys are sent as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>`` and checked by the
ledger (a SHA-256 of the secret, compared in constant time). Roles: ``read`` (balances,
history) and ``write`` (accrual, redemption, returns; it may read too). No key or an
unknown one is 401; a read key on a write route is 403. Keys are never logged.
"""
from __future__ import annotations

import functools
from typing import Callable

from fidelis.core import API_ROLES, api_key_role
from flask import request

from .config import BATCH_ENDPOINTS
from .errors import ApiError
from .handles import ledger


def presented_key() -> str | None:
    key = request.headers.get("X-API-Key")
    if key:
        return key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _check_key(granted: str | None, key: str | None, role: str, needed: int) -> None:
    if key is None:
        raise ApiError(401, "unauthenticated", "an API key is required (X-API-Key header)",
                       headers={"WWW-Authenticate": "Bearer"})
    if granted is None:
        raise ApiError(401, "unauthenticated", "the API key is not valid", headers={"WWW-Authenticate": "Bearer"})
    if API_ROLES.index(granted) < needed:
        raise ApiError(403, "forbidden", f"this route needs a {role} key; the key given is {granted}")


def _parse_json_body() -> None:
    """A JSON body is parsed once here, after the key check (cached for the view), by the
    app's strict parser (:class:`.app.StrictJSON`); a batch's body is the batch endpoint's to
    read. A body of any other type is 415."""
    if request.endpoint in BATCH_ENDPOINTS or not request.content_length:
        return
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as JSON (Content-Type: application/json)")
    request.get_json()  # not JSON: ApiError 400 malformed_json with the reason (.app.StrictRequest)


def require(role: str) -> Callable:
    """A view decorator: the request must carry a key whose role allows ``role``."""
    needed = API_ROLES.index(role)

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def checked(*args, **kwargs):
            handle = ledger()
            with handle.reading():  # one read snapshot: the key check and, for lookups, the view
                _check_key(api_key_role(handle, key) if (key := presented_key()) else None, key, role, needed)
                _parse_json_body()
                if role == "read":
                    return view(*args, **kwargs)
            return view(*args, **kwargs)

        return checked

    return decorate
