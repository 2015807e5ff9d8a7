"""Receipts: real-time accrual, one receipt as JSON or a columnar msgpack batch."""
from __future__ import annotations

import threading

import pyarrow as pa
from fidelis.core import (
    Accrued,
    GroupCommit,
    InputError,
    accrue,
    check_receipt_table,
    decode_msgpack_batch,
)
from flask import Blueprint, current_app, request
from spectree import Response

from .auth import require
from .errors import ApiError, problem_details
from .handles import ledger
from .models import AccrualOut, BatchOut, ErrorOut, ReceiptIn
from .spec import spec

blueprint = Blueprint("receipts", __name__, url_prefix="/v1")
ERRORS = {"HTTP_401": ErrorOut, "HTTP_403": ErrorOut, "HTTP_409": ErrorOut, "HTTP_413": ErrorOut,
           "HTTP_422": ErrorOut}
TEXT = pa.string()
_GROUP_LOCK = threading.Lock()


@blueprint.post("/receipts")
@require("write")
@spec.validate(json=ReceiptIn, resp=Response(HTTP_200=AccrualOut, HTTP_201=AccrualOut, **ERRORS),
               tags=["receipts"])
def accrue_receipt():
    """Score one receipt now, with the kernel and state bulk loads use, and commit it.

    ``receipt_id`` is the idempotency key: the same receipt again answers 200 with its first
    result (``existing``); another receipt under the same id is 409.
    """
    body: ReceiptIn = request.context.json
    lines = body.lines
    table = pa.table({
        "receipt_id": pa.array([body.receipt_id] * len(lines), TEXT),
        "customer_id": pa.array([body.customer_id] * len(lines), TEXT),
        "store_id": pa.array([body.store_id] * len(lines), TEXT),
        "ts": pa.array([body.ts] * len(lines), TEXT),
        "category": pa.array([line.category for line in lines], TEXT),
        "qty": pa.array([line.qty for line in lines], pa.int64()),
        "amount": pa.array([line.amount for line in lines], TEXT),
        "sku": pa.array([line.sku for line in lines], TEXT),
    })
    return accrued(accrue_table(table, ("receipt_id", "customer_id", "store_id", "ts"))[0])


@blueprint.post("/receipts/batch")
@require("write")
@spec.validate(resp=Response(HTTP_200=BatchOut, HTTP_415=ErrorOut, **ERRORS), tags=["receipts"])
def accrue_batch():
    """A columnar msgpack batch (``Content-Type: application/msgpack``; the layout `fidelis
    load` reads), scored and committed all or nothing. Receipts already loaded are skipped."""
    if request.mimetype != "application/msgpack":
        raise ApiError(415, "unsupported_media_type", "send the batch as application/msgpack")
    table = decode_msgpack_batch(request.get_data(cache=False), source="request body")
    if table.num_rows > current_app.config["MAX_BATCH_LINES"]:
        raise ApiError(413, "request_entity_too_large",
                       f"the batch has {table.num_rows} lines; at most {current_app.config['MAX_BATCH_LINES']} "
                       "are taken at once")
    results = accrue_table(table, None)
    new = [result for result in results if not result.existing]
    return BatchOut(receipts=len(results), new=len(new), existing=len(results) - len(new),
                    points=sum(result.points["points"] for result in new))


def accrue_table(table: pa.Table, header_fields: tuple[str, ...] | None) -> list[Accrued]:
    """Validate with the file readers' rules and accrue; problems name body fields (JSON) or
    rows (a batch)."""
    handle = ledger()
    info = handle.current_program().program.info
    try:
        if header_fields is None:  # a batch is a commit of its own
            return accrue(handle, check_receipt_table(table, timezone=info.timezone, minor_units=info.minor_units,
                                                      source="request body"))
        return _group_commit(info).accrue(handle, table)
    except InputError as error:
        if header_fields is None:
            details = [{"field": f"row {problem.row}.{problem.column}" if problem.row else (problem.column or "body"),
                        "message": problem.reason} for problem in error.problems[:50]]
        else:
            details = problem_details(error.problems, header_fields)
        raise ApiError(422, "invalid_input", "the request has values that cannot be taken", details) from None


def _group_commit(info) -> GroupCommit:
    """This process's group commit for the ledger's program (made on first use)."""
    extensions = current_app.extensions
    group = extensions.get("fidelis.group_commit")
    if group is None or (group.timezone, group.minor_units) != (info.timezone, info.minor_units):
        with _GROUP_LOCK:
            group = extensions.get("fidelis.group_commit")
            if group is None or (group.timezone, group.minor_units) != (info.timezone, info.minor_units):
                group = extensions["fidelis.group_commit"] = GroupCommit(info.timezone, info.minor_units)
    return group


def accrued(result: Accrued):
    return AccrualOut(**vars(result)), 200 if result.existing else 201
