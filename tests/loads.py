"""Receipt rows and ledger dumps shared by the tests of loading, checking and storage."""
import numpy as np
from fidelis.core.ledger.handle import Ledger
from fidelis.core.ledger.receipts import LINE_DTYPE, fill_lines

HEADER = ["receipt_id", "customer_id", "store_id", "ts", "category", "qty", "amount"]


def table_dump(ledger: Ledger) -> dict[str, list]:
    """Everything a load writes, in a stable order (run ids and times aside)."""
    return {
        "customers": ledger.db.execute("SELECT * FROM customers ORDER BY customer_index").fetchall(),
        "customer_state": ledger.db.execute("SELECT * FROM customer_state ORDER BY customer_index").fetchall(),
        "receipts": [row[:-1] for row in fill_lines(ledger, ledger.db.execute(
            "SELECT receipt_id, customer_index, store_id, instant_us, local_day, amount_minor, tier, rate_points, "
            "basket_points, visit_points, welcome_points, cap_points, points, content_hash, lines, receipt_row "
            "FROM receipts ORDER BY receipt_id").fetchall(), 15, 14)],
        "journal": ledger.db.execute(
            "SELECT customer_index, kind, points, instant_us, reference FROM journal ORDER BY entry_id").fetchall(),
        "lots": ledger.db.execute("SELECT * FROM lots ORDER BY customer_index, earned_month").fetchall(),
    }


R1 = ["R1", "C1", "S1", "2025-06-07T10:00", "grocery", 1, "10.00"]


R2 = ["R2", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "20.00"]


R3 = ["R3", "C2", "S1", "2025-06-10T10:00", "grocery", 1, "5.00"]


GOOD = [R1, R2, R3]


def by_customer_id(ledger: Ledger) -> dict[str, list]:
    """What a load wrote, keyed by external ids: the same whatever order customers were numbered in."""
    customer = "(SELECT customer_id FROM customers c WHERE c.customer_index = t.customer_index)"
    categories = dict(ledger.db.execute("SELECT category_id, name FROM categories").fetchall())
    skus = dict(ledger.db.execute("SELECT sku_id, sku FROM skus").fetchall())

    def named_lines(row):  # vocabulary ids are numbered in order of appearance: compare names
        lines = np.frombuffer(row[-1], dtype=LINE_DTYPE)
        return (*row[:-1], [(categories[line["category_id"]], skus.get(line["sku_id"]), int(line["qty"]),
                             int(line["amount_minor"])) for line in lines])

    return {
        "customers": sorted(ledger.db.execute("SELECT customer_id, birth_date, joined_on, attributes "
                                              "FROM customers").fetchall()),
        "state": sorted(ledger.db.execute(
            f"SELECT {customer}, record, rolling_totals, tier_reached_month FROM customer_state t").fetchall()),
        "receipts": sorted(map(named_lines, (row[:-1] for row in fill_lines(ledger, ledger.db.execute(
            f"SELECT receipt_id, {customer}, store_id, instant_us, tier, points, content_hash, lines, receipt_row "
            "FROM receipts t").fetchall(), 8, 7)))),
        "journal": sorted(ledger.db.execute(
            f"SELECT {customer}, kind, points, instant_us, reference FROM journal t").fetchall()),
        "lots": sorted(ledger.db.execute(
            f"SELECT {customer}, earned_month, points_earned, points_remaining FROM lots t").fetchall()),
    }


def lots_of(ledger: Ledger, customer_id: str = "C1") -> list[tuple[int, int]]:
    return ledger.db.execute(
        "SELECT earned_month, points_remaining FROM lots JOIN customers USING (customer_index) "
        "WHERE customer_id = ? ORDER BY earned_month", (customer_id,)).fetchall()
