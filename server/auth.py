"""API keys: every route but health and the API document needs one.

Keys are sent as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>`` and checked by the
ledger (a SHA-256 of the secret, compared in constant time). Roles: ``read`` (balances,
history) and ``write`` (accrual, redemption, returns; it may read too). No key or an
unknown one is 401; a read key on a write route is 403. Keys are never logged.
"""
from __future__ import annotations

import functools
from typing import Callable

from flask import request

from fidelis.core.ledger import API_ROLES

from .errors import ApiError
from .handles import ledger


def presented_key() -> str | None:
    key = request.headers.get("X-API-Key")
    if key:
        return key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require(role: str) -> Callable:
    """A view decorator: the request must carry a key whose role allows ``role``."""
    needed = API_ROLES.index(role)

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def checked(*args, **kwargs):
            if role == "read":  # lookups: the key check and the view in one read snapshot
                with ledger().reading():
                    return authorized(*args, **kwargs)
            return authorized(*args, **kwargs)

        def authorized(*args, **kwargs):
            key = presented_key()
            if key is None:
                raise ApiError(401, "unauthenticated", "an API key is required (X-API-Key header)",
                               headers={"WWW-Authenticate": "Bearer"})
            granted = ledger().api_key_role(key)
            if granted is None:
                raise ApiError(401, "unauthenticated", "the API key is not valid",
                               headers={"WWW-Authenticate": "Bearer"})
            if API_ROLES.index(granted) < needed:
                raise ApiError(403, "forbidden", f"this route needs a {role} key; the key given is {granted}")
            return view(*args, **kwargs)

        return checked

    return decorate
