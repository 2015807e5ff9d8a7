"""The ledger and the load job: exactly once, in order, balance = Σ journal."""
import csv
import functools
import datetime as dt
from pathlib import Path
import random
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pytest

from fidelis.core.errors import InputError, UnsupportedFileError
from fidelis.core.jobs.check import check_ledger
from fidelis.core.jobs.load import load_files
from fidelis.core.ledger.receipts import LINE_DTYPE
from fidelis.core.ledger.handle import Ledger
from fidelis.core.errors import IdempotencyConflict, InsufficientPoints, LedgerError, RedemptionError
from fidelis.core.program.model import load_program, parse_program
from fidelis.core.jobs.score import score_files
from fidelis.core.synthetic import generate_chain, write_chain

from .conftest import CASES_DIR
from fidelis.core.ledger.figures import counts
from fidelis.core.ledger.journal import balance, history
from fidelis.core.ledger.receipts import existing_receipts
from fidelis.core.points.adjustment import adjust
from fidelis.core.points.redemption import redeem
from fidelis.core.points.standing import standing


HEADER = ["receipt_id", "customer_id", "store_id", "ts", "category", "qty", "amount"]


@pytest.fixture
def write_receipts(tmp_path):
    def write(name: str, *rows) -> str:
        path = tmp_path / name
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            writer.writerows(rows)
        return str(path)

    return write


@pytest.fixture(params=[None, 1], ids=["in-one-part", "split-into-parts"])
def load(request):
    """load_files, with the input validated in one part or split into parts of a row or so.

    Split, every receipt lands in a part of its own id's choosing and partitions by customer:
    whatever a test asserts must hold for both.
    """
    if request.param is None:
        return load_files
    return functools.partial(load_files, part_rows=request.param)


@pytest.fixture
def ledger(tmp_path, verde_club):
    with Ledger.create(tmp_path / "chain.db", verde_club) as ledger:
        yield ledger


def table_dump(ledger: Ledger) -> dict[str, list]:
    """Everything a load writes, in a stable order (run ids and times aside)."""
    return {
        "customers": ledger.db.execute("SELECT * FROM customers ORDER BY customer_index").fetchall(),
        "customer_state": ledger.db.execute("SELECT * FROM customer_state ORDER BY customer_index").fetchall(),
        "receipts": ledger.db.execute(
            "SELECT receipt_id, customer_index, store_id, instant_us, local_day, amount_minor, tier, rate_points, "
            "basket_points, visit_points, welcome_points, cap_points, points, content_hash, lines "
            "FROM receipts ORDER BY receipt_id").fetchall(),
        "journal": ledger.db.execute(
            "SELECT customer_index, kind, points, instant_us, reference FROM journal ORDER BY entry_id").fetchall(),
        "lots": ledger.db.execute("SELECT * FROM lots ORDER BY customer_index, earned_month").fetchall(),
    }


R1 = ["R1", "C1", "S1", "2025-06-07T10:00", "grocery", 1, "10.00"]
R2 = ["R2", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "20.00"]
R3 = ["R3", "C2", "S1", "2025-06-10T10:00", "grocery", 1, "5.00"]


def test_a_ledger_refuses_to_overwrite_or_to_change_a_program_with_history(tmp_path, verde_club, write_receipts):
    path = tmp_path / "chain.db"
    with Ledger.create(path, verde_club) as ledger:
        assert ledger.current_program().program.sha256 == verde_club.sha256
        other = parse_program(verde_club.text.replace('welcome_points = 100', 'welcome_points = 50'))
        ledger.set_program(other)  # no receipts yet: allowed
        load_files(ledger, [write_receipts("a.csv", R1)])
        with pytest.raises(LedgerError, match="changing the program of a ledger with history"):
            ledger.set_program(verde_club)
    with pytest.raises(LedgerError, match="already exists"):
        Ledger.create(path, verde_club)
    with pytest.raises(LedgerError, match="no ledger here"):
        Ledger(tmp_path / "missing.db")


def test_loading_twice_changes_nothing(ledger, load, write_receipts):
    files = [write_receipts("a.csv", R1, R2), write_receipts("b.csv", R3)]
    first = load(ledger, files)
    assert (first.receipts_loaded, first.new_customers) == (3, 2)
    before = table_dump(ledger)
    again = load(ledger, files)
    assert (again.receipts_loaded, again.duplicates_skipped) == (0, 3)
    assert table_dump(ledger) == before


