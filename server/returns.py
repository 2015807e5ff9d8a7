"""Returns: goods brought back, and the points they earned taken back."""
from __future__ import annotations

import pyarrow as pa
from fidelis.core import RETURN
from flask import Blueprint, request
from spectree import Response

from .auth import require
from .models import AccrualOut, ReturnIn
from .receipts import ERRORS, TEXT, accrue_table, accrued
from .spec import spec

blueprint = Blueprint("returns", __name__, url_prefix="/v1/returns")


@blueprint.post("")
@require("write")
@spec.validate(json=ReturnIn, resp=Response(HTTP_200=AccrualOut, HTTP_201=AccrualOut, **ERRORS),
               tags=["returns"])
def take_return():
    """Goods brought back: take back what they earned, re-scored in the original's context.

    ``return_id`` is the idempotency key. A return of an unknown receipt, of a line it does
    not have, or of more than was bought (counting earlier returns) is 422, naming why.
    """
    body: ReturnIn = request.context.json
    lines = body.lines
    count = len(lines)
    table = pa.table({
        "receipt_id": pa.array([body.return_id] * count, TEXT),
        "customer_id": pa.array([body.customer_id] * count, TEXT),
        "store_id": pa.array([body.store_id] * count, TEXT),
        "ts": pa.array([body.ts] * count, TEXT),
        "category": pa.nulls(count, TEXT),
        "qty": pa.array([line.qty for line in lines], pa.int64()),
        "amount": pa.nulls(count, TEXT),
        "sku": pa.array([line.sku for line in lines], TEXT),
        "kind": pa.array([RETURN] * count, TEXT),
        "original_receipt_id": pa.array([body.original_receipt_id] * count, TEXT),
        "line": pa.array([None if line.line is None else str(line.line) for line in lines], TEXT),
    })
    header = ("receipt_id", "customer_id", "store_id", "ts", "original_receipt_id")
    return accrued(accrue_table(table, header)[0])
