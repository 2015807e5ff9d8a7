"""Whole-history replay: every stored receipt back through the kernel, in arrival order.

The ledger is ``tests/data/ledger-0.2.db`` (test_upgrade.py): bulk loads, returns loaded
after their originals, receipts accrued one by one, a redemption, closes and a void.
"""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pyarrow as pa

import numpy as np
import pytest

from fidelis.core import Ledger
from fidelis.core.ingest.receipts import check_receipt_table
from fidelis.core.jobs.accrual import accrue
from fidelis.core.jobs.check import check_ledger
from fidelis.core.jobs.load import load_files
from fidelis.core.jobs.month_end import month_end
from fidelis.core.ledger.chunk_files import directory_of
from fidelis.core.localtime import parse_month
from fidelis.core.points.void import void_receipt
from fidelis.core.ledger.customers import load_state
from fidelis.core.points.replay import replay
from fidelis.core.program.tables import compile_program
from fidelis.core.state import CustomerState

from .data.build_ledger_fixture import build
from .test_upgrade import BEFORE_ARRIVAL_ORDER


@pytest.fixture(scope="module")
def built_now(tmp_path_factory) -> Path:
    """The same history written by today's code, and more: loads in chunk files, receipts
    accrued one by one before and after a load and moved by a month-end into a file whose
    rows span the load's, one more accrual left in SQLite, a void of a receipt in a file."""
    path = tmp_path_factory.mktemp("built") / "ledger.db"
    build(path)
    with Ledger(path) as ledger:
        customer = ledger.db.execute("SELECT c.customer_id FROM receipts r JOIN customers c USING (customer_index) "
                                     "WHERE r.receipt_id = 'TILL-1'").fetchone()[0]
        program = ledger.current_program().program

        def till(receipt_id, ts, amount):
            accrue(ledger, check_receipt_table(pa.table({
                "receipt_id": [receipt_id], "customer_id": [customer], "store_id": ["S002"], "ts": [ts],
                "category": ["grocery"], "qty": pa.array([1], pa.int64()), "amount": [amount]}),
                timezone=program.info.timezone, minor_units=program.info.minor_units, source="till"))

        till("TILL-3", "2026-01-07T09:00:00", "8.00")
        later = path.parent / "later.csv"
        later.write_text("receipt_id,customer_id,store_id,ts,category,qty,amount\n"
                         f"LATE-1,{customer},S001,2026-01-08T10:00:00,grocery,3,45.00\n"
                         "LATE-2,,S001,2026-01-08T11:00:00,grocery,1,5.00\n")
        load_files(ledger, [later])
        till("TILL-4", "2026-01-09T09:00:00", "19.99")
        month_end(ledger, parse_month("2025-07"), today=dt.date(2026, 1, 10))
        void_receipt(ledger, "TILL-4", "a test receipt sent to production")
        till("TILL-5", "2026-01-09T18:00:00", "3.10")
        held = [row for (row,) in ledger.db.execute("SELECT receipt_id FROM receipts WHERE lines IS NOT NULL")]
        assert held == ["TILL-5"]
        files = ledger.db.execute("SELECT first_row, last_row FROM chunk_files ORDER BY first_row").fetchall()
        assert any(a < c <= b for a, b in files for c, _ in files)  # a moved file spans a load's
    return path


@pytest.fixture(params=["migrated", "built now"])
def ledger(request, tmp_path):
    path = tmp_path / "ledger.db"
    if request.param == "migrated":
        shutil.copy(BEFORE_ARRIVAL_ORDER, path)
    else:
        source = request.getfixturevalue("built_now")
        shutil.copy(source, path)
        shutil.copytree(directory_of(source), directory_of(path))
    with Ledger(path) as opened:
        yield opened


def replayed(ledger, **options) -> tuple[dict[str, tuple[int, int]], object]:
    """receipt id -> (replayed points, stored points), and the final state."""
    run = replay(ledger, **options)
    points = {}
    for block in run:
        for receipt_id, replayed_points, stored in zip(block.batch.receipt_id.to_pylist(), block.scores.points.tolist(),
                                                       block.stored_points.tolist()):
            points[receipt_id] = (replayed_points, stored)
    return points, run.state


@pytest.mark.parametrize("block_receipts", [1, 7, 200_000])
def test_replay_gives_every_stored_receipt_its_points_and_every_customer_their_state(ledger, block_receipts):
    points, state = replayed(ledger, block_receipts=block_receipts)
    stored_count = ledger.db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0]
    returns = ledger.db.execute("SELECT receipt_id FROM receipts WHERE original_receipt_id IS NOT NULL").fetchall()
    assert len(points) == stored_count and len(returns) == 3 and {"TILL-1"} <= set(points)
    assert {receipt_id: pair for receipt_id, pair in points.items() if pair[0] != pair[1]} == {}
    stored = CustomerState.for_program(compile_program(ledger.current_program().program))
    load_state(ledger, stored)
    count = len(stored)
    assert np.array_equal(stored.records[:count], state.records[:count])
    assert np.array_equal(stored.rolling_totals[:count], state.rolling_totals[:count])