def test_overlapping_files_give_no_double_points(ledger, load, write_receipts):
    load(ledger, [write_receipts("a.csv", R1, R2)])
    summary = load(ledger, [write_receipts("b.csv", R2, R3)])
    assert (summary.receipts_loaded, summary.duplicates_skipped) == (1, 1)
    # R1 (Saturday, summer weekends x2): 10.00 x 2 = 20 + welcome 100; R2 (Monday): 20
    assert balance(ledger, "C1") == 140


def test_a_conflicting_duplicate_is_refused_or_set_aside(ledger, load, write_receipts, tmp_path):
    load(ledger, [write_receipts("a.csv", R1)])
    changed = ["R1", "C1", "S1", "2025-06-07T10:00", "grocery", 1, "99.00"]
    with pytest.raises(InputError, match="receipt 'R1': a different receipt with this id is already in the ledger"):
        load(ledger, [write_receipts("b.csv", changed, R3)])
    assert counts(ledger)["receipts"] == 1  # nothing written
    rejects = tmp_path / "rejects.csv"
    summary = load(ledger, [write_receipts("b.csv", changed, R3)], skip_bad=True, rejects_file=rejects)
    assert (summary.receipts_loaded, summary.conflicts) == (1, 1)
    assert "b.csv, row 1, column 'receipt_id'" in str(summary.problems[0])
    with rejects.open(newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert (Path(row["file"]).name, row["row"], row["receipt_id"], row["amount"]) == ("b.csv", "1", "R1", "99.00")
    assert "(conflict)" in row["reason"]


def test_receipts_older_than_the_customers_history_are_late(ledger, load, write_receipts):
    load(ledger, [write_receipts("a.csv", R2)])
    with pytest.raises(InputError, match=r"b.csv, row 1, column 'ts': receipt 'R1' \(2025-06-07T07:00:00Z\) comes before customer C1's "
                             r"last loaded receipt \(2025-06-09T07:00:00Z\)"):
        load(ledger, [write_receipts("b.csv", R1)])
    summary = load(ledger, [write_receipts("b.csv", R1, R3)], skip_bad=True)
    assert (summary.receipts_loaded, summary.late_receipts) == (1, 1)


def test_bad_rows_stop_the_load_or_go_to_the_rejects_file(ledger, load, write_receipts, tmp_path):
    bad = ["R9", "C1", "S1", "2025-06-08T10:00", "grocery", 0, "10.00"]
    with pytest.raises(InputError, match="qty"):
        load(ledger, [write_receipts("a.csv", R1, bad)])
    assert counts(ledger)["receipts"] == 0
    rejects = tmp_path / "rejects.csv"
    sibling = ["R9", "C1", "S1", "2025-06-08T10:00", "baby", 2, "5.00"]
    summary = load(ledger, [write_receipts("a.csv", R1, bad, sibling)], skip_bad=True, rejects_file=rejects)
    assert (summary.receipts_loaded, summary.rejected_rows) == (1, 2)
    with rejects.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(Path(r["file"]).name, r["row"], r["receipt_id"], r["qty"]) for r in rows] == [
        ("a.csv", "2", "R9", "0"), ("a.csv", "3", "R9", "2")]
    assert "qty" in rows[0]["reason"] and rows[1]["reason"] == "another row of this receipt is bad"


