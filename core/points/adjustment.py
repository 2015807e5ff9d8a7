"""Adjustments: manual corrections of a balance (goodwill, a fixed error), with a reason."""
from __future__ import annotations

import numpy as np

from ..errors import IdempotencyConflict, LedgerError
from ..ledger.clock import now_us
from ..ledger.customers import customer_index_of
from ..ledger.handle import Ledger
from ..ledger.journal import add_adjust_entry, adjustment_by_reference, balance_of
from ..localtime import instant_month
from ..program.model import MAX_POINTS_PER_RECEIPT
from .lots import add_to_lots, take_oldest_first


#: The largest adjustment, either way: a receipt's largest points (PROGRAM.md's bound), so
#: that a typing slip of a few digits cannot put balances and reports past exact integers.
MAX_ADJUSTMENT_POINTS = MAX_POINTS_PER_RECEIPT


def adjust(ledger: Ledger, customer_id: str, points: int, reason: str, *, instant_us: int | None = None,
           reference: str | None = None) -> int:
    """A manual correction: a journal ``adjust`` entry; the new balance.

    Points added go to the lot of the current month; points taken come from the oldest
    lots, and never below zero. ``reference`` makes it idempotent: the same reference again
    (a retried script) changes nothing and gives the balance; with other points or another
    customer it is refused (:class:`IdempotencyConflict`).
    """
    if points == 0 or not reason.strip():
        raise LedgerError("an adjustment needs points other than 0 and a reason")
    if abs(points) > MAX_ADJUSTMENT_POINTS:
        raise LedgerError(f"an adjustment is at most {MAX_ADJUSTMENT_POINTS:,} points either way, not {points:,}")
    index = customer_index_of(ledger, customer_id)
    instant_us = now_us() if instant_us is None else instant_us
    program = ledger.current_program().program
    with ledger.write() as connection:
        if reference is not None:
            done = adjustment_by_reference(connection, reference)
            if done is not None:
                if done != (index, points):
                    raise IdempotencyConflict(f"adjustment reference {reference!r} was already used for another "
                                              "adjustment; use a new reference for a new one")
                return balance_of(connection, index)
        if points < 0:
            balance = balance_of(connection, index)
            if balance < -points:
                raise LedgerError(f"customer {customer_id!r} has {balance} points; an adjustment cannot take "
                                  f"{-points}")
            take_oldest_first(connection, index, -points)
        else:
            month = instant_month(instant_us, program.info.zone())
            add_to_lots(ledger, connection, np.array([index]), np.array([month]), np.array([points]))
        add_adjust_entry(connection, index, points, instant_us, reference or f"adjust-{instant_us}", reason)
        return balance_of(connection, index)
