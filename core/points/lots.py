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


def lots_from_journal(points: list[int], months: list[int], first_from: list[int | None]) -> tuple[dict[int, int], int]:
    """One customer's lots (earned month -> points left) and debt, rebuilt from their journal
    entries in order by the rules above; what the stored lots must hold.

    ``points`` and ``months`` (the local month of each entry's instant) are the entries';
    ``first_from`` names, for an entry that takes points from one lot first (a void takes
    back from the voided receipt's own lot), that lot's month.
    """
    lots: dict[int, int] = {}
    debt = 0
    for amount, month, own in zip(points, months, first_from):
        if amount > 0:  # earned or added: the lot of its local month, then any debt paid
            lots[month] = lots.get(month, 0) + amount
            if debt:
                paid = min(debt, sum(lots.values()))
                debt -= paid
                _take_oldest_first(lots, paid)
        else:  # redeemed, taken back or expired: the oldest lots first; beyond them, a debt
            wanted = -amount
            if own is not None and lots.get(own, 0):
                taken = min(wanted, lots[own])
                lots[own] -= taken
                wanted -= taken
            debt += _take_oldest_first(lots, wanted)
    return {month: left for month, left in lots.items() if left}, debt


def _take_oldest_first(lots: dict[int, int], points: int) -> int:
    """Take up to ``points`` from lots, oldest first; what they could not give."""
    for key in sorted(lots):
        if not points:
            break
        taken = min(points, lots[key])
        lots[key] -= taken
        points -= taken
    return points