def test_chunked_load_equals_one_shot_scoring_and_balances_are_the_journal(tmp_path):
    chain = write_chain(generate_chain(3000, seed=11), tmp_path / "chain")
    program = load_program(chain["program"])
    with Ledger.create(tmp_path / "chain.db", program) as ledger:
        load_files(ledger, [chain["receipts"]], customers_file=chain["customers"], chunk_receipts=700)
        stored = dict(ledger.db.execute("SELECT receipt_id, points FROM receipts").fetchall())
        scored = score_files(chain["program"], [chain["receipts"]], chain["customers"]).table
        assert stored == dict(zip(scored.column("receipt_id").to_pylist(), scored.column("points").to_pylist()))
        journal = dict(ledger.db.execute(
            "SELECT c.customer_id, SUM(j.points) FROM journal j JOIN customers c USING (customer_index) "
            "GROUP BY c.customer_id").fetchall())
        for customer_id in list(journal)[:20]:
            assert balance(ledger, customer_id) == journal[customer_id]
        lots = ledger.db.execute("SELECT SUM(points_remaining) FROM lots").fetchone()[0]
        assert lots == sum(journal.values())
        # lines are stored exactly, sku included, in every chunk (the last receipt is in the last one)
        receipts = pa_csv.read_csv(chain["receipts"], convert_options=pa_csv.ConvertOptions(
            column_types={"amount": pa.string(), "customer_id": pa.string()}))
        last_id = receipts.column("receipt_id")[-1].as_py()
        rows = receipts.filter(pc.equal(receipts.column("receipt_id"), last_id))
        blob, = ledger.db.execute("SELECT lines FROM receipts WHERE receipt_id = ?", (last_id,)).fetchone()
        lines = np.frombuffer(blob, dtype=LINE_DTYPE)
        skus = dict(ledger.db.execute("SELECT sku_id, sku FROM skus").fetchall())
        assert [skus[i] for i in lines["sku_id"]] == rows.column("sku").to_pylist()
        assert lines["qty"].tolist() == rows.column("qty").to_pylist()


def test_the_ledger_is_sqlite_in_wal_mode(ledger):
    assert ledger.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(sqlite3.IntegrityError):
        ledger.db.execute("INSERT INTO journal (customer_index, kind, points, instant_us, reference) "
                          "VALUES (0, 'gift', 1, 0, 'x')")


@pytest.fixture
def loaded_chain(tmp_path):
    chain = write_chain(generate_chain(2000, seed=5), tmp_path / "chain")
    ledger = Ledger.create(tmp_path / "chain.db", load_program(chain["program"]))
    load_files(ledger, [chain["receipts"]], customers_file=chain["customers"], chunk_receipts=500)
    yield ledger
    ledger.close()


def test_check_passes_on_a_loaded_ledger(loaded_chain):
    assert check_ledger(loaded_chain) == []


def test_the_customers_file_is_kept(loaded_chain):
    with_dates = loaded_chain.db.execute(
        "SELECT COUNT(*), COUNT(birth_date), COUNT(joined_on) FROM customers").fetchone()
    assert with_dates[0] > with_dates[1] > 0 and with_dates[2] > 0
    birth_date, = loaded_chain.db.execute(
        "SELECT birth_date FROM customers WHERE birth_date IS NOT NULL LIMIT 1").fetchone()
    assert len(birth_date) == 10 and birth_date[4] == "-"


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


