"""Real-time accrual: receipts one at a time give exactly what a bulk load gives."""
from __future__ import annotations


import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pytest

from fidelis.core.errors import LateReceipt, ReceiptConflict
from fidelis.core.jobs.accrual import accrue
from fidelis.core.errors import InputError
from fidelis.core.ingest.receipts import check_receipt_table
from fidelis.core.jobs.check import check_ledger
from fidelis.core.jobs.load import load_files
from fidelis.core.ledger.receipts import LINE_DTYPE
from fidelis.core.ledger.handle import Ledger
from fidelis.core.program.model import load_program
from fidelis.core.synthetic import generate_chain, write_chain
from fidelis.core.ledger.receipts import category_names, fill_lines


def ledger_rows(ledger: Ledger) -> dict[str, list]:
    """What a load writes, with names for the ledger's own ids (which follow the order names arrive in)."""
    categories = category_names(ledger)
    skus = dict(ledger.db.execute("SELECT sku_id, sku FROM skus").fetchall())

    def lines(blob: bytes) -> list[tuple]:
        return [(categories[line["category_id"]], skus.get(int(line["sku_id"])), int(line["qty"]),
                 int(line["amount_minor"])) for line in np.frombuffer(blob, dtype=LINE_DTYPE)]

    receipts = ledger.db.execute(
        "SELECT r.receipt_id, c.customer_id, r.tier, r.points, r.visit_rank, r.earned_before_today, "
        "r.unrecovered_points, r.lines, r.receipt_row FROM receipts r LEFT JOIN customers c USING (customer_index) "
        "ORDER BY r.receipt_id").fetchall()
    receipts = [row[:-1] for row in fill_lines(ledger, receipts, 8, 7)]
    return {
        "receipts": [(*row[:-1], lines(row[-1])) for row in receipts],
        "journal": ledger.db.execute(
            "SELECT c.customer_id, j.kind, j.points, j.instant_us, j.reference FROM journal j "
            "JOIN customers c USING (customer_index) ORDER BY j.reference, j.kind").fetchall(),
        "lots": ledger.db.execute(
            "SELECT c.customer_id, l.earned_month, l.points_earned, l.points_remaining FROM lots l "
            "JOIN customers c USING (customer_index) ORDER BY c.customer_id, l.earned_month").fetchall(),
        "state": ledger.db.execute(
            "SELECT c.customer_id, s.record, s.rolling_totals, s.tier_reached_month FROM customer_state s "
            "JOIN customers c USING (customer_index) ORDER BY c.customer_id").fetchall(),
    }


def receipt_tables(path) -> list[pa.Table]:
    """Each receipt of a file as its own table, in processing order (as tills would send them)."""
    table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in ("receipt_id", "customer_id", "store_id", "ts", "amount")}))
    ids = table.column("receipt_id").to_pylist()
    first = {}
    for row, receipt_id in enumerate(ids):
        first.setdefault(receipt_id, row)
    ts = table.column("ts").to_pylist()
    order = sorted(first, key=lambda receipt_id: (ts[first[receipt_id]], receipt_id))
    return [table.filter(pc.equal(table.column("receipt_id"), receipt_id)) for receipt_id in order]


def accrue_table(ledger: Ledger, table: pa.Table):
    info = ledger.current_program().program.info
    return accrue(ledger, check_receipt_table(table, timezone=info.timezone, minor_units=info.minor_units,
                                              source="request"))


@pytest.fixture
def small_chain(tmp_path):
    return write_chain(generate_chain(400, seed=3), tmp_path / "chain")


def test_receipts_accrued_one_by_one_equal_a_bulk_load(tmp_path, small_chain):
    program = load_program(small_chain["program"])
    with Ledger.create(tmp_path / "bulk.db", program) as bulk, Ledger.create(tmp_path / "live.db", program) as live:
        load_files(bulk, [small_chain["receipts"]])
        for table in receipt_tables(small_chain["receipts"]):
            (result,) = accrue_table(live, table)
            assert not result.existing
        assert ledger_rows(live) == ledger_rows(bulk)
        assert check_ledger(live) == []


def test_the_same_receipt_again_gives_the_first_result(tmp_path, small_chain):
    program = load_program(small_chain["program"])
    with Ledger.create(tmp_path / "live.db", program) as live:
        table = receipt_tables(small_chain["receipts"])[0]
        (first,) = accrue_table(live, table)
        (again,) = accrue_table(live, table)
        assert again.existing and not first.existing
        assert (again.points, again.balance) == (first.points, first.balance)
        assert live.db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 1
        changed = table.set_column(table.schema.get_field_index("qty"), "qty", pa.array([9] * table.num_rows))
        with pytest.raises(ReceiptConflict, match="a different receipt with this id is already in the ledger"):
            accrue_table(live, changed)


