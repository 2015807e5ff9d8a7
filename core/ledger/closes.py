"""Month closes as stored: which months are closed, what each expired, the tier movements.

A close is recorded with the last journal entry before it, so that it can be replayed from
the journal (:func:`fidelis.core.jobs.month_end.replay_close`). Which lots are due and when
a customer counts as inactive is decided in :mod:`fidelis.core.points.expiry`; the queries
that find and expire them are here.
"""
from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import numpy as np

from ..localtime import instant_month
from .clock import now_text
from .journal import end_run

if TYPE_CHECKING:
    from .handle import Ledger


def next_month_to_close(ledger: Ledger) -> int | None:
    """The month after the last close, or the month of the first receipt; None if no receipts."""
    last = last_closed_month(ledger)
    if last is not None:
        return last + 1

    def first_month() -> int | None:  # reads every receipt: remembered until the ledger changes
        first = ledger.db.execute("SELECT MIN(instant_us) FROM receipts").fetchone()[0]
        return None if first is None else instant_month(first, ledger.current_program().program.info.zone())

    return ledger.remembered("first_month", first_month)


def last_closed_month(ledger: Ledger) -> int | None:
    return ledger.remembered("last_closed", lambda: ledger.db.execute(
        "SELECT MAX(month) FROM month_closes").fetchone()[0])


def month_closed(connection: sqlite3.Connection, month: int) -> bool:
    return connection.execute("SELECT 1 FROM month_closes WHERE month = ?", (month,)).fetchone() is not None


def close_record(ledger: Ledger, month: int) -> tuple[int, int] | None:
    """(run id, last journal entry before it) of a month's close, or None if not closed."""
    return ledger.db.execute("SELECT run_id, journal_before FROM month_closes WHERE month = ?",
                           (month,)).fetchone()


def journal_entries(ledger: Ledger, through_entry: int) -> list[tuple]:
    """(customer index, kind, points, instant, entry id) up to an entry, by customer then entry."""
    return ledger.db.execute(
        "SELECT customer_index, kind, points, instant_us, entry_id FROM journal WHERE entry_id <= ? "
        "ORDER BY customer_index, entry_id", (through_entry,)).fetchall()


def expired_by_close(ledger: Ledger, run_id: int) -> dict[int, int]:
    """Points each customer's ``expire`` entry of one close took (positive)."""
    return dict(ledger.db.execute("SELECT customer_index, -points FROM journal WHERE kind = 'expire' "
                                "AND run_id = ?", (run_id,)).fetchall())


def movements_of(ledger: Ledger, month: int) -> dict[int, tuple[int, int]]:
    """Customer index -> (from tier, to tier) recorded by a month's close."""
    return {customer: (before, after) for customer, before, after in ledger.db.execute(
        "SELECT customer_index, from_tier, to_tier FROM tier_movements WHERE month = ?", (month,))}


def month_closes(ledger: Ledger) -> list[tuple]:
    """(month, expired points, customers expired, movements) of every close, in order."""
    return ledger.db.execute("SELECT month, expired_points, customers_expired, movements FROM month_closes "
                           "ORDER BY month").fetchall()


def due_lots(connection: sqlite3.Connection, month: int, gone_day: int, inactive_before_us: int | None,
             at_us: int, customer: int | None = None) -> list[tuple[int, int, int]]:
    """(customer index, earned month, points) of the lots the close of ``month`` expires
    (see :func:`expire_lots`); only one customer's with ``customer``."""
    if customer is None:
        due = connection.execute(
            "SELECT customer_index, earned_month, points_remaining FROM lots WHERE expires_on IS NOT NULL "
            "AND expires_on <= ? AND points_remaining > 0 AND earned_month <= ?", (gone_day, month)).fetchall()
    else:
        due = connection.execute(
            "SELECT customer_index, earned_month, points_remaining FROM lots WHERE customer_index = ? "
            "AND earned_month <= ? AND points_remaining > 0 AND expires_on <= ?",
            (customer, month, gone_day)).fetchall()
    if inactive_before_us is not None:
        only = "" if customer is None else "AND l.customer_index = ? "
        due += connection.execute(
            "SELECT l.customer_index, l.earned_month, l.points_remaining FROM lots l "
            "WHERE l.points_remaining > 0 AND l.earned_month <= ? AND (l.expires_on IS NULL OR l.expires_on > ?) "
            f"{only}AND NOT EXISTS (SELECT 1 FROM journal j WHERE j.customer_index = l.customer_index "
            "AND (j.kind = 'earn' OR j.kind = 'redeem') AND j.instant_us >= ? AND j.instant_us <= ?)",
            (month, gone_day, *(() if customer is None else (customer,)), inactive_before_us, at_us)).fetchall()
    return due