@pytest.mark.slow
def test_a_killed_load_finishes_on_rerun_with_the_same_ledger(tmp_path):
    """SIGKILL the load at several moments; the rerun must end where an uninterrupted load ends.

    The input is split into parts (about 180 k rows, parts of 40 k), the path large loads take.
    """
    chain = write_chain(generate_chain(30_000, seed=2), tmp_path / "chain")
    command = [sys.executable, "-m", "fidelis.core.cli", "load", "{db}", str(chain["receipts"]),
               "--customers", str(chain["customers"]), "--chunk-receipts", "500", "--part-rows", "40000", "-q"]

    def run(db, kill_after=None):
        process = subprocess.Popen([part.format(db=db) for part in command],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kill_after is None:
            assert process.wait(timeout=120) == 0, process.stderr.read().decode()
            return
        time.sleep(kill_after)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    program = load_program(chain["program"])
    Ledger.create(tmp_path / "whole.db", program).close()
    run(tmp_path / "whole.db")
    with Ledger(tmp_path / "whole.db") as ledger:
        expected = table_dump(ledger)

    for attempt, kill_after in enumerate(random.Random(4).sample([0.9, 1.1, 1.3, 1.5, 1.7], 3)):
        db = tmp_path / f"killed{attempt}.db"
        Ledger.create(db, program).close()
        run(db, kill_after)
        run(db)
        with Ledger(db) as ledger:
            assert table_dump(ledger) == expected, f"killed after {kill_after} s"
            assert check_ledger(ledger) == []


def test_standing_uses_the_kernels_status_function(ledger, write_receipts):
    load_files(ledger, [write_receipts("a.csv", R1, R2, ["R4", "C1", "S1", "2025-06-10T10:00", "grocery", 1, "480.00"])])
    june = standing(ledger, "C1", dt.date(2025, 6, 11))
    assert (june.tier, june.qualifying_total, june.next_tier, june.to_next_tier) == ("Silver", 51000, "Gold", 99000)
    january = standing(ledger, "C1", dt.date(2026, 1, 1))  # held by 2025 (next_year), nothing yet in 2026
    assert (january.tier, january.qualifying_total, january.to_next_tier) == ("Silver", 0, 150000)
    assert standing(ledger, "C1", dt.date(2027, 1, 1)).tier == "Base"
    assert june.points == balance(ledger, "C1")


def test_customer_attributes_from_the_customers_file(ledger, write_receipts, tmp_path):
    customers = tmp_path / "customers.csv"
    customers.write_text("customer_id,birth_date,joined_on,segment\nC1,1990-06-15,2020-01-02,family\nC9,,,\n")
    load_files(ledger, [write_receipts("a.csv", R1)], customers_file=customers)
    rows = ledger.db.execute("SELECT customer_id, birth_date, joined_on, attributes FROM customers "
                             "ORDER BY customer_index").fetchall()
    assert rows[0] == ("C1", "1990-06-15", "2020-01-02", '{"segment": "family"}')
    assert rows[1][0] == "C9" and rows[1][1] is None


def test_the_same_receipt_in_two_files_of_one_load_is_refused_not_merged(ledger, load, write_receipts):
    files = [write_receipts("a.csv", R1, R2), write_receipts("b.csv", R2, R3)]
    with pytest.raises(InputError, match=r"receipt 'R2' is in more than one file of this load"):
        load(ledger, files)
    assert counts(ledger)["receipts"] == 0
    for path in files:  # one at a time: the overlap is skipped as already loaded
        load(ledger, [path])
    assert counts(ledger)["receipts"] == 3 and balance(ledger, "C1") == 140


def test_receipts_at_the_same_instant_keep_receipt_id_order_across_loads(ledger, write_receipts):
    load_files(ledger, [write_receipts("a.csv", ["R-B", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "1.00"])])
    with pytest.raises(InputError, match="'R-A'.*comes before customer C1's last loaded receipt"):
        load_files(ledger, [write_receipts("b.csv", ["R-A", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "6.00"])])
    load_files(ledger, [write_receipts("c.csv", ["R-C", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "6.00"])])
    assert check_ledger(ledger) == []


def test_birth_dates_survive_loads_without_them(ledger, write_receipts, tmp_path):
    customers = tmp_path / "customers.csv"
    customers.write_text("customer_id,birth_date\nC1,1990-06-15\n")
    load_files(ledger, [write_receipts("a.csv", R1)], customers_file=customers)
    without_dates = tmp_path / "segments.csv"
    without_dates.write_text("customer_id,segment\nC1,family\n")
    # a June receipt earns the birthday multiplier (x2) whether or not the file is given again
    load_files(ledger, [write_receipts("b.csv", R2)], customers_file=without_dates)
    load_files(ledger, [write_receipts("c.csv", ["R5", "C1", "S1", "2025-06-11T10:00", "grocery", 1, "10.00"])])
    points = dict(ledger.db.execute("SELECT receipt_id, points FROM receipts").fetchall())
    assert (points["R2"], points["R5"]) == (40, 20)
    assert ledger.db.execute("SELECT birth_date FROM customers WHERE customer_id = 'C1'").fetchone()[0] == "1990-06-15"
    assert check_ledger(ledger) == []


def test_an_empty_sku_column_does_not_make_a_conflict(ledger, tmp_path):
    without = tmp_path / "without.csv"
    without.write_text("receipt_id,customer_id,store_id,ts,category,qty,amount\nR1,C1,S1,2025-06-07T10:00,grocery,1,10.00\n")
    with_empty = tmp_path / "with.csv"
    with_empty.write_text("receipt_id,customer_id,store_id,ts,category,qty,amount,sku\n"
                          "R1,C1,S1,2025-06-07T10:00,grocery,1,10.00,\n")
    load_files(ledger, [without])
    assert load_files(ledger, [with_empty]).duplicates_skipped == 1


def test_receipts_beyond_the_exact_bound_are_refused_before_anything_is_written(ledger, load, write_receipts):
    huge = ["BIG", "C2", "S1", "2025-06-08T10:00", "grocery", 1, "6000000000.00"]
    rows = [R1, huge, ["BIG", "C2", "S1", "2025-06-08T10:00", "baby", 1, "6000000000.00"], R3]
    with pytest.raises(InputError, match="'BIG' is larger than the engine's exact-arithmetic bound"):
        load(ledger, [write_receipts("a.csv", *rows)])
    assert counts(ledger)["receipts"] == 0
    summary = load(ledger, [write_receipts("a.csv", *rows)], skip_bad=True)
    assert summary.receipts_loaded == 2
    assert ledger.db.execute("SELECT status FROM runs ORDER BY run_id DESC").fetchone()[0] == "done"


def test_files_that_are_not_ledgers_are_refused_and_left_alone(tmp_path):
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE notes (text TEXT)").connection.close()
    before = other.read_bytes()
    with pytest.raises(LedgerError, match="not a Fidelis ledger; it was left untouched"):
        Ledger(other)
    assert other.read_bytes() == before
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="cannot open the ledger"):
        Ledger(garbage)
    with pytest.raises(LedgerError, match="does not exist"):
        Ledger.create(tmp_path / "no" / "such.db", load_program(CASES_DIR / "verde_club.toml"))