def test_a_late_receipt_is_refused_and_nothing_is_written(tmp_path, small_chain):
    program = load_program(small_chain["program"])
    tables = [t for t in receipt_tables(small_chain["receipts"]) if t.column("customer_id")[0].as_py()]
    customer = tables[0].column("customer_id")[0].as_py()
    mine = [t for t in tables if t.column("customer_id")[0].as_py() == customer]
    with Ledger.create(tmp_path / "live.db", program) as live:
        accrue_table(live, mine[1])
        before = ledger_rows(live)
        with pytest.raises(LateReceipt, match="comes before customer .*'s last loaded receipt"):
            accrue_table(live, mine[0])
        assert ledger_rows(live) == before


def test_a_return_accrued_in_real_time(tmp_path, verde_club):
    with Ledger.create(tmp_path / "live.db", verde_club) as live:
        sale = pa.table({"receipt_id": ["R1", "R1"], "customer_id": ["C1", "C1"], "store_id": ["S1", "S1"],
                         "ts": ["2025-06-07T10:00", "2025-06-07T10:00"], "category": ["own_brand", "grocery"],
                         "qty": [2, 3], "amount": ["10.00", "45.99"]})
        (earned,) = accrue_table(live, sale)
        assert earned.points["points"] == 281
        back = pa.table({"receipt_id": ["X1"], "customer_id": [None], "store_id": ["S2"],
                         "ts": ["2025-06-08T12:00"], "category": [None], "qty": [1], "amount": [None],
                         "kind": ["return"], "original_receipt_id": ["R1"], "line": ["2"]},
                        schema=pa.schema([(name, pa.int64() if name == "qty" else pa.string()) for name in (
                            "receipt_id", "customer_id", "store_id", "ts", "category", "qty", "amount", "kind",
                            "original_receipt_id", "line")]))
        (taken,) = accrue_table(live, back)
        assert taken.is_return and taken.points["points"] == -80 and taken.balance == 201
        with pytest.raises(InputError, match="more than was bought"):
            accrue_table(live, back.set_column(0, "receipt_id", pa.array(["X2"])).set_column(
                5, "qty", pa.array([3])))


# --- group commit --------------------------------------------------------------------------------


def test_a_group_commit_gives_each_caller_what_committing_alone_gives(tmp_path, small_chain):
    from fidelis.core.jobs.accrual import GroupCommit

    program = load_program(small_chain["program"])
    tables = receipt_tables(small_chain["receipts"])
    with Ledger.create(tmp_path / "alone.db", program) as alone, Ledger.create(tmp_path / "group.db", program) as group:
        commit = GroupCommit(program.info.timezone, program.info.minor_units)
        expected = [accrue_table(alone, table) for table in tables]
        outcomes = []
        for start in range(0, len(tables), 7):
            outcomes += commit.commit(group, tables[start:start + 7])
        assert [[r.points for r in results] for results in outcomes] == [[r.points for r in results]
                                                                          for results in expected]
        assert ledger_rows(group) == ledger_rows(alone)


def test_in_a_group_a_refused_caller_gets_its_own_error_and_the_others_go_in(tmp_path, verde_club):
    from fidelis.core.jobs.accrual import GroupCommit

    def sale(receipt_id, customer, ts, qty=1):
        return pa.table({"receipt_id": [receipt_id], "customer_id": [customer], "store_id": ["S1"], "ts": [ts],
                         "category": ["grocery"], "qty": pa.array([qty], pa.int64()), "amount": ["10.00"]})

    with Ledger.create(tmp_path / "live.db", verde_club) as live:
        commit = GroupCommit("Europe/Bucharest", 2)
        commit.commit(live, [sale("R0", "C2", "2025-06-20T10:00")])
        good, bad_row, late, also_good = commit.commit(live, [
            sale("R1", "C1", "2025-06-09T10:00"), sale("R2", "C3", "2025-06-09T10:00", qty=0),
            sale("R3", "C2", "2025-06-10T10:00"), sale("R4", "C4", "2025-06-09T11:00")])
        assert good[0].points["points"] == 110 and also_good[0].points["points"] == 110
        assert isinstance(bad_row, InputError)
        assert [(p.row, p.column) for p in bad_row.problems] == [(1, "qty")]
        assert isinstance(late, LateReceipt)
        assert {row[0] for row in live.db.execute("SELECT receipt_id FROM receipts")} == {"R0", "R1", "R4"}
        assert check_ledger(live) == []


