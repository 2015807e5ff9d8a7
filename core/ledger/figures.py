"""Figures: sums and counts over the ledger, for checks and reports (read only).

The invariants ``check`` verifies (balance = Σ lots − debt, a receipt's points = its journal
entries, anonymous receipts earn nothing) and the month report's figures, each one query.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .handle import Ledger


def balance_mismatches(ledger: Ledger) -> list[tuple[str, int, int]]:
    """(customer id, Σ journal, Σ points left in lots − debt) wherever the two differ."""
    return ledger.db.execute(
        "WITH j AS (SELECT customer_index, SUM(points) AS points FROM journal GROUP BY customer_index), "
        "l AS (SELECT customer_index, SUM(points_remaining) AS points FROM lots GROUP BY customer_index) "
        "SELECT c.customer_id, COALESCE(j.points, 0), COALESCE(l.points, 0) - COALESCE(d.points, 0) "
        "FROM customers c LEFT JOIN j USING (customer_index) LEFT JOIN l USING (customer_index) "
        "LEFT JOIN debts d USING (customer_index) "
        "WHERE COALESCE(j.points, 0) != COALESCE(l.points, 0) - COALESCE(d.points, 0)"
    ).fetchall()


def debts_with_points_held(ledger: Ledger) -> list[tuple[str, int, int]]:
    """(customer id, debt, points in lots) of customers who owe points yet hold some."""
    return ledger.db.execute(
        "SELECT c.customer_id, d.points, SUM(l.points_remaining) FROM debts d JOIN customers c "
        "USING (customer_index) JOIN lots l USING (customer_index) GROUP BY d.customer_index "
        "HAVING SUM(l.points_remaining) > 0").fetchall()


def anonymous_receipts_with_points(ledger: Ledger) -> list[tuple[str, int]]:
    """(receipt id, points) of anonymous receipts stored with points, which they never earn."""
    return ledger.db.execute(
        "SELECT receipt_id, points FROM receipts WHERE customer_index IS NULL AND points != 0 LIMIT 20"
    ).fetchall()


def earn_mismatches(ledger: Ledger) -> list[tuple[str, int, int]]:
    """(receipt id, its points less what it could not take back, its journal entries' points)
    wherever the two differ: a sale's ``earn`` entries, a return's ``reverse`` entries. A
    voided receipt's entries net to what its void could not take back, under the same id."""
    entries = ("e AS (SELECT reference, SUM(points) AS points FROM journal WHERE kind = 'earn' OR kind = 'reverse' "
               "GROUP BY reference), v AS (SELECT receipt_id, SUM(points_unrecovered) AS points FROM voided_receipts "
               "WHERE customer_index IS NOT NULL GROUP BY receipt_id)")
    return ledger.db.execute(
        f"WITH {entries} "
        "SELECT r.receipt_id, r.points + r.unrecovered_points + COALESCE(v.points, 0), COALESCE(e.points, 0) "
        "FROM receipts r LEFT JOIN e ON e.reference = r.receipt_id LEFT JOIN v ON v.receipt_id = r.receipt_id "
        "WHERE r.customer_index IS NOT NULL "
        "AND r.points + r.unrecovered_points + COALESCE(v.points, 0) != COALESCE(e.points, 0)"
    ).fetchall() + ledger.db.execute(
        f"WITH {entries} SELECT v.receipt_id, v.points, COALESCE(e.points, 0) FROM v "
        "LEFT JOIN e ON e.reference = v.receipt_id "
        "WHERE v.receipt_id NOT IN (SELECT receipt_id FROM receipts) AND v.points != COALESCE(e.points, 0)"
    ).fetchall()


def receipts_ahead_of(ledger: Ledger, instant_us: int) -> list[tuple[str, str | None, int]]:
    """(receipt id, customer id, instant) of stored receipts dated after ``instant_us``."""
    return ledger.db.execute(
        "SELECT r.receipt_id, c.customer_id, r.instant_us FROM receipts r LEFT JOIN customers c "
        "ON c.customer_index = r.customer_index WHERE r.instant_us > ? ORDER BY r.instant_us DESC",
        (instant_us,)).fetchall()


def receipts_by_tier(ledger: Ledger) -> dict[int, int]:
    return dict(ledger.db.execute(
        "SELECT tier, COUNT(*) FROM receipts WHERE tier IS NOT NULL GROUP BY tier").fetchall())


def points_by_rule(ledger: Ledger) -> dict[str, int]:
    names = ("rate_points", "basket_points", "visit_points", "welcome_points", "cap_points")
    sums = ledger.db.execute(f"SELECT {', '.join(f'SUM({name})' for name in names)} FROM receipts").fetchone()
    return {name: value or 0 for name, value in zip(names, sums)}


def top_customer(ledger: Ledger) -> str | None:
    """The customer with the largest balance."""
    row = ledger.db.execute(
        "SELECT c.customer_id FROM journal j JOIN customers c USING (customer_index) "
        "GROUP BY j.customer_index ORDER BY SUM(j.points) DESC LIMIT 1").fetchone()
    return row[0] if row else None


def journal_flows(ledger: Ledger, start_us: int | None, end_us: int) -> dict[str, int]:
    """Points of the journal entries dated in [start, end), by kind (from the start when None)."""
    return dict(ledger.db.execute(
        "SELECT kind, SUM(points) FROM journal WHERE instant_us >= ? AND instant_us < ? GROUP BY kind",
        (-(2**63) if start_us is None else start_us, end_us)).fetchall())


def outstanding_points(ledger: Ledger, end_us: int) -> tuple[int, int]:
    """(points the program owes, points customers owe) at an instant: the positive balances
    summed, and the negative ones (returns of spent points, ``negative_balance = "allow"``)."""
    owed, owing = ledger.db.execute(
        "SELECT COALESCE(SUM(MAX(balance, 0)), 0), COALESCE(-SUM(MIN(balance, 0)), 0) FROM "
        "(SELECT SUM(points) AS balance FROM journal WHERE instant_us < ? GROUP BY customer_index)",
        (end_us,)).fetchone()
    return owed, owing


def unrecovered_points(ledger: Ledger, start_us: int, end_us: int) -> int:
    """Points returns dated in [start, end) could not take back (``negative_balance = "floor_zero"``)."""
    return ledger.db.execute("SELECT COALESCE(SUM(unrecovered_points), 0) FROM receipts WHERE instant_us >= ? "
                           "AND instant_us < ?", (start_us, end_us)).fetchone()[0]


def customer_activity(ledger: Ledger, start_us: int, end_us: int, look_back_us: int, recent_us: int) -> dict[str, int]:
    """Active (a purchase in [start, end)), new (first purchase in it) and lapsed customers
    (last purchase before ``end`` in [look_back, recent)); returns are not purchases."""
    purchases = "FROM receipts WHERE customer_index IS NOT NULL AND original_receipt_id IS NULL"
    active = ledger.db.execute(
        f"SELECT COUNT(DISTINCT customer_index) {purchases} AND instant_us >= ? AND instant_us < ?",
        (start_us, end_us)).fetchone()[0]
    new = ledger.db.execute(
        f"SELECT COUNT(*) FROM (SELECT MIN(instant_us) AS first {purchases} GROUP BY customer_index) "
        "WHERE first >= ? AND first < ?", (start_us, end_us)).fetchone()[0]
    lapsed = ledger.db.execute(
        f"SELECT COUNT(*) FROM (SELECT MAX(instant_us) AS last {purchases} AND instant_us < ? "
        "GROUP BY customer_index) WHERE last >= ? AND last < ?",
        (end_us, look_back_us, recent_us)).fetchone()[0]
    return {"active": active, "new": new, "lapsed": lapsed}


def sales_split(ledger: Ledger, start_us: int, end_us: int) -> tuple[int, int]:
    """(sales on receipts with a customer, all sales) in [start, end), minor units; returns
    count against them (their amounts are negative)."""
    identified, total = ledger.db.execute(
        "SELECT COALESCE(SUM(CASE WHEN customer_index IS NOT NULL THEN amount_minor END), 0), "
        "COALESCE(SUM(amount_minor), 0) FROM receipts WHERE instant_us >= ? AND instant_us < ?",
        (start_us, end_us)).fetchone()
    return identified, total


def counts(ledger: Ledger) -> dict[str, int]:
    return {
        table: ledger.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in ("customers", "receipts", "journal", "lots", "runs")
    }


def journal_block(ledger: Ledger, first: int, stop: int) -> list[tuple[int, int, int, int]]:
    """(customer index, points, instant, entry id) of the journal entries of customers
    ``first:stop``, by customer then entry."""
    return ledger.db.execute(
        "SELECT customer_index, points, instant_us, entry_id FROM journal WHERE customer_index >= ? "
        "AND customer_index < ? ORDER BY customer_index, entry_id", (first, stop)).fetchall()


def lots_block(ledger: Ledger, first: int, stop: int) -> tuple[dict[int, dict[int, int]], dict[int, int]]:
    """The stored lots holding points (customer -> earned month -> points left) and debts of
    customers ``first:stop``."""
    lots: dict[int, dict[int, int]] = {}
    for customer, month, left in ledger.db.execute(
            "SELECT customer_index, earned_month, points_remaining FROM lots WHERE customer_index >= ? "
            "AND customer_index < ? AND points_remaining > 0", (first, stop)):
        lots.setdefault(customer, {})[month] = left
    debts = dict(ledger.db.execute("SELECT customer_index, points FROM debts WHERE customer_index >= ? "
                                   "AND customer_index < ?", (first, stop)).fetchall())
    return lots, debts