def test_a_load_builds_on_what_another_writer_wrote_while_it_read(ledger, write_receipts, monkeypatch, tmp_path):
    first, second = write_receipts("a.csv", R1, R2), write_receipts("b.csv", R3)
    from fidelis.core.jobs import load as load_job

    real_existing = existing_receipts

    def another_load_meanwhile(handle, receipt_ids):
        found = real_existing(handle, receipt_ids)
        monkeypatch.setattr(load_job, "existing_receipts", real_existing)
        with Ledger(handle.path) as other:  # a second process, loading after this one read the state
            load_files(other, [second])
        return found

    monkeypatch.setattr(load_job, "existing_receipts", another_load_meanwhile)
    load_files(ledger, [first])
    with Ledger.create(tmp_path / "in-turn.db", ledger.current_program().program) as in_turn:
        load_files(in_turn, [second])
        load_files(in_turn, [first])
        assert table_dump(ledger)["receipts"] == table_dump(in_turn)["receipts"]
    assert check_ledger(ledger) == []


def test_a_load_builds_on_receipts_accrued_between_its_chunks(tmp_path, monkeypatch):
    """Tills accrue through the API while an export loads: each chunk after that reads its
    customers back, skips what the tills stored, and the ledger ends as one load would leave it."""
    from fidelis.core.jobs.accrual import accrue
    from fidelis.core.ingest.receipts import check_receipt_table

    from . import test_accrual

    chain = write_chain(generate_chain(600, seed=4), tmp_path / "chain")
    program = load_program(chain["program"])
    tables = test_accrual.receipt_tables(chain["receipts"])
    with Ledger.create(tmp_path / "alone.db", program) as alone:
        load_files(alone, [chain["receipts"]])
        expected = test_accrual.ledger_rows(alone)
    from fidelis.core.jobs import load as jobs

    real_originals = jobs._ChunkWriter._stored_originals
    chunks = []

    def till_meanwhile(self, chunk):  # before each chunk is written
        chunks.append(1)
        if len(chunks) == 2:  # after the first chunk: a till sends receipts the export also holds
            with Ledger(self.ledger.path) as till:
                for table in tables[100:110]:
                    accrue(till, check_receipt_table(table, timezone=program.info.timezone,
                                                     minor_units=program.info.minor_units, source="till"))
        return real_originals(self, chunk)

    monkeypatch.setattr(jobs._ChunkWriter, "_stored_originals", till_meanwhile)
    with Ledger.create(tmp_path / "live.db", program) as live:
        summary = load_files(live, [chain["receipts"]], chunk_receipts=100)
        assert len(chunks) > 2 and summary.duplicates_skipped == 10
        assert test_accrual.ledger_rows(live)["journal"] == expected["journal"]
        assert check_ledger(live) == []


GOOD = [R1, R2, R3]


