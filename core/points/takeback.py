"""Take-back: what a return does to a balance, under the program's ``negative_balance``."""
from __future__ import annotations

import sqlite3

from ..ledger.handle import Ledger
from ..ledger.journal import (
    add_debt,
    add_reverse_entry,
    balance_at,
    lot_remaining,
    points_held,
    take_from_lot,
)
from ..ledger.receipts import record_unrecovered
from .lots import take_oldest_first


def take_back(ledger: Ledger, connection: sqlite3.Connection, customer: int, points: int, instant_us: int,
              return_id: str, run_id: int | None) -> int:
    """A return's points taken back (:func:`take_points`); what it could not take is
    recorded on the return."""
    unrecovered = take_points(ledger, connection, customer, points, instant_us, return_id, run_id)
    if unrecovered:
        record_unrecovered(connection, return_id, unrecovered)
    return unrecovered


def take_points(ledger: Ledger, connection: sqlite3.Connection, customer: int, points: int, instant_us: int,
                reference: str, run_id: int | None, *, first_from_month: int | None = None) -> int:
    """Points taken back from a customer: a journal ``reverse`` entry; the points not recovered.

    Points still held come out of the oldest lots (the lot of ``first_from_month`` first,
    when given). Points already spent (the balance at ``instant_us`` is short) are, under
    the program's ``negative_balance``: ``allow``, taken anyway — the balance goes negative
    and the debt is paid first from later earnings; ``floor_zero``, not taken.
    """
    policy = ledger.current_program().program.returns.negative_balance
    held = points_held(connection, customer)
    if policy == "floor_zero":
        taken = max(0, min(points, balance_at(connection, customer, instant_us), held))
    else:
        taken = points
    from_lots = min(taken, held)
    if from_lots and first_from_month is not None:
        own = min(from_lots, lot_remaining(connection, customer, first_from_month))
        take_from_lot(connection, customer, first_from_month, own)
        from_lots -= own
    if from_lots:
        take_oldest_first(connection, customer, from_lots)
    if taken > min(taken, held):
        add_debt(connection, customer, taken - held)
    if taken:
        add_reverse_entry(connection, customer, -taken, instant_us, reference, run_id)
    return points - taken
