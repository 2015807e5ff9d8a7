"""The load job: exactly once, in order, bad input named and set aside, parts equal one pass."""
import csv
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pytest
from fidelis.core.errors import InputError, UnsupportedFileError
from fidelis.core.jobs.check import check_ledger
from fidelis.core.jobs.load import load_files
from fidelis.core.jobs.score import score_files
from fidelis.core.ledger.chunk_files import directory_of
from fidelis.core.ledger.figures import counts
from fidelis.core.ledger.handle import Ledger
from fidelis.core.ledger.journal import balance
from fidelis.core.ledger.receipts import lines_by_id
from fidelis.core.program.model import load_program
from fidelis.core.synthetic import generate_chain, write_chain

from .loads import GOOD, HEADER, R1, R2, R3, by_customer_id, table_dump


def test_the_customers_file_is_kept(loaded_chain):
    with_dates = loaded_chain.db.execute(
        "SELECT COUNT(*), COUNT(birth_date), COUNT(joined_on) FROM customers").fetchone()
    assert with_dates[0] > with_dates[1] > 0 and with_dates[2] > 0
    birth_date, = loaded_chain.db.execute(
        "SELECT birth_date FROM customers WHERE birth_date IS NOT NULL LIMIT 1").fetchone()
    assert len(birth_date) == 10 and birth_date[4] == "-"


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


def test_a_rejects_file_that_is_an_input_is_refused_before_anything_is_read(ledger, write_receipts):
    from fidelis.core.errors import OutputError

    receipts = write_receipts("a.csv", R1)
    with pytest.raises(OutputError, match="this is also an input file"):
        load_files(ledger, [receipts], skip_bad=True, rejects_file=receipts)
    assert Path(receipts).read_text().count("\n") == 2  # untouched


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
        lines = lines_by_id(ledger, [last_id])[last_id]
        skus = dict(ledger.db.execute("SELECT sku_id, sku FROM skus").fetchall())
        assert [skus[i] for i in lines["sku_id"]] == rows.column("sku").to_pylist()
        assert lines["qty"].tolist() == rows.column("qty").to_pylist()


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
            # the killed run is failed (interrupted), not running for ever; the rerun is done
            runs = ledger.db.execute("SELECT status, json_extract(counts, '$.interrupted') FROM runs "
                                     "WHERE kind = 'load' ORDER BY run_id").fetchall()
            assert runs[-1] == ("done", None) and all(run == ("failed", 1) for run in runs[:-1]), runs


#: A load that kills itself (SIGKILL) at one moment of writing its ``at``-th chunk file.
_KILLED_LOAD = """
import os, signal, sys
from pathlib import Path
from fidelis.core import Ledger, load_files
from fidelis.core.ledger import chunk_files

moment, at, db, receipts, customers = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
calls = 0
replace, sync = os.replace, chunk_files._sync_directory

def die_on(step, original):
    def wrapped(*arguments):
        global calls
        if step == "before rename" and str(arguments[0]).endswith(".parquet.tmp"):
            calls += 1
            if calls == at:
                os.kill(os.getpid(), signal.SIGKILL)
        original(*arguments)
        if step == "before commit":
            calls += 1
            if calls == at:
                os.kill(os.getpid(), signal.SIGKILL)
    return wrapped

if moment == "before rename":
    chunk_files.os.replace = die_on(moment, replace)
else:
    chunk_files._sync_directory = die_on(moment, sync)
with Ledger(db) as ledger:
    load_files(ledger, [Path(receipts)], customers_file=Path(customers), chunk_receipts=300)
"""