def test_concurrent_callers_are_committed_together_exactly_once(tmp_path, small_chain):
    import threading

    from fidelis.core.jobs.accrual import GroupCommit

    program = load_program(small_chain["program"])
    tables = receipt_tables(small_chain["receipts"])
    by_customer: dict = {}
    for table in tables:
        by_customer.setdefault(table.column("customer_id")[0].as_py(), []).append(table)
    with Ledger.create(tmp_path / "bulk.db", program) as bulk:
        load_files(bulk, [small_chain["receipts"]])
        expected = ledger_rows(bulk)
    commit = GroupCommit(program.info.timezone, program.info.minor_units)
    Ledger.create(tmp_path / "live.db", program).close()
    failures = []

    def till(histories):  # a till sends its customers' receipts in order, one at a time
        with Ledger(tmp_path / "live.db") as handle:
            for history in histories:
                for table in history:
                    try:
                        commit.accrue(handle, table)
                    except Exception as error:
                        failures.append(error)

    histories = list(by_customer.values())
    tills = [threading.Thread(target=till, args=(histories[number::6],)) for number in range(6)]
    for thread in tills:
        thread.start()
    for thread in tills:
        thread.join()
    assert failures == []
    with Ledger(tmp_path / "live.db") as live:
        assert ledger_rows(live) == expected
        assert check_ledger(live) == []


def test_every_caller_of_a_group_commit_gets_its_own_answer(tmp_path, small_chain):
    import threading

    from fidelis.core.jobs.accrual import GroupCommit

    program = load_program(small_chain["program"])
    tables, customers = [], set()
    for table in receipt_tables(small_chain["receipts"]):  # one receipt per customer: none is late
        customer = table.column("customer_id")[0].as_py()
        if table.num_rows > 1 and customer and customer not in customers and len(tables) < 24:
            tables.append(table)
            customers.add(customer)
    Ledger.create(tmp_path / "live.db", program).close()
    commit = GroupCommit(program.info.timezone, program.info.minor_units, max_rows=1)  # groups of one caller
    answers = {}

    def caller(table):
        with Ledger(tmp_path / "live.db") as handle:
            answers[table.column("receipt_id")[0].as_py()] = commit.accrue(handle, table)

    callers = [threading.Thread(target=caller, args=(table,)) for table in tables]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join()
    assert {receipt_id: [r.receipt_id for r in results] for receipt_id, results in answers.items()} == {
        t.column("receipt_id")[0].as_py(): [t.column("receipt_id")[0].as_py()] for t in tables}


def test_identical_concurrent_bodies_each_get_an_answer_and_never_stall_the_queue(tmp_path, verde_club):
    """A till retrying on a slow network sends the same receipt several times at once. Each copy
    is its own caller: the first commits it, the others get it back as ``existing``, and the
    queue keeps moving (copies that compared equal once lost a caller and left a leader for ever)."""
    import threading

    from fidelis.core.jobs.accrual import GroupCommit

    Ledger.create(tmp_path / "live.db", verde_club).close()
    for attempt in range(5):  # the race needs a few rounds to show
        commit = GroupCommit("Europe/Bucharest", 2)
        tables = [pa.table({"receipt_id": [f"A{attempt}-{n}"], "customer_id": [f"C{n}"], "store_id": ["S1"],
                            "ts": ["2025-06-07T10:00"], "category": ["grocery"], "qty": [1], "amount": ["10.00"]})
                  for n in range(4)]
        start = threading.Barrier(24)
        answers: list = []
        lock = threading.Lock()

        def caller(table):
            with Ledger(tmp_path / "live.db") as handle:
                start.wait()
                try:
                    outcome = commit.accrue(handle, table)
                except Exception as error:  # recorded, so that the assertion shows it
                    outcome = error
                with lock:
                    answers.append(outcome)

        callers = [threading.Thread(target=caller, args=(tables[n % 4],), daemon=True) for n in range(24)]
        for thread in callers:
            thread.start()
        for thread in callers:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in callers), "callers left waiting for ever"
        assert all(isinstance(answer, list) for answer in answers), answers
        copies = [result for answer in answers for result in answer]
        assert sorted(r.receipt_id for r in copies if not r.existing) == sorted(f"A{attempt}-{n}" for n in range(4))
        assert len(copies) == 24 and len({(r.receipt_id, r.points["points"]) for r in copies}) == 4
    with Ledger(tmp_path / "live.db") as live:
        assert check_ledger(live) == []