@pytest.mark.parametrize(
    "bad_rows, column, reason",
    [
        ([["R9", "C1", "S1", "2025-13-40T10:00", "grocery", 1, "10.00"]], "ts", "not a real date and time"),
        ([["R9", "C1", "S1", "2025-06-08T10:00", "grocery", 1, "-1.00"]], "amount", "must not be negative"),
        ([["R9", "C1", "S1", "2025-06-08T10:00", "grocery", 1, "1.005"]], "amount", "more than 2 fractional digits"),
        ([["R9", "C1", "S1", "2025-06-08T10:00", "grocery", 0, "1.00"]], "qty", "at least 1"),
        ([["R9", "C1", "S1", "2025-06-08T10:00", "grocery", 1, "1.00"],
          ["R9", "C2", "S1", "2025-06-08T10:00", "baby", 1, "2.00"]], "customer_id", "disagree on customer_id"),
        ([["R9", "C1", "S1", "2025-06-08T10:00", "", 1, "1.00"]], "category", "required value is empty"),
    ],
    ids=["unparsable-ts", "negative-amount", "over-precise-amount", "qty-0", "mixed-customers", "empty-category"],
)
def test_every_kind_of_bad_row_is_named_and_set_aside(ledger, load, write_receipts, tmp_path, bad_rows, column,
                                                       reason):
    path = write_receipts("a.csv", R1, *bad_rows, R2, R3)
    with pytest.raises(InputError, match=reason) as refused:
        load(ledger, [path])
    assert f"a.csv, row 2, column {column!r}" in str(refused.value)
    assert counts(ledger)["receipts"] == 0
    rejects = tmp_path / "rejects.csv"
    summary = load(ledger, [path], skip_bad=True, rejects_file=rejects)
    assert (summary.receipts_loaded, summary.rejected_rows) == (3, len(bad_rows))
    with rejects.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["row"], row["receipt_id"]) for row in rows] == [(str(2 + i), "R9") for i in range(len(bad_rows))]
    assert reason in rows[0]["reason"]
    assert check_ledger(ledger) == []


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("b.csv", b"receipt_id,customer_id,store_id,ts,category,amount\nR9,C1,S1,2025-06-08T10:00,grocery,1.00\n",
         "missing required column 'qty'"),
        ("b.csv", b"", "the file is empty"),
        ("b.csv", (",".join(HEADER) + "\n").encode(), "no receipt rows"),
        ("b.csv", (",".join(HEADER) + "\nR9,C1,S1,2025-06-08T10:00,b\xe9b\xe9,1,1.00\n").encode("latin-1"),
         "not UTF-8"),
    ],
    ids=["missing-column", "empty-file", "header-only", "wrong-encoding"],
)
def test_an_unusable_file_stops_the_load_or_is_set_aside_whole(ledger, load, write_receipts, tmp_path, name,
                                                               content, reason):
    good = write_receipts("a.csv", *GOOD)
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=reason):
        load(ledger, [good, tmp_path / name])
    assert counts(ledger)["receipts"] == 0
    rejects = tmp_path / "rejects.csv"
    summary = load(ledger, [good, tmp_path / name], skip_bad=True, rejects_file=rejects)
    assert (summary.receipts_loaded, summary.rejected_files) == (3, 1)
    with rejects.open(newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert Path(row["file"]).name == name and reason in row["reason"]


def test_an_unknown_file_type_is_refused_before_anything_is_read(ledger, load, write_receipts, tmp_path):
    (tmp_path / "receipts.txt").write_text("whatever")
    with pytest.raises(UnsupportedFileError, match=r"receipts.txt: unsupported file type; Fidelis reads .*\.parquet"):
        load(ledger, [write_receipts("a.csv", *GOOD), tmp_path / "receipts.txt"], skip_bad=True,
             rejects_file=tmp_path / "rejects.csv")
    assert counts(ledger)["receipts"] == 0


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
        "receipts": sorted(map(named_lines, ledger.db.execute(
            f"SELECT receipt_id, {customer}, store_id, instant_us, tier, points, content_hash, lines "
            "FROM receipts t").fetchall())),
        "journal": sorted(ledger.db.execute(
            f"SELECT {customer}, kind, points, instant_us, reference FROM journal t").fetchall()),
        "lots": sorted(ledger.db.execute(
            f"SELECT {customer}, earned_month, points_earned, points_remaining FROM lots t").fetchall()),
    }


def test_a_load_split_into_parts_equals_a_load_in_one(tmp_path):
    chain = write_chain(generate_chain(3000, seed=8), tmp_path / "chain")
    program = load_program(chain["program"])
    dumps = []
    for name, part_rows in (("one", None), ("parts", 2500)):
        with Ledger.create(tmp_path / f"{name}.db", program) as ledger:
            options = {} if part_rows is None else {"part_rows": part_rows}
            summary = load_files(ledger, [chain["receipts"]], customers_file=chain["customers"],
                                 chunk_receipts=400, **options)
            assert summary.receipts_loaded == 3000
            assert check_ledger(ledger) == []
            dumps.append(by_customer_id(ledger))
    assert dumps[0] == dumps[1]
    assert not list(tmp_path.glob(".fidelis-*")), "scratch files are removed"


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