def expire_lots(connection: sqlite3.Connection, month: int, gone_day: int, inactive_before_us: int | None,
                at_us: int, reference: str, run_id: int) -> dict[int, int]:
    """Expire, at the close of ``month``, due lots and all lots of inactive customers.

    Due: the lot's expiry day is ``gone_day`` or earlier. Inactive: no earn or redemption
    from ``inactive_before_us`` to the month's end ``at_us``. Only lots earned by the end
    of ``month`` count, whenever the close runs. One ``expire`` entry per customer, at
    ``at_us``; returns the points taken per customer.
    """
    due = due_lots(connection, month, gone_day, inactive_before_us, at_us)
    connection.executemany("UPDATE lots SET points_remaining = 0 WHERE customer_index = ? AND earned_month = ?",
                           [(customer, month) for customer, month, _ in due])
    expired: dict[int, int] = {}
    for customer, _, points in due:
        expired[customer] = expired.get(customer, 0) + points
    connection.executemany(
        "INSERT INTO journal (customer_index, kind, points, instant_us, reference, run_id) "
        f"VALUES (?, 'expire', ?, {int(at_us)}, ?, {int(run_id)})",
        [(customer, -points, reference) for customer, points in sorted(expired.items())])
    return expired


def record_status(connection: sqlite3.Connection, month: int, tiers: np.ndarray) -> int:
    """Store each customer's status after ``month``'s close and the moves since the last one."""
    previous = np.zeros(len(tiers), dtype=np.int64)
    for customer, tier in connection.execute("SELECT customer_index, tier FROM customer_status"):
        if customer < len(previous):
            previous[customer] = tier
    moved = np.flatnonzero(previous != tiers)
    rows = list(zip(moved.tolist(), previous[moved].tolist(), tiers[moved].astype(np.int64).tolist()))
    connection.executemany(
        f"INSERT INTO tier_movements (month, customer_index, from_tier, to_tier) VALUES ({int(month)}, ?, ?, ?)",
        rows)
    connection.executemany(
        "INSERT INTO customer_status (customer_index, tier) VALUES (?1, ?3) "
        "ON CONFLICT(customer_index) DO UPDATE SET tier = excluded.tier", rows)
    return len(rows)


def record_close(connection: sqlite3.Connection, close, run_id: int, journal_before: int, generation: int) -> None:
    """The close of a month, with the last journal entry and the state generation before it."""
    connection.execute(
        "INSERT INTO month_closes (month, run_id, closed_at, expired_points, customers_expired, movements, "
        "journal_before, generation) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (close.month, run_id, now_text(), close.expired_points, close.customers_expired, close.movements,
         journal_before, generation))
    end_run(connection, run_id)


#: A receipt's local month, from its local day, in SQL: (year - 1970) * 12 + month - 1.
_RECEIPT_MONTH = ("((CAST(strftime('%Y', r.local_day * 86400, 'unixepoch') AS INTEGER) - 1970) * 12 "
                  "+ CAST(strftime('%m', r.local_day * 86400, 'unixepoch') AS INTEGER) - 1)")


def receipts_after_close(ledger: Ledger) -> list[tuple[str, int]]:
    """(receipt id, month) of receipts dated in a closed month whose points were written
    after its close (their journal entries come after the close's), in journal order.

    One pass over the journal entries after the first close (``CROSS JOIN`` keeps that
    order); receipts without points are covered by :func:`months_written_after_close`.
    """
    return ledger.db.execute(
        "SELECT DISTINCT r.receipt_id, c.month FROM journal j CROSS JOIN receipts r CROSS JOIN month_closes c "
        "WHERE j.entry_id > (SELECT MIN(journal_before) FROM month_closes) AND (j.kind = 'earn' OR j.kind = 'reverse') "
        f"AND r.receipt_id = j.reference AND c.month = {_RECEIPT_MONTH} AND j.entry_id > c.journal_before "
        "ORDER BY j.entry_id").fetchall()


def months_written_after_close(ledger: Ledger) -> list[int]:
    """Closed months that received receipts after their close (closes recorded since m009)."""
    return [month for (month,) in ledger.db.execute(
        "SELECT c.month FROM month_closes c JOIN month_writes w ON w.month = c.month "
        "WHERE c.generation IS NOT NULL AND w.generation > c.generation ORDER BY c.month")]


def void_takebacks(ledger: Ledger) -> dict[int, int]:
    """Journal entry id -> local month of the voided receipt, for each void's take-back entry
    (which takes from that receipt's own lot first)."""
    zone = ledger.current_program().program.info.zone()
    return {entry: instant_month(instant, zone) for entry, instant in ledger.db.execute(
        "SELECT j.entry_id, v.instant_us FROM voided_receipts v JOIN journal j ON j.reference = v.receipt_id "
        "AND j.run_id = v.void_run_id AND j.kind = 'reverse'")}
