"""Customers: balance, history and redemption."""
from __future__ import annotations

from fidelis import core
from flask import Blueprint, request
from spectree import Response

from .auth import require
from .errors import ApiError
from .handles import ledger
from .models import (
    BalanceOut,
    ErrorOut,
    HistoryOut,
    HistoryQuery,
    RedemptionIn,
    RedemptionOut,
)
from .spec import spec

blueprint = Blueprint("customers", __name__, url_prefix="/v1/customers")
_ERRORS = {"HTTP_401": ErrorOut, "HTTP_403": ErrorOut, "HTTP_404": ErrorOut}


@blueprint.get("/<customer_id>/balance")
@require("read")
@spec.validate(resp=Response(HTTP_200=BalanceOut, **_ERRORS), tags=["customers"], skip_validation=True)
def balance(customer_id: str):
    """Points, tier, progress to the next tier, and the points the next close would expire."""
    handle = ledger()
    standing = core.standing(handle, customer_id)
    close, expiring = core.expiring_at_next_close(handle, customer_id, index=standing.customer_index)
    return BalanceOut(customer_id=customer_id, points=standing.points, tier=standing.tier,
                      next_tier=standing.next_tier, to_next_tier=standing.to_next_tier,
                      expiring_points=expiring, expiring_at_close_of=close)


@blueprint.get("/<customer_id>/history")
@require("read")
@spec.validate(query=HistoryQuery, resp=Response(HTTP_200=HistoryOut, HTTP_422=ErrorOut, **_ERRORS),
               tags=["customers"])
def history(customer_id: str):
    """Journal entries, newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    query: HistoryQuery = request.context.query
    before = int(query.cursor) if query.cursor is not None else None
    entries = core.history(ledger(), customer_id, limit=query.limit + 1, before_entry=before)
    more = len(entries) > query.limit
    entries = entries[:query.limit]
    return HistoryOut(customer_id=customer_id, entries=entries,
                      next_cursor=str(entries[-1]["entry_id"]) if more else None)


@blueprint.post("/<customer_id>/redemptions")
@require("write")
@spec.validate(json=RedemptionIn, resp=Response(HTTP_200=RedemptionOut, HTTP_201=RedemptionOut,
                                                HTTP_409=ErrorOut, HTTP_422=ErrorOut, **_ERRORS),
               tags=["customers"])
def redeem(customer_id: str):
    """Spend points, oldest first, once per ``Idempotency-Key`` header (required).

    The same key again gives the first result (200, ``existing``); with other points, 409.
    Fewer points than asked: 409 ``insufficient_points``.
    """
    key = request.headers.get("Idempotency-Key", "")
    if not key or len(key) > 128 or not key.isprintable():
        raise ApiError(400, "missing_idempotency_key",
                       "a redemption needs an Idempotency-Key header (1 to 128 printable characters)")
    body: RedemptionIn = request.context.json
    done = core.redeem(ledger(), customer_id, body.points, key)
    return RedemptionOut.model_validate(done, from_attributes=True), 200 if done.existing else 201