def test_replaying_some_customers_gives_their_receipts_what_the_whole_replay_gives(ledger):
    everything, _ = replayed(ledger)
    customers = [row[0] for row in ledger.db.execute(
        "SELECT c.customer_id FROM receipts r JOIN customers c USING (customer_index) "
        "WHERE r.original_receipt_id IS NOT NULL OR r.receipt_id = 'TILL-1'")]
    some, _ = replayed(ledger, customers=customers + ["no such customer"], block_receipts=5)
    expected = {row[0] for row in ledger.db.execute(
        "SELECT receipt_id FROM receipts JOIN customers USING (customer_index) WHERE customer_id IN "
        f"({', '.join('?' * len(customers))})", customers)}
    assert set(some) == expected and all(some[receipt_id] == everything[receipt_id] for receipt_id in some)
    assert replayed(ledger, customers=["no such customer"])[0] == {}


def test_a_date_range_replays_the_receipts_of_those_local_dates_from_an_empty_state(ledger):
    start, end = dt.date(2025, 3, 1), dt.date(2025, 4, 1)
    points, _ = replayed(ledger, start=start, end=end)
    days = (start - dt.date(1970, 1, 1)).days, (end - dt.date(1970, 1, 1)).days
    expected = {row[0] for row in ledger.db.execute(
        "SELECT receipt_id FROM receipts WHERE local_day >= ? AND local_day < ?", days)}
    assert set(points) == expected and expected
    first_day = dt.date(1970, 1, 1) + dt.timedelta(
        days=ledger.db.execute("SELECT MIN(local_day) FROM receipts").fetchone()[0])
    assert replayed(ledger, start=first_day)[0] == replayed(ledger)[0]


def test_check_replays_through_it(ledger):
    assert check_ledger(ledger) == []
    ledger.db.execute("UPDATE receipts SET points = points + 1 WHERE receipt_id = 'TILL-1'")
    assert any("'TILL-1': stored" in problem and "its replay gives" in problem for problem in check_ledger(ledger))


def test_a_candidate_program_is_replayed_instead_of_the_ledgers(ledger):
    """A what-if: the same history under a program without the welcome bonus gives every
    identified customer's first receipt 100 points fewer, and changes nothing else."""
    from fidelis.core.program.model import parse_program

    text = ledger.db.execute("SELECT text FROM program_versions ORDER BY version DESC").fetchone()[0]
    assert "welcome_points = 100" in text
    candidate = parse_program(text.replace("welcome_points = 100", "welcome_points = 0"))
    stored, _ = replayed(ledger)
    without, _ = replayed(ledger, program=candidate)
    welcomed = {row[0] for row in ledger.db.execute("SELECT receipt_id FROM receipts WHERE welcome_points > 0")}
    assert welcomed and {receipt_id for receipt_id in stored if stored[receipt_id][0] != without[receipt_id][0]} \
        == welcomed
    assert all(stored[receipt_id][0] - without[receipt_id][0] == 100 for receipt_id in welcomed)


@pytest.mark.parametrize("block_receipts", [1, 2, 3, 100])
def test_an_anonymous_return_after_a_later_anonymous_sale_is_taken_once(tmp_path, verde_club, block_receipts):
    """Anonymous receipts are never late, so arrival order is not their processing order: the
    returns a block has not reached are those written from its first row on, whatever their dates."""
    import csv

    from fidelis.core.jobs.load import load_files
    from fidelis.core.program.model import parse_program

    header = ["receipt_id", "customer_id", "store_id", "ts", "category", "qty", "amount", "sku", "kind",
              "original_receipt_id", "line"]
    with Ledger.create(tmp_path / "ledger.db", parse_program(verde_club.text)) as ledger:
        for number, row in enumerate([
            ["O", "", "S1", "2025-06-01T10:00", "grocery", 1, "10.00", "G1", "", "", ""],
            ["X", "C9", "S1", "2025-06-02T10:00", "grocery", 1, "10.00", "G1", "", "", ""],
            ["S", "", "S1", "2025-06-20T10:00", "grocery", 1, "10.00", "G1", "", "", ""],
            ["RET", "", "S1", "2025-06-10T10:00", "", 1, "", "G1", "return", "O", 1],
        ]):
            path = tmp_path / f"part{number}.csv"
            with path.open("w", newline="") as handle:
                csv.writer(handle).writerows([header, row])
            load_files(ledger, [path])
        points, _ = replayed(ledger, block_receipts=block_receipts)
        assert set(points) == {"O", "X", "S", "RET"}
        assert all(replayed_points == stored for replayed_points, stored in points.values())
        assert check_ledger(ledger) == []


def test_a_replay_left_halfway_ends_its_snapshot(ledger):
    """Stopping after the first block (with ``with`` or by dropping the loop) ends the read
    transaction: the handle can write again."""
    with replay(ledger, block_receipts=10) as run:
        for _ in run:
            break
    assert not ledger.db.conn.in_transaction
    for _ in replay(ledger, block_receipts=10):
        break
    assert not ledger.db.conn.in_transaction
    with ledger.write() as connection:
        connection.execute("SELECT 1")

