"""Request and response bodies: the models that validate requests and document the API.

The same models are the OpenAPI document (``GET /openapi.json``, built by spectree), so the
documentation cannot drift from what is accepted. Amounts are decimal strings in major units,
as in receipt files ("12.50"): JSON numbers are binary floating point and inexact.
"""
from __future__ import annotations

from typing import Optional

from fidelis.core import MAX_QTY
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Ids and names: printable text (a control character in an id is a corrupt till, not a receipt)
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
_ID = Field(min_length=1, max_length=128, pattern=_PRINTABLE)
_AMOUNT = Field(pattern=r"^[0-9]{1,15}(\.[0-9]{1,4})?$", description='decimal text in major units, e.g. "12.50"')


class _Strict(BaseModel):
    """A request body: unknown fields refused, no coercion (``"100"`` is not a number of points)."""

    model_config = ConfigDict(extra="forbid", strict=True)


# --- requests -----------------------------------------------------------------------------------


class LineIn(_Strict):
    category: str = Field(min_length=1, max_length=128, pattern=_PRINTABLE)
    qty: int = Field(ge=1, le=MAX_QTY)
    amount: str = _AMOUNT
    sku: Optional[str] = Field(default=None, max_length=128, pattern=_PRINTABLE)


class ReceiptIn(_Strict):
    """One receipt, as a row group of a receipts file with its lines as a list."""

    receipt_id: str = _ID
    customer_id: Optional[str] = Field(default=None, max_length=128, pattern=_PRINTABLE,
                                       description="empty or absent: anonymous")
    store_id: str = _ID
    ts: str = Field(min_length=10, max_length=40, description="ISO 8601; without an offset: the chain's local time")
    lines: list[LineIn] = Field(min_length=1, max_length=1000)


class ReturnLineIn(_Strict):
    """Units brought back of one line of the original, named by position (from 1) or sku."""

    line: Optional[int] = Field(default=None, ge=1, le=100_000)
    sku: Optional[str] = Field(default=None, min_length=1, max_length=128, pattern=_PRINTABLE)
    qty: int = Field(ge=1, le=MAX_QTY)

    @model_validator(mode="after")
    def _names_a_line(self) -> "ReturnLineIn":
        if self.line is None and self.sku is None:
            raise ValueError("name the line returned by its position (line) or its sku")
        return self


class ReturnIn(_Strict):
    return_id: str = _ID
    original_receipt_id: str = _ID
    customer_id: Optional[str] = Field(default=None, max_length=128, pattern=_PRINTABLE,
                                       description="when given, the original's")
    store_id: str = _ID
    ts: str = Field(min_length=10, max_length=40)
    lines: list[ReturnLineIn] = Field(min_length=1, max_length=1000)


class RedemptionIn(_Strict):
    points: int = Field(ge=1, le=10**15)


class HistoryQuery(BaseModel):
    """Query parameters arrive as text: numbers are read from it."""

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=20, ge=1, le=200)
    cursor: Optional[str] = Field(default=None, pattern=r"^[0-9]{1,18}$",
                                  description="next_cursor of the previous page")


# --- responses ----------------------------------------------------------------------------------


class BalanceOut(BaseModel):
    customer_id: str
    points: int
    tier: str
    next_tier: Optional[str]
    to_next_tier: Optional[int] = Field(description="measure units still to reach the next tier")
    expiring_points: int = Field(description="points the next month-end close expires as things stand")
    expiring_at_close_of: Optional[str]


class HistoryEntry(BaseModel):
    entry_id: int
    kind: str
    points: int
    at: str
    reference: str


class HistoryOut(BaseModel):
    customer_id: str
    entries: list[HistoryEntry]
    next_cursor: Optional[str]


class AccrualOut(BaseModel):
    receipt_id: str
    customer_id: Optional[str]
    tier: Optional[str]
    points: dict[str, int]
    unrecovered_points: int
    balance: Optional[int]
    existing: bool
    is_return: bool


class BatchOut(BaseModel):
    receipts: int
    new: int
    existing: int
    points: int


class RedemptionOut(BaseModel):
    customer_id: str
    points: int
    reference: str
    entry_id: int
    balance: int
    existing: bool


class HealthOut(BaseModel):
    status: str
    program: str


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Optional[list[ErrorDetail]] = None


class ErrorOut(BaseModel):
    error: ErrorBody
