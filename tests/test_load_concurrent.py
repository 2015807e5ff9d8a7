"""A load while other writers write: it builds on what they wrote and never double-counts."""
import csv

import pyarrow as pa
import pytest
from fidelis.core.jobs.check import check_ledger
from fidelis.core.jobs.load import load_files
from fidelis.core.ledger.handle import Ledger
from fidelis.core.ledger.receipts import existing_receipts
from fidelis.core.program.model import load_program
from fidelis.core.synthetic import generate_chain, write_chain

from .loads import R1, R2, R3, table_dump


def test_a_load_builds_on_what_another_writer_wrote_while_it_read(ledger, write_receipts, monkeypatch, tmp_path):
    first, second = write_receipts("a.csv", R1, R2), write_receipts("b.csv", R3)
    from fidelis.core.jobs import admission

    real_existing = existing_receipts

    def another_load_meanwhile(handle, receipt_ids):
        found = real_existing(handle, receipt_ids)
        monkeypatch.setattr(admission, "existing_receipts", real_existing)
        with Ledger(handle.path) as other:  # a second process, loading after this one read the state
            load_files(other, [second])
        return found

    monkeypatch.setattr(admission, "existing_receipts", another_load_meanwhile)
    load_files(ledger, [first])
    with Ledger.create(tmp_path / "in-turn.db", ledger.current_program().program) as in_turn:
        load_files(in_turn, [second])
        load_files(in_turn, [first])
        assert table_dump(ledger)["receipts"] == table_dump(in_turn)["receipts"]
    assert check_ledger(ledger) == []


def test_a_load_builds_on_receipts_accrued_between_its_chunks(tmp_path, between_chunks):
    """Tills accrue through the API while an export loads: each chunk after that reads its
    customers back, skips what the tills stored, and the ledger ends as one load would leave it.

    A load writes customer by customer; the tills send the first receipt of ten customers it
    has not reached yet (a later receipt would make the export's earlier ones late)."""
    from fidelis.core.ingest.receipts import check_receipt_table
    from fidelis.core.jobs.accrual import accrue

    from . import test_accrual

    chain = write_chain(generate_chain(600, seed=4), tmp_path / "chain")
    program = load_program(chain["program"])
    tables = test_accrual.receipt_tables(chain["receipts"])
    with Ledger.create(tmp_path / "alone.db", program) as alone:
        load_files(alone, [chain["receipts"]])
        expected = test_accrual.ledger_rows(alone)
        last_customers = [row[0] for row in alone.db.execute(
            "SELECT customer_id FROM customers ORDER BY customer_index DESC LIMIT 10")]
    firsts = {}
    for table in tables:  # in processing order
        firsts.setdefault(table.column("customer_id")[0].as_py(), table)
    till_tables = [firsts[customer] for customer in last_customers]
    chunks = []

    def till_meanwhile(path, number):  # before each chunk is written
        chunks.append(number)
        if number == 2:  # after the first chunk: a till sends receipts the export also holds
            with Ledger(path) as till:
                for table in till_tables:
                    accrue(till, check_receipt_table(table, timezone=program.info.timezone,
                                                     minor_units=program.info.minor_units, source="till"))

    between_chunks(till_meanwhile)
    with Ledger.create(tmp_path / "live.db", program) as live:
        summary = load_files(live, [chain["receipts"]], chunk_receipts=100)
        assert len(chunks) > 2 and summary.duplicates_skipped == 10
        assert test_accrual.ledger_rows(live)["journal"] == expected["journal"]
        assert check_ledger(live) == []


def test_a_receipt_that_became_late_while_the_load_ran_is_counted_not_scored(ledger, write_receipts,
                                                                            between_chunks):
    from fidelis.core.ingest.receipts import check_receipt_table
    from fidelis.core.jobs.accrual import accrue

    receipts = write_receipts("a.csv", R1, ["R2", "C2", "S1", "2025-06-08T10:00", "grocery", 1, "5.00"],
                              ["R3", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "5.00"])
    def till_meanwhile(path, number):
        if number == 2:  # after R1: the till sends C1's receipt of 10 June, after R3
            with Ledger(path) as till:
                accrue(till, check_receipt_table(pa.table({
                    "receipt_id": ["T1"], "customer_id": ["C1"], "store_id": ["S1"], "ts": ["2025-06-10T10:00"],
                    "category": ["grocery"], "qty": pa.array([1], pa.int64()), "amount": ["1.00"]}),
                    timezone="Europe/Bucharest", minor_units=2, source="till"))

    between_chunks(till_meanwhile)
    summary = load_files(ledger, [receipts], chunk_receipts=1)
    assert summary.late_receipts == 1 and summary.receipts_loaded == 2
    assert [(problem.file, problem.row) for problem in summary.problems] == [(receipts, 3)]
    assert sorted(row[0] for row in ledger.db.execute("SELECT receipt_id FROM receipts")) == ["R1", "R2", "T1"]
    assert check_ledger(ledger) == []


