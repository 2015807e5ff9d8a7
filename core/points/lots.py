"""Lots: points earned per customer and local month, consumed oldest first.

The rules of the lots, in one place: a new lot's expiry day comes from the program's
``[expiry]``; points leave the oldest lots first (also the first to expire under every
expiry rule, so this order never loses a customer points); a debt is paid from new
earnings before they can be spent.
"""
from __future__ import annotations

import sqlite3

import numpy as np

from ..errors import LedgerError
from ..ledger.handle import Ledger
from ..ledger.journal import (
    add_lots,
    debts_of,
    lots_with_points,
    reduce_debt,
    take_from_lot,
)
from ..localtime import month_first_day


def add_to_lots(ledger: Ledger, connection: sqlite3.Connection, customers: np.ndarray, months: np.ndarray,
                points: np.ndarray) -> None:
    """Add points to the lots of (customer index, local month earned), setting each new lot's
    expiry day from the program's ``[expiry]``; then the debts of those customers are paid."""
    expires_on = month_first_day(ledger.current_program().program.expiry.gone_from_month(months))
    add_lots(connection, customers, months, points, expires_on)
    settle_debts(connection, customers)


def settle_debts(connection: sqlite3.Connection, customers: np.ndarray) -> None:
    """Pay the debts of ``customers`` from their lots, oldest first, as far as they reach."""
    for customer, debt, held in debts_of(connection, customers):
        paid = min(debt, held)
        if not paid:
            continue
        take_oldest_first(connection, customer, paid)
        reduce_debt(connection, customer, paid, debt)


def take_oldest_first(connection: sqlite3.Connection, customer: int, points: int) -> None:
    """Consume ``points`` from the customer's lots, oldest first (the caller checked the balance)."""
    left = points
    for month, remaining in lots_with_points(connection, customer):
        taken = min(left, remaining)
        take_from_lot(connection, customer, month, taken)
        left -= taken
        if not left:
            return
    raise LedgerError("the customer's lots hold fewer points than their journal; run `fidelis check`")