# --- redemptions and adjustments --------------------------------------------------------------

JULY = ["R7", "C1", "S1", "2025-07-01T10:00", "grocery", 1, "100.00"]


@pytest.fixture
def three_lots(ledger, write_receipts):
    """C1 earns in June (R1 120, R2 20) and July (R7 100): lots of 140 and 100 points."""
    load_files(ledger, [write_receipts("a.csv", R1, R2, JULY)])
    assert lots_of(ledger) == [(665, 140), (666, 100)]
    return ledger


def lots_of(ledger: Ledger, customer_id: str = "C1") -> list[tuple[int, int]]:
    return ledger.db.execute(
        "SELECT earned_month, points_remaining FROM lots JOIN customers USING (customer_index) "
        "WHERE customer_id = ? ORDER BY earned_month", (customer_id,)).fetchall()


def test_a_redemption_takes_the_oldest_lots_first(three_lots):
    done = redeem(three_lots, "C1", 150, "till-1")
    assert (done.points, done.balance, done.existing) == (150, 90, False)
    assert lots_of(three_lots) == [(665, 0), (666, 90)]
    assert history(three_lots, "C1", limit=1)[0] | {"at": None} == {
        "entry_id": done.entry_id, "kind": "redeem", "points": -150, "at": None, "reference": "till-1"}
    assert check_ledger(three_lots) == []


def test_a_redemption_is_made_once_per_reference(three_lots):
    first = redeem(three_lots, "C1", 100, "till-1")
    again = redeem(three_lots, "C1", 100, "till-1")
    assert again.existing and (again.entry_id, again.balance) == (first.entry_id, 140)
    assert balance(three_lots, "C1") == 140
    with pytest.raises(IdempotencyConflict, match="'till-1' was already made for 100 points"):
        redeem(three_lots, "C1", 50, "till-1")


def test_a_redemption_never_overdraws_and_follows_the_programs_rules(tmp_path, write_receipts, verde_club):
    rules = verde_club.text + '\n[redemption]\npoint_value = "0.01"\nmin_points = 50\nmultiple_of = 25\n'
    with Ledger.create(tmp_path / "rules.db", parse_program(rules)) as ledger:
        load_files(ledger, [write_receipts("a.csv", R1, R2, JULY)])
        with pytest.raises(InsufficientPoints, match="has 240 points; 250 cannot be redeemed"):
            redeem(ledger, "C1", 250, "a")
        for points, why in ((25, "at least 50"), (60, "multiples of 25")):
            with pytest.raises(RedemptionError, match=why):
                redeem(ledger, "C1", points, "b")
        assert balance(ledger, "C1") == 240 and counts(ledger)["journal"] == 3
        assert redeem(ledger, "C1", 75, "c").balance == 165


def test_adjustments_add_to_this_months_lot_or_take_from_the_oldest(three_lots):
    adjust(three_lots, "C1", 30, "goodwill: late delivery", instant_us=1_752_000_000_000_000)  # 2025-07-08
    assert lots_of(three_lots) == [(665, 140), (666, 130)]
    adjust(three_lots, "C1", -150, "duplicate card merged")
    assert lots_of(three_lots) == [(665, 0), (666, 120)]
    assert three_lots.db.execute("SELECT note FROM journal WHERE kind = 'adjust' ORDER BY entry_id").fetchall() == [
        ("goodwill: late delivery",), ("duplicate card merged",)]
    with pytest.raises(LedgerError, match="cannot take 500"):
        adjust(three_lots, "C1", -500, "too much")
    assert check_ledger(three_lots) == []