@pytest.mark.parametrize("part_rows", [1_000_000, 2], ids=["one-part", "staged-in-parts"])
def test_a_close_between_two_chunks_refuses_the_rest_of_the_closed_month(ledger, write_receipts, between_chunks,
                                                                         tmp_path, part_rows):
    """A month-end closes June while a load is between two chunks: the load's later June
    receipts are refused as in a closed month, counted and named, never written after the close."""
    import datetime as dt

    from fidelis.core.jobs.month_end import month_end, replay_close
    from fidelis.core.localtime import parse_month

    receipts = write_receipts("a.csv", R1, R2, R3, ["R4", "C2", "S1", "2025-07-02T10:00", "grocery", 1, "5.00"])

    def close_june(path, number):
        if number == 2:  # R1 is in: June has a receipt and has ended
            with Ledger(path) as other:
                month_end(other, parse_month("2025-06"), today=dt.date(2025, 8, 1))

    between_chunks(close_june)
    rejects = tmp_path / "rejects.csv"
    summary = load_files(ledger, [receipts], chunk_receipts=1, part_rows=part_rows, skip_bad=True,
                         rejects_file=rejects)
    assert (summary.receipts_loaded, summary.late_receipts) == (2, 2)
    # named by file and row, and set aside in the rejects file as the check's refusals are
    assert [(problem.file, problem.row) for problem in summary.problems] == [(receipts, 2), (receipts, 3)]
    assert all("is in a month already closed" in problem.reason for problem in summary.problems)
    with rejects.open(newline="") as handle:
        rejected = list(csv.DictReader(handle))
    assert sorted((row["row"], row["receipt_id"]) for row in rejected) == [("2", "R2"), ("3", "R3")]  # part by part
    assert all("another writer came in while this load ran" in row["reason"] for row in rejected)
    assert summary.rejected_rows == 2
    assert sorted(row[0] for row in ledger.db.execute("SELECT receipt_id FROM receipts")) == ["R1", "R4"]
    assert replay_close(ledger, parse_month("2025-06")) == [] and check_ledger(ledger) == []


def test_a_receipt_refused_at_write_time_is_found_again_under_its_id_as_written(ledger, write_receipts,
                                                                               between_chunks, tmp_path):
    """Ids are trimmed when read: a refusal by the trimmed id still finds the rows that wrote it with spaces."""
    import datetime as dt

    from fidelis.core.jobs.month_end import month_end
    from fidelis.core.localtime import parse_month

    receipts = write_receipts("a.csv", R1, [" R2 ", *R2[1:]], R3)

    def close_june(path, number):
        if number == 2:
            with Ledger(path) as other:
                month_end(other, parse_month("2025-06"), today=dt.date(2025, 8, 1))

    between_chunks(close_june)
    rejects = tmp_path / "rejects.csv"
    summary = load_files(ledger, [receipts], chunk_receipts=1, skip_bad=True, rejects_file=rejects)
    assert summary.late_receipts == 2 and summary.rejected_rows == 2
    assert [(problem.file, problem.row) for problem in summary.problems] == [(receipts, 2), (receipts, 3)]
    with rejects.open(newline="") as handle:
        assert sorted(row["receipt_id"] for row in csv.DictReader(handle)) == [" R2 ", "R3"]



def test_a_return_whose_original_was_refused_at_write_time_is_refused_with_it(ledger, between_chunks, tmp_path):
    import datetime as dt

    from fidelis.core.jobs.month_end import month_end
    from fidelis.core.localtime import parse_month

    path = tmp_path / "a.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([
            ["receipt_id", "customer_id", "store_id", "ts", "category", "qty", "amount", "sku", "kind",
             "original_receipt_id", "line"],
            ["R1", "C1", "S1", "2025-06-07T10:00", "grocery", 1, "10.00", "", "", "", ""],
            ["O", "C2", "S1", "2025-06-09T10:00", "grocery", 2, "20.00", "G", "", "", ""],
            ["RET", "", "S1", "2025-07-02T10:00", "", 1, "", "G", "return", "O", 1],
        ])

    def close_june(ledger_path, number):
        if number == 2:  # R1 is in; O (June) is refused as closed, RET (July) comes in a later chunk
            with Ledger(ledger_path) as other:
                month_end(other, parse_month("2025-06"), today=dt.date(2025, 8, 1))

    between_chunks(close_june)
    summary = load_files(ledger, [path], chunk_receipts=1, skip_bad=True, rejects_file=tmp_path / "rejects.csv")
    assert (summary.receipts_loaded, summary.late_receipts, summary.returns_refused) == (1, 1, 1)
    assert [(problem.row, problem.column) for problem in summary.problems] == [(2, "ts"), (3, "original_receipt_id")]
    assert check_ledger(ledger) == []
