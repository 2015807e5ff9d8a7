"""The admission rule: one definition of duplicate, conflict, future, late and closed for every writer."""
import datetime as dt

import pyarrow as pa
import pytest

from fidelis.core.errors import InputError, LedgerError
from fidelis.core.ingest.receipts import check_receipt_table
from fidelis.core.jobs.accrual import accrue
from fidelis.core.jobs.admission import admit
from fidelis.core.jobs.check import check_ledger
from fidelis.core.jobs.load import load_files
from fidelis.core.ledger.handle import Ledger
from fidelis.core.points.void import void_receipt

from .loads import R1, R2

TOMORROW = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
NEXT_WEEK = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")


def till_receipt(receipt_id: str, ts: str, customer: str = "C1"):
    return check_receipt_table(pa.table({
        "receipt_id": [receipt_id], "customer_id": [customer], "store_id": ["S1"], "ts": [ts],
        "category": ["grocery"], "qty": pa.array([1], pa.int64()), "amount": ["1.00"]}),
        timezone="Europe/Bucharest", minor_units=2, source="till")


def test_a_load_refuses_receipts_dated_beyond_a_day_ahead(ledger, write_receipts, tmp_path):
    ahead = ["F1", "C2", "S1", NEXT_WEEK, "grocery", 1, "5.00"]
    soon = ["F2", "C3", "S1", TOMORROW, "grocery", 1, "5.00"]  # a till's clock running fast: taken
    receipts = write_receipts("a.csv", R1, ahead, soon)
    with pytest.raises(InputError, match=r"row 2, column 'ts': receipt 'F1' is dated .*, more than 24 hours "
                                         r"ahead of now .* correct its date"):
        load_files(ledger, [receipts])
    summary = load_files(ledger, [receipts], skip_bad=True, rejects_file=str(tmp_path / "rejects.csv"))
    assert (summary.receipts_loaded, summary.future_receipts) == (2, 1)
    assert "more than 24 hours ahead" in (tmp_path / "rejects.csv").read_text()
    assert load_files(ledger, [receipts], allow_future=True).receipts_loaded == 1  # synthetic data only


def test_accrual_applies_the_same_tolerance(ledger):
    assert accrue(ledger, till_receipt("T1", TOMORROW))[0].points["points"] > 0
    with pytest.raises(InputError, match="more than 24 hours ahead of now"):
        accrue(ledger, till_receipt("T2", NEXT_WEEK))


def test_at_the_same_instant_receipt_ids_order_every_writer(ledger, write_receipts, between_chunks):
    """Validation and the chunk writer agree: a receipt at its customer's last instant with a
    smaller id is late, however the later one arrived (before the load, or between its chunks)."""
    same_instant = ["A2", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "5.00"]

    def till_meanwhile(path, number):
        if number == 1:  # the till sends A3, at A2's instant, before the load's first write
            with Ledger(path) as till:
                accrue(till, till_receipt("A3", "2025-06-09T10:00"))

    between_chunks(till_meanwhile)
    path = write_receipts("a.csv", same_instant)
    summary = load_files(ledger, [path], chunk_receipts=1)
    assert (summary.receipts_loaded, summary.late_receipts) == (0, 1)
    assert [(problem.file, problem.row, problem.column) for problem in summary.problems] == [(path, 1, "ts")]
    assert check_ledger(ledger) == []
    with pytest.raises(InputError, match="'A1' .* comes before customer C1's last loaded receipt"):
        load_files(ledger, [write_receipts("b.csv", ["A1", *same_instant[1:]])])


def test_a_refusal_names_the_future_receipt_that_causes_it(ledger, write_receipts):
    load_files(ledger, [write_receipts("a.csv", ["F1", "C1", "S1", "2062-06-10T10:00", "grocery", 1, "5.00"])],
               allow_future=True)
    with pytest.raises(LedgerError, match="that receipt is dated ahead of now: `fidelis void` takes it out"):
        accrue(ledger, till_receipt("T1", "2026-01-05T10:00"))
    void_receipt(ledger, "F1", "year typed as 2062")
    assert accrue(ledger, till_receipt("T1", "2026-01-05T10:00"))[0].customer_id == "C1"


def test_the_rule_in_order(ledger, write_receipts):
    """Duplicates first, then conflicts, future, late and closed: one verdict per receipt."""
    from fidelis.core.engine import kernel
    from fidelis.core.ingest.fingerprints import receipt_fingerprints
    from fidelis.core.jobs.month_end import month_end
    from fidelis.core.ledger.customers import load_state
    from fidelis.core.localtime import parse_month

    load_files(ledger, [write_receipts("a.csv", R1, R2)])
    month_end(ledger, parse_month("2025-06"), today=dt.date(2025, 7, 1))
    rows = {"R1": ("C1", "2025-06-07T10:00", 1, "10.00"),   # duplicate
            "R2": ("C1", "2025-06-09T10:00", 9, "20.00"),   # conflict (in a closed month too)
            "N1": ("C1", "2025-06-08T10:00", 1, "1.00"),    # late (and in a closed month)
            "N2": ("C9", NEXT_WEEK, 1, "1.00"),             # future
            "N3": ("C9", "2025-06-20T10:00", 1, "1.00"),    # in a closed month
            "N4": ("C9", "2025-07-02T10:00", 1, "1.00")}    # admitted
    customers, stamps, quantities, amounts = zip(*rows.values())
    batch = check_receipt_table(pa.table({
        "receipt_id": list(rows), "customer_id": list(customers), "store_id": ["S1"] * len(rows), "ts": list(stamps),
        "category": ["grocery"] * len(rows), "qty": pa.array(quantities, pa.int64()), "amount": list(amounts)}),
        timezone="Europe/Bucharest", minor_units=2, source="t").batch
    state = kernel.CustomerState.for_program(ledger.compiled_program()[1])
    load_state(ledger, state)
    verdict = admit(ledger, batch, receipt_fingerprints(batch), state)
    ids = batch.receipt_id.to_pylist()
    assert [ids[p] for p in verdict.duplicate.nonzero()[0]] == ["R1"]
    assert {ids[p]: refusal.kind for p, refusal in verdict.refused.items()} == {
        "R2": "conflict", "N1": "late", "N2": "future", "N3": "closed"}
    assert [ids[p] for p in verdict.admitted.nonzero()[0]] == ["N4"]