def test_concurrent_redemptions_never_overdraw(three_lots):
    """20 processes redeem 50 points each from a balance of 240: exactly 4 succeed."""
    processes = [subprocess.Popen(
        [sys.executable, "-m", "fidelis.core.cli", "redeem", str(three_lots.path), "C1", "50", "--reference", f"r{i}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(20)]
    results = [(process.wait(timeout=120), process.stderr.read()) for process in processes]
    assert sum(code == 0 for code, _ in results) == 4
    assert all("has 40 points; 50 cannot be redeemed" in err for code, err in results if code != 0), results
    assert balance(three_lots, "C1") == 40 and min(points for _, points in lots_of(three_lots)) >= 0
    assert check_ledger(three_lots) == []


def test_receipts_refused_create_no_customers(ledger, load, write_receipts):
    load(ledger, [write_receipts("a.csv", R1)])
    changed = ["R1", "C9", "S1", "2025-06-07T10:00", "grocery", 1, "99.00"]  # R1 again, another customer
    summary = load(ledger, [write_receipts("b.csv", changed, R3)], skip_bad=True)
    assert (summary.conflicts, summary.new_customers) == (1, 1)
    assert [row[0] for row in ledger.db.execute("SELECT customer_id FROM customers ORDER BY customer_index")] == [
        "C1", "C2"]


def test_scratch_left_by_a_killed_load_is_removed_by_the_next(ledger, write_receipts):
    stale = ledger.path.parent / ".fidelis-load-999999999-abc"  # no such process
    stale.mkdir()
    (stale / "part0-file0.arrow").write_bytes(b"x")
    load_files(ledger, [write_receipts("a.csv", R1)])
    assert not stale.exists()


def test_lots_sum_points_exactly_past_two_to_the_53(tmp_path, write_receipts):
    """Ten receipts of ~10^15 points in one month: a float sum would round the lot."""
    program = parse_program(
        '[program]\nname = "Big"\ncurrency = "RON"\nminor_units = 2\ntimezone = "Europe/Bucharest"\n'
        '[earning]\npoints_per_unit = "100000"\nwelcome_points = 1\n')
    with Ledger.create(tmp_path / "big.db", program) as ledger:
        rows = [[f"B{i}", "C1", "S1", f"2025-06-{i + 1:02d}T10:00", "grocery", 1, "9999999999.99"] for i in range(10)]
        load_files(ledger, [write_receipts("a.csv", *rows)])
        expected = 10 * 999_999_999_999_000 + 1
        assert expected > 2**53 and balance(ledger, "C1") == expected
        assert lots_of(ledger) == [(665, expected)]
        assert check_ledger(ledger) == []


def test_a_receipt_that_became_late_while_the_load_ran_is_counted_not_scored(ledger, write_receipts, monkeypatch):
    from fidelis.core.jobs import load as jobs
    from fidelis.core.jobs.accrual import accrue
    from fidelis.core.ingest.receipts import check_receipt_table

    receipts = write_receipts("a.csv", R1, ["R2", "C2", "S1", "2025-06-08T10:00", "grocery", 1, "5.00"],
                              ["R3", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "5.00"])
    real_originals = jobs._ChunkWriter._stored_originals
    calls = []

    def till_meanwhile(self, chunk):
        calls.append(1)
        if len(calls) == 2:  # after R1: the till sends C1's receipt of 10 June, after R3
            with Ledger(self.ledger.path) as till:
                accrue(till, check_receipt_table(pa.table({
                    "receipt_id": ["T1"], "customer_id": ["C1"], "store_id": ["S1"], "ts": ["2025-06-10T10:00"],
                    "category": ["grocery"], "qty": pa.array([1], pa.int64()), "amount": ["1.00"]}),
                    timezone="Europe/Bucharest", minor_units=2, source="till"))
        return real_originals(self, chunk)

    monkeypatch.setattr(jobs._ChunkWriter, "_stored_originals", till_meanwhile)
    summary = load_files(ledger, [receipts], chunk_receipts=1)
    assert summary.late_receipts == 1 and summary.receipts_loaded == 2
    assert "R3" in [problem.value for problem in summary.problems]
    assert sorted(row[0] for row in ledger.db.execute("SELECT receipt_id FROM receipts")) == ["R1", "R2", "T1"]
    assert check_ledger(ledger) == []


def test_writes_work_where_the_writers_lock_file_cannot_be_made(ledger, write_receipts):
    ledger.close()
    lock = ledger.path.with_name(ledger.path.name + "-writer")
    lock.unlink(missing_ok=True)
    lock.mkdir()  # not a file: writers fall back to SQLite's own lock
    with Ledger(ledger.path) as reopened:
        load_files(reopened, [write_receipts("a.csv", R1)])
        assert balance(reopened, "C1") == 120


def test_a_write_inside_a_write_on_one_handle_is_refused_plainly(ledger):
    with ledger.write():
        with pytest.raises(LedgerError, match="inside another"):
            with ledger.write():
                pass
