"""One JSON error shape for every failure, and the mapping of core errors onto HTTP.

    {"error": {"code": "insufficient_points", "message": "...", "details": [...]}}

``details`` (validation only) lists ``{"field": "lines[0].qty", "message": "..."}``. No
response ever carries a traceback; unexpected errors are logged (method and path, never
headers, so never an API key) and answered with a bare 500.
"""
from __future__ import annotations

import logging

from fidelis.core import (
    IdempotencyConflict,
    InputError,
    InputProblem,
    InsufficientPoints,
    LateReceipt,
    LedgerBusy,
    ReceiptConflict,
    RedemptionError,
    ScoringError,
    UnknownCustomer,
)
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger("fidelis.server")

#: Most problems a validation error lists.
DETAILS_KEPT = 50


class ApiError(Exception):
    """An error the API answers with its own status and code."""

    def __init__(self, status: int, code: str, message: str, details: list[dict] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details, self.headers = status, code, message, details, headers


class RequestTooSlow(Exception):
    """The client did not send its whole request within the read deadline (408)."""


def error_response(status: int, code: str, message: str, details: list[dict] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    body = {"code": code, "message": message}
    if details:
        body["details"] = details
    response = jsonify(error=body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


#: Core errors a client can act on -> (status, code, message; None: the error's own, which
#: names only what the client sent). Any other error is the server's: a bare 500.
_CORE_ERRORS: tuple[tuple[type[Exception], int, str, str | None], ...] = (
    (UnknownCustomer, 404, "customer_not_found", None),
    (InsufficientPoints, 409, "insufficient_points", None),
    (IdempotencyConflict, 409, "idempotency_conflict",
     "this Idempotency-Key was already used for another redemption; use a new key for a new one"),
    (ReceiptConflict, 409, "receipt_conflict", None),
    (LateReceipt, 409, "late_receipt", None),
    (RedemptionError, 422, "redemption_refused", None),
    (ScoringError, 422, "unscorable_receipt", None),
    (LedgerBusy, 503, "ledger_busy", "the ledger is busy with another write; try again shortly"),
)


def problem_details(problems: list[InputProblem], header_fields: tuple[str, ...]) -> list[dict]:
    """Input problems of a request body as field errors: a receipt-level column is its own
    field, a line's column is ``lines[i].column`` (i from 0, in the body's order)."""
    details = []
    for problem in problems[:DETAILS_KEPT]:
        column = problem.column
        if problem.row is None or column in header_fields or column is None:
            field = column or "body"
        else:
            field = f"lines[{problem.row - 1}].{column}"
        details.append({"field": field, "message": problem.reason})
    return details


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        return error_response(error.status, error.code, error.message, error.details, error.headers)

    @app.errorhandler(InputError)
    def input_error(error: InputError):
        return error_response(422, "invalid_input", "the request has values that cannot be taken",
                              problem_details(error.problems, ()))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        message = {413: "the request body is larger than this endpoint accepts"}.get(error.code, error.description)
        return error_response(error.code or 500, code, message)

    @app.errorhandler(RequestTooSlow)
    def too_slow(error: RequestTooSlow):
        response = error_response(408, "request_timeout", "the request was not sent in time; send it again")
        response.headers["Connection"] = "close"
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        for kind, status, code, message in _CORE_ERRORS:
            if isinstance(error, kind):
                headers = {"Retry-After": "1"} if status == 503 else None
                return error_response(status, code, message or str(error), headers=headers)
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "the server could not complete the request")
