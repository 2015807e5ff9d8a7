"""fidelis check: passes on a loaded ledger and names every kind of tampering."""
import pytest
from fidelis.core.jobs.check import check_ledger
from fidelis.core.ledger.chunk_files import directory_of
from .loads import R1, R2, R3


def test_check_passes_on_a_loaded_ledger(loaded_chain):
    assert check_ledger(loaded_chain) == []


@pytest.mark.parametrize(
    "tampering, expected",
    [
        ("UPDATE journal SET points = points + 1 WHERE entry_id = 7", "balance (Σ journal)"),
        ("UPDATE receipts SET points = points + 5 WHERE receipt_id = "
         "(SELECT receipt_id FROM receipts WHERE customer_index IS NOT NULL LIMIT 1)", "in its journal entries"),
        ("UPDATE lots SET points_remaining = points_remaining + 3 WHERE (customer_index, earned_month) = "
         "(SELECT customer_index, earned_month FROM lots LIMIT 1)", "points in lots"),
        ("UPDATE customer_state SET record = (SELECT record FROM customer_state WHERE customer_index = 1) "
         "WHERE customer_index = 0", "stored scoring state differs"),
    ],
)
def test_check_catches_a_tampered_ledger(loaded_chain, tampering, expected):
    loaded_chain.db.execute(tampering)
    problems = check_ledger(loaded_chain)
    assert any(expected in problem for problem in problems), problems


def test_check_notices_points_moved_between_two_lots_of_a_customer(loaded_chain):
    """Balances still add up, but the points would expire at the wrong close."""
    customer, older, newer = loaded_chain.db.execute(
        "SELECT customer_index, MIN(earned_month), MAX(earned_month) FROM lots WHERE points_remaining > 5 "
        "GROUP BY customer_index HAVING COUNT(*) > 1 LIMIT 1").fetchone()
    loaded_chain.db.execute("UPDATE lots SET points_remaining = points_remaining - 5 WHERE customer_index = ? "
                            "AND earned_month = ?", (customer, older))
    loaded_chain.db.execute("UPDATE lots SET points_remaining = points_remaining + 5 WHERE customer_index = ? "
                            "AND earned_month = ?", (customer, newer))
    [problem] = check_ledger(loaded_chain, block_customers=7)
    assert "lots hold {" in problem and "the journal leaves {" in problem


def test_check_names_receipts_whose_stored_lines_are_corrupt(loaded_chain):
    loaded_chain.db.execute("UPDATE receipts SET lines = x'0102030405' WHERE receipt_id = "
                            "(SELECT MIN(receipt_id) FROM receipts)")
    [problem] = check_ledger(loaded_chain)
    assert problem.endswith("its stored lines are corrupt (5 bytes, not whole line records)")


def test_check_names_a_chunk_file_that_is_missing_or_unreadable(loaded_chain):
    name, = loaded_chain.db.execute("SELECT name FROM chunk_files ORDER BY first_row LIMIT 1").fetchone()
    path = directory_of(loaded_chain.path) / name
    path.write_bytes(path.read_bytes()[:100])
    [problem] = check_ledger(loaded_chain)
    assert f"{path}: a chunk file of the ledger is missing or unreadable" in problem
    path.unlink()
    [problem] = check_ledger(loaded_chain)
    assert f"{path}: a chunk file of the ledger is missing or unreadable" in problem


def test_check_names_receipts_the_chunk_files_and_the_ledger_disagree_on(loaded_chain):
    first, = loaded_chain.db.execute("SELECT MIN(receipt_row) FROM receipts").fetchone()
    loaded_chain.db.execute("DELETE FROM receipts WHERE receipt_row = ?", (first,))
    problems = check_ledger(loaded_chain)
    assert any(f"(row {first}): in a chunk file, but not in the ledger's receipts" in p for p in problems), problems
    last, = loaded_chain.db.execute("SELECT MAX(receipt_row) FROM receipts").fetchone()
    loaded_chain.db.execute("INSERT INTO receipts (receipt_row, receipt_id, store_id, instant_us, local_day, "
                            "amount_minor, rate_points, basket_points, visit_points, welcome_points, cap_points, "
                            "points, content_hash, program_version, run_id) "
                            "VALUES (?, 'GHOST', 'S1', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1)", (last + 5,))
    assert "receipt 'GHOST': its lines are in no chunk file and not in the ledger" in check_ledger(loaded_chain)


def test_check_names_a_chunk_file_no_commit_names(loaded_chain):
    name, = loaded_chain.db.execute("SELECT name FROM chunk_files LIMIT 1").fetchone()
    loaded_chain.db.execute("DELETE FROM chunk_files WHERE name = ?", (name,))
    problems = check_ledger(loaded_chain)
    assert any(f"{loaded_chain.path.stem}.receipts/{name}: a chunk file no commit names" in problem
               for problem in problems), problems


def test_check_replays_customers_block_by_block_as_one(loaded_chain):
    assert check_ledger(loaded_chain, block_customers=7) == []
    loaded_chain.db.execute("UPDATE receipts SET points = points + 1 WHERE receipt_id = "
                            "(SELECT receipt_id FROM receipts WHERE customer_index = 9 LIMIT 1)")
    problems = check_ledger(loaded_chain, block_customers=7)
    assert any("its replay gives" in problem for problem in problems), problems


def test_check_catches_points_on_an_anonymous_receipt(loaded_chain):
    loaded_chain.db.execute("UPDATE receipts SET points = 3 WHERE receipt_id = "
                            "(SELECT receipt_id FROM receipts WHERE customer_index IS NULL LIMIT 1)")
    assert any("anonymous, but stored with 3 points" in problem for problem in check_ledger(loaded_chain))


def test_check_names_receipts_written_into_a_month_after_its_close(ledger, load, write_receipts):
    """As a load of an earlier release could: the close is set aside while a June receipt is
    written, then put back. Both the receipt (it earned points) and the month are named."""
    import datetime as dt

    from fidelis.core.jobs.month_end import month_end
    from fidelis.core.localtime import parse_month

    load(ledger, [write_receipts("june.csv", R1, R2)])
    month_end(ledger, parse_month("2025-06"), today=dt.date(2025, 8, 1))
    with ledger.write() as connection:
        close = connection.execute("SELECT * FROM month_closes").fetchone()
        connection.execute("DELETE FROM month_closes")
    load(ledger, [write_receipts("late.csv", R3)])
    with ledger.write() as connection:
        connection.execute(f"INSERT INTO month_closes VALUES ({', '.join('?' * len(close))})", close)
    assert check_ledger(ledger) == ["receipt 'R3': dated in 2025-06, but written after that month's close"]
