"""Take-back: what a return does to a balance, under the program's ``negative_balance``."""
from __future__ import annotations

import sqlite3

from ..ledger.handle import Ledger
from ..ledger.journal import add_debt, add_reverse_entry, balance_at, points_held
from ..ledger.receipts import record_unrecovered
from .lots import take_oldest_first


def take_back(ledger: Ledger, connection: sqlite3.Connection, customer: int, points: int, instant_us: int,
              return_id: str, run_id: int | None) -> int:
    """A return's points taken back: a journal ``reverse`` entry; the points not recovered.

    Points still held come out of the oldest lots. Points already spent (the balance at
    the return's instant is short) are, under the program's ``negative_balance``:
    ``allow``, taken anyway — the balance goes negative and the debt is paid first from
    later earnings; ``floor_zero``, not taken — recorded on the return as unrecovered.
    """
    policy = ledger.current_program().program.returns.negative_balance
    held = points_held(connection, customer)
    if policy == "floor_zero":
        taken = max(0, min(points, balance_at(connection, customer, instant_us), held))
    else:
        taken = points
    from_lots = min(taken, held)
    if from_lots:
        take_oldest_first(connection, customer, from_lots)
    if taken > from_lots:
        add_debt(connection, customer, taken - from_lots)
    if taken:
        add_reverse_entry(connection, customer, -taken, instant_us, return_id, run_id)
    unrecovered = points - taken
    if unrecovered:
        record_unrecovered(connection, return_id, unrecovered)
    return unrecovered