@pytest.mark.parametrize("moment", ["before rename", "before commit"])
def test_a_load_killed_between_its_chunk_file_and_the_commit_leaves_no_orphan_on_rerun(tmp_path, moment):
    """Killed with a chunk file written (under its temporary name, or renamed) but not yet
    named by a commit: the rerun removes the file and ends with the ledger an uninterrupted
    load gives."""
    chain = write_chain(generate_chain(2_000, seed=8), tmp_path / "chain")
    program = load_program(chain["program"])
    with Ledger.create(tmp_path / "whole.db", program) as ledger:
        load_files(ledger, [chain["receipts"]], customers_file=chain["customers"], chunk_receipts=300)
        expected = table_dump(ledger)
    db = tmp_path / "killed.db"
    Ledger.create(db, program).close()
    killed = subprocess.run([sys.executable, "-c", _KILLED_LOAD, moment, "3", str(db), str(chain["receipts"]),
                             str(chain["customers"])], capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    folder = directory_of(db)
    with Ledger(db) as ledger:
        named = {name for (name,) in ledger.db.execute("SELECT name FROM chunk_files")}
        assert len(named) == 2 and len(set(path.name for path in folder.iterdir()) - named) == 1
        load_files(ledger, [chain["receipts"]], customers_file=chain["customers"], chunk_receipts=300)
        assert table_dump(ledger) == expected
        assert sorted(path.name for path in folder.iterdir()) == sorted(
            name for (name,) in ledger.db.execute("SELECT name FROM chunk_files"))
        assert check_ledger(ledger) == []


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


@pytest.mark.parametrize(
    "bad_rows, column, reason",
    [
        ([["R9", "C1", "S1", "2025-13-40T10:00", "grocery", 1, "10.00"]], "ts", "not a real date and time"),
        ([["R9", "C1", "S1", "2025-06-08T10:00", "grocery", 1, "-1.00"]], "amount", "must not be negative"),
        ([["R9", "C1", "S1", "2025-06-08T10:00", "grocery", 1, "1.005"]], "amount", "more than 2 fractional digits"),
        ([["R9", "C1", "S1", "2025-06-08T10:00", "grocery", 0, "1.00"]], "qty", "at least 1"),
        ([["R9", "C2", "S1", "2025-06-08T10:00", "grocery", 1, "1.00"],
          ["R9", "C1", "S1", "2025-06-08T10:00", "baby", 1, "2.00"],
          ["R9", "C1", "S1", "2025-06-08T10:00", "pet", 1, "3.00"]], "customer_id", "customer_id: 2 of 3 say 'C1'"),
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


def test_a_full_disk_stops_a_load_and_a_month_end_cleanly_and_they_finish_later(tmp_path, write_receipts,
                                                                               verde_club):
    """SQLite's page limit stands in for a full disk: the step in progress rolls back whole,
    the error says what to do, and the same commands finish once there is room."""
    import datetime as dt

    from fidelis.core.errors import LedgerFull
    from fidelis.core.jobs.month_end import month_end
    from fidelis.core.localtime import parse_month
    from fidelis.core.program.model import parse_program

    def rows(prefix: str, day: str):
        return [[f"{prefix}{n}", f"C{n}", "S1", f"{day}T10:00", "grocery", 1, "5.00"] for n in range(3000)]

    program = parse_program(verde_club.text + "\n[expiry]\nafter_months = 1\n")
    with Ledger.create(tmp_path / "chain.db", program) as ledger:
        load_files(ledger, [write_receipts("a.csv", *rows("A", "2025-06-07"))])
        more = write_receipts("b.csv", *rows("B", "2025-08-08"))
        pages = ledger.db.execute("PRAGMA page_count").fetchone()[0]
        ledger.db.execute(f"PRAGMA max_page_count = {pages}")
        full = "the disk holding the ledger is full; this step was rolled back whole"
        with pytest.raises(LedgerFull, match=full):
            load_files(ledger, [more], chunk_receipts=500)
        with pytest.raises(LedgerFull, match=full):  # June closes; July's, expiring June's points, cannot
            month_end(ledger, parse_month("2025-07"), today=dt.date(2025, 8, 1))
        ledger.db.execute("PRAGMA max_page_count = 1073741823")
        assert check_ledger(ledger) == []
        load_files(ledger, [more], chunk_receipts=500)
        [july] = month_end(ledger, parse_month("2025-07"), today=dt.date(2025, 8, 1))
        assert july.customers_expired == 3000
        assert check_ledger(ledger) == []
