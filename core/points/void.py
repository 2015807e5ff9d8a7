"""Voiding a receipt: the repair for a receipt that should never have been stored.

A receipt dated years ahead (a mistyped year, a till's clock gone wrong) makes every real
receipt of its customer late, for history is never rescored. Voiding takes it out of the
customer's history: its points are taken back (from its own lot first, then as a return
takes them under ``negative_balance``), the receipt moves to ``voided_receipts`` with the
reason, and the customer's scoring state is rebuilt by replaying the receipts that remain.
Its id is free again, so the corrected receipt can be loaded.

Only the last receipt of a customer (in processing order) can be voided — voiding one in
the middle would rescore the receipts after it — and not one of a closed month, one with
returns, or a return.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from ..engine import kernel
from ..errors import LedgerError, UnknownReceipt
from ..ledger.closes import last_closed_month
from ..ledger.customers import (
    advance_state_generation,
    current_state_generation,
    customer_details,
    save_state,
)
from ..ledger.handle import Ledger
from ..ledger.journal import end_run, start_run
from ..ledger.receipts import move_to_voided, receipt_for_void
from ..localtime import month_label, month_of
from .replay import ledger_batch, replay_part
from .takeback import take_points


@dataclass(frozen=True)
class Voided:
    """What voiding one receipt did."""

    receipt_id: str
    customer_id: str | None
    points_taken: int
    #: already spent and, under ``negative_balance = "floor_zero"``, not taken back
    points_unrecovered: int


def void_receipt(ledger: Ledger, receipt_id: str, reason: str) -> Voided:
    """Void one receipt (module docstring), in one transaction; refused with a reason that
    says what to do first."""
    if not reason.strip():
        raise LedgerError("voiding a receipt needs a reason")
    program, compiled = ledger.compiled_program()
    with ledger.write() as connection:
        found = receipt_for_void(connection, receipt_id)
        if found is None:
            raise UnknownReceipt(f"no receipt {receipt_id!r} in the ledger")
        customer, customer_id, instant_us, local_day, points, is_return, returns, later = found
        month = month_of(dt.date(1970, 1, 1) + dt.timedelta(days=local_day))
        closed = last_closed_month(ledger)
        if is_return:
            raise LedgerError(f"{receipt_id!r} is a return; a return cannot be voided")
        if returns:
            raise LedgerError(f"receipt {receipt_id!r} has returns ({', '.join(returns)}); it cannot be voided")
        if closed is not None and month <= closed:
            raise LedgerError(f"receipt {receipt_id!r} is in {month_label(month)}, a closed month; it cannot be voided")
        if later is not None:
            raise LedgerError(f"receipt {receipt_id!r} is not customer {customer_id}'s last receipt; void "
                              f"{later!r} first (only the last one can go: history is not rescored)")
        run_id = start_run(connection, "void", {"receipt": receipt_id, "reason": reason}, {})
        unrecovered = 0
        if customer is not None and points:
            # dated as the receipt: its earn and their reversal net out at the same instant
            unrecovered = take_points(ledger, connection, customer, points, instant_us, receipt_id, run_id,
                                      first_from_month=month)
        move_to_voided(ledger, connection, receipt_id, unrecovered, run_id, reason)
        if customer is not None:
            _rebuild_state(ledger, connection, compiled, customer)
        advance_state_generation(ledger, connection, current_state_generation(connection), np.array([month]))
        end_run(connection, run_id)
    return Voided(receipt_id, customer_id, points - unrecovered, unrecovered)


def _rebuild_state(ledger: Ledger, connection, compiled, customer: int) -> None:
    """The customer's scoring state from their remaining receipts (inside the transaction)."""
    ids, birth_months = customer_details(ledger, np.array([customer]))
    state = kernel.CustomerState.for_program(compiled, capacity=1)
    state.index_of(ids)
    state.records["birth_month"][:1] = birth_months
    batch, _ = ledger_batch(ledger, customers=np.array([customer]))
    if len(batch):
        replay_part(ledger, batch, 0, len(batch), compiled, state)
    save_state(connection, state, np.array([0]), np.array([customer]))
