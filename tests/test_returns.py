"""Returns: the pro-rata rule, return rows in files, and what a return takes back in the ledger.

Stories use Verde Club (PROGRAM.md §2). Its worked example's R1 (Saturday 7 June 2025, summer
weekend ×2) earns 131 rate points (10.00 own brand ×2 ×2 + 45.99 grocery ×2 = 131.98), a
50-point basket bonus for 5 eligible items (2 own brand + 3 grocery; tobacco is excluded) and
100 welcome points: 281.
"""
from __future__ import annotations

import csv
import datetime as dt

import numpy as np
import pytest

from fidelis.core.errors import InputError
from fidelis.core.jobs.check import check_ledger
from fidelis.core.jobs.load import load_files
from fidelis.core.ledger.receipts import lines_by_id
from fidelis.core.ledger.handle import Ledger
from fidelis.core.program.model import parse_program
from fidelis.core.returns import remaining_amount
from fidelis.core.ledger.journal import balance
from fidelis.core.points.redemption import redeem
from fidelis.core.points.standing import standing

HEADER = ["receipt_id", "customer_id", "store_id", "ts", "category", "qty", "amount", "sku", "kind",
          "original_receipt_id", "line"]
R1 = [
    ["R1", "C1", "S1", "2025-06-07T10:00", "own_brand", 2, "10.00", "OB-1", "", "", ""],
    ["R1", "C1", "S1", "2025-06-07T10:00", "tobacco", 1, "30.00", "TB-1", "", "", ""],
    ["R1", "C1", "S1", "2025-06-07T10:00", "grocery", 3, "45.99", "GR-1", "", "", ""],
]


def return_row(return_id: str, ts: str, *, line: int | None = None, sku: str | None = None, qty: int = 1,
               original: str = "R1", customer: str = "") -> list:
    return [return_id, customer, "S2", ts, "", qty, "", sku or "", "return", original, line or ""]


@pytest.fixture
def chain(tmp_path, verde_club):
    """``chain(extra="")`` a Verde Club ledger; ``chain.load(*rows)`` loads rows as one file."""
    class Chain:
        files = 0

        def __init__(self, extra: str = ""):
            self.ledger = Ledger.create(tmp_path / "chain.db", parse_program(verde_club.text + extra))

        def write(self, *rows) -> str:
            Chain.files += 1
            path = tmp_path / f"receipts{Chain.files}.csv"
            with path.open("w", newline="") as handle:
                csv.writer(handle).writerows([HEADER, *rows])
            return str(path)

        def load(self, *rows, **options):
            return load_files(self.ledger, [self.write(*rows)], **options)

        def points(self, receipt_id: str) -> tuple[int, int]:
            return self.ledger.db.execute("SELECT points, unrecovered_points FROM receipts WHERE receipt_id = ?",
                                          (receipt_id,)).fetchone()

    def make(extra: str = "") -> Chain:
        return Chain(extra)

    return make


# --- the pro-rata rule ---------------------------------------------------------------------------


def test_remaining_amount_is_pro_rata_rounded_down():
    # 45.99 for 3 units: keeping 2 keeps floor(4599 × 2 / 3) = 3066, so 1533 goes back
    assert remaining_amount([4599], [3], [2]).tolist() == [3066]
    assert remaining_amount([4599], [3], [0]).tolist() == [0]
    assert remaining_amount([4599], [3], [3]).tolist() == [4599]


def test_returning_units_one_at_a_time_takes_back_what_returning_them_at_once_does():
    amount, qty = np.array([1000]), np.array([3])
    one_by_one = sum(int(remaining_amount(amount, qty, [left])[0] - remaining_amount(amount, qty, [left - 1])[0])
                     for left in (3, 2, 1))
    assert one_by_one == 1000


def test_remaining_amount_is_exact_at_the_engine_bounds():
    amount, qty = 10**12, 999_999_999
    assert remaining_amount([amount], [qty], [qty - 1]).tolist() == [amount * (qty - 1) // qty]


# --- what a return takes back --------------------------------------------------------------------


def test_partial_return_that_drops_the_basket_bonus(chain):
    shop = chain()
    shop.load(*R1, return_row("X1", "2025-06-08T12:00", line=3))
    # 2 grocery units left keep floor(45.99 × 2/3) = 30.66: 40 + 61.32 = 101.32 -> 101 rate points;
    # 4 eligible items miss the basket bonus: 181 earned before, 101 after, 80 taken back
    assert shop.points("X1") == (-80, 0)
    assert balance(shop.ledger, "C1") == 281 - 80
    assert check_ledger(shop.ledger) == []


def test_partial_return_that_keeps_the_basket_bonus(chain):
    shop = chain()
    shop.load(*R1, return_row("X1", "2025-06-08T12:00", line=2))  # tobacco: excluded, nothing to take
    assert shop.points("X1") == (0, 0)
    assert balance(shop.ledger, "C1") == 281


def test_a_return_in_a_later_load_is_rescored_in_the_original_context(chain):
    shop = chain()
    shop.load(*R1)
    shop.load(return_row("X1", "2025-09-01T12:00", sku="GR-1"))  # no promotion on that day
    assert shop.points("X1") == (-80, 0)  # re-scored as on the summer weekend it was bought
    assert check_ledger(shop.ledger) == []


def test_two_returns_of_one_receipt_count_against_each_other(chain):
    shop = chain()
    shop.load(*R1, return_row("X1", "2025-06-08T12:00", line=3, qty=2))
    # 1 grocery unit left: floor(4599/3) = 1533 -> 40 + 30.66 = 70.66 -> 70; 181 - 70 = 111
    assert shop.points("X1") == (-111, 0)
    summary = shop.load(return_row("X2", "2025-06-09T12:00", line=3, qty=2), skip_bad=True,
                        rejects_file=str(shop.write()) + ".rejects.csv")
    assert summary.returns_refused == 1
    assert "more than was bought: line 3 of receipt 'R1' had 3 units, 2 returned before, 2 now" in str(
        summary.problems[0])
    shop.load(return_row("X3", "2025-06-09T12:00", line=3, qty=1))
    assert shop.points("X3") == (-30, 0)  # 70 - 40: together, all the grocery line and the bonus earned
    assert balance(shop.ledger, "C1") == 281 - 141


def test_the_same_return_twice_takes_back_once(chain):
    shop = chain()
    rows = [*R1, return_row("X1", "2025-06-08T12:00", line=3)]
    shop.load(*rows)
    again = shop.load(*rows)
    assert again.duplicates_skipped == 2 and again.returns_loaded == 0
    assert balance(shop.ledger, "C1") == 201
    assert shop.ledger.db.execute("SELECT COUNT(*) FROM journal WHERE kind = 'reverse'").fetchone()[0] == 1


def test_the_same_return_id_with_other_goods_is_a_conflict(chain):
    shop = chain()
    shop.load(*R1, return_row("X1", "2025-06-08T12:00", line=3))
    with pytest.raises(InputError, match="a different receipt with this id is already in the ledger"):
        shop.load(return_row("X1", "2025-06-08T12:00", line=1))


@pytest.mark.parametrize("row, column, reason", [
    (return_row("X1", "2025-06-08T12:00", line=3, original="R9"), "original_receipt_id",
     "return of unknown receipt 'R9'"),
    (return_row("X1", "2025-06-08T12:00", line=4), "line", "receipt 'R1' has 3 lines; there is no line 4"),
    (return_row("X1", "2025-06-08T12:00", sku="NOPE"), "sku", "receipt 'R1' has no line with sku 'NOPE'"),
    (return_row("X1", "2025-06-08T12:00", line=3, qty=4), "qty", "more than was bought"),
    (return_row("X1", "2025-06-08T12:00", line=3, customer="C2"), "customer_id", "not 'C2'"),
    (return_row("X1", "2025-06-07T09:00", line=3), "ts", "before its original receipt"),
    (return_row("X1", "2025-06-08T12:00"), "line", "names the line returned by its position (line) or its sku"),
    (return_row("X1", "2025-06-08T12:00", line=3, original=""), "original_receipt_id", "needs the id"),
])
def test_a_return_that_cannot_be_taken_is_refused_with_its_reason(chain, tmp_path, row, column, reason):
    shop = chain()
    with pytest.raises(InputError) as raised:
        shop.load(*R1, row)
    problem = raised.value.problems[0]
    assert (problem.row, problem.column) == (4, column) and reason in problem.reason
    rejects = tmp_path / "rejects.csv"
    summary = shop.load(*R1, row, skip_bad=True, rejects_file=str(rejects))
    assert summary.receipts_loaded == 1 and summary.rejected_rows == 1
    with rejects.open() as handle:
        (rejected,) = list(csv.DictReader(handle))
    assert rejected["receipt_id"] == "X1" and reason in rejected["reason"]


def test_a_return_row_that_disagrees_with_the_others_is_one_problem(chain):
    shop = chain()
    rows = [return_row("X1", "2025-06-08T12:00", line=n) for n in (1, 2, 3)]
    rows[1][1] = "C1"  # one row names the customer, the other two leave it empty
    with pytest.raises(InputError) as raised:
        shop.load(*R1, *rows)
    assert [(p.row, p.column, p.value, p.reason) for p in raised.value.problems if p.row] == [
        (5, "customer_id", "C1", "the rows of return 'X1' disagree on customer_id: 2 of 3 say ''"),
    ]


def test_a_return_row_at_another_time_than_the_others_is_one_problem(chain):
    shop = chain()
    rows = [return_row("X1", ts, line=n) for n, ts in ((1, "2025-06-10T12:00"), (2, "2025-06-10T12:00"),
                                                       (3, "2025-06-11T12:00"))]
    with pytest.raises(InputError) as raised:
        shop.load(*R1, *rows)
    assert [(p.row, p.column, p.reason) for p in raised.value.problems if p.row] == [
        (6, "ts", "the rows of return 'X1' disagree on ts: 2 of 3 say '2025-06-10T09:00:00Z'"),
    ]


def test_a_row_of_unknown_kind_is_a_bad_row(chain):
    shop = chain()
    row = list(R1[0])
    row[8] = "refund"
    with pytest.raises(InputError, match="column 'kind': must be 'sale' or 'return'"):
        shop.load(row)


def test_returned_spend_leaves_the_qualifying_total(chain):
    shop = chain()
    big = ["R3", "C1", "S1", "2025-06-10T10:00", "grocery", 1, "600.00", "", "", "", ""]
    after = ["R4", "C1", "S1", "2025-06-12T10:00", "grocery", 1, "100.00", "", "", "", ""]
    shop.load(big, return_row("X1", "2025-06-11T10:00", line=1, original="R3"), after)
    tier = shop.ledger.db.execute("SELECT tier FROM receipts WHERE receipt_id = 'R4'").fetchone()[0]
    assert tier == 0  # 600.00 bought and returned: R4 is scored at Base, not Silver
    assert shop.points("R4")[0] == 100
    assert standing(shop.ledger, "C1", dt.date(2025, 6, 30)).qualifying_total == 10_000


@pytest.mark.parametrize("policy, taken, expected_balance, unrecovered, debt", [
    ("allow", 141, -110, 0, 110),
    ("floor_zero", 31, 0, 110, None),
])
def test_return_after_the_points_were_spent(chain, policy, taken, expected_balance, unrecovered, debt):
    shop = chain(f'\n[returns]\nnegative_balance = "{policy}"\n')
    shop.load(*R1)
    redeem(shop.ledger, "C1", 250, "gift-1", instant_us=1749456000000000)  # 2025-06-09
    # all 3 grocery units back: 40 rate points left, no basket bonus; 181 - 40 = 141 to take back
    summary = shop.load(return_row("X1", "2025-06-10T12:00", line=3, qty=3))
    assert (summary.points_taken_back, summary.points_unrecovered) == (141, unrecovered)
    assert shop.points("X1") == (-141, unrecovered)
    assert balance(shop.ledger, "C1") == expected_balance
    assert shop.ledger.db.execute("SELECT points FROM journal WHERE kind = 'reverse'").fetchone()[0] == -taken
    owed = shop.ledger.db.execute("SELECT points FROM debts").fetchone()
    assert (owed[0] if owed else None) == debt
    assert check_ledger(shop.ledger) == []
    # later earnings pay the debt first
    shop.load(["R5", "C1", "S1", "2025-06-16T10:00", "grocery", 1, "20.00", "", "", "", ""])
    assert balance(shop.ledger, "C1") == expected_balance + 20
    assert check_ledger(shop.ledger) == []


def test_returns_in_one_load_or_split_into_parts_give_the_same_ledger(chain, tmp_path):
    rows = [*R1, ["R2", "C2", "S1", "2025-06-07T11:00", "grocery", 5, "50.00", "", "", "", ""],
            return_row("X1", "2025-06-08T12:00", line=3), return_row("X2", "2025-06-09T12:00", line=1, original="R2",
                                                                      qty=2)]
    whole = chain()
    whole.load(*rows)
    split_path = tmp_path / "split.db"
    split = Ledger.create(split_path, whole.ledger.current_program().program)
    load_files(split, [whole.write(*rows)], part_rows=1)
    query = "SELECT receipt_id, points, unrecovered_points FROM receipts ORDER BY receipt_id"
    assert split.db.execute(query).fetchall() == whole.ledger.db.execute(query).fetchall()
    assert check_ledger(split) == []


def test_month_end_replays_exactly_with_returns_and_debts(chain):
    from fidelis.core.jobs import month_end as lifecycle
    from fidelis.core.analytics import month_report as reports
    from fidelis.core.localtime import parse_month
    from fidelis.core.jobs.month_end import replay_close

    shop = chain("\n[expiry]\nafter_months = 1\n")
    shop.load(*R1)
    redeem(shop.ledger, "C1", 250, "gift-1", instant_us=1749456000000000)  # 2025-06-09
    shop.load(return_row("X1", "2025-07-02T12:00", line=3, qty=3))  # 141 back, 31 held: owes 110
    shop.load(["R5", "C1", "S1", "2025-07-10T10:00", "grocery", 1, "100.00", "", "", "", ""])  # pays 100 of it
    lifecycle.month_end(shop.ledger, parse_month("2025-08"), today=dt.date(2030, 1, 1))
    for month in ("2025-06", "2025-07", "2025-08"):
        assert replay_close(shop.ledger, parse_month(month)) == []
    july = reports.month_report(shop.ledger, parse_month("2025-07"))
    assert (july.points["reversed"], july.owed_by_customers, july.outstanding_points) == (141, 10, 0)
    assert balance(shop.ledger, "C1") == 281 - 250 - 141 + 100
    assert check_ledger(shop.ledger) == []


def test_a_floor_zero_report_shows_what_returns_could_not_take_back(chain):
    from fidelis.core.analytics import month_report as reports
    from fidelis.core.localtime import parse_month

    shop = chain('\n[returns]\nnegative_balance = "floor_zero"\n')
    shop.load(*R1)
    redeem(shop.ledger, "C1", 250, "gift-1", instant_us=1749456000000000)
    shop.load(return_row("X1", "2025-06-10T12:00", line=3, qty=3))
    june = reports.month_report(shop.ledger, parse_month("2025-06"))
    assert (june.points["reversed"], june.points["unrecovered"]) == (31, 110)
    assert "unrecovered 110" in june.summary()


def test_context_rebuilt_for_receipts_loaded_before_returns_existed(chain):
    """The m007 migration rebuilds the context of receipts stored before it, as the kernel gives it."""
    from fidelis.core.ledger.schema import CONTEXT_BACKFILL

    shop = chain()
    shop.load(*R1, ["R2", "C1", "S1", "2025-06-07T11:00", "grocery", 1, "5.00", "", "", "", ""],
              ["R3", "C1", "S1", "2025-06-20T11:00", "grocery", 1, "5.00", "", "", "", ""])
    query = "SELECT receipt_id, visit_rank, earned_before_today, birthday FROM receipts ORDER BY receipt_id"
    scored = shop.ledger.db.execute(query).fetchall()
    assert [row[1:3] for row in scored] == [(1, 0), (2, 181), (3, 0)]
    shop.ledger.db.execute("UPDATE receipts SET visit_rank = 0, earned_before_today = 0, birthday = 0")
    for statement in CONTEXT_BACKFILL:
        shop.ledger.db.execute(statement)
    assert shop.ledger.db.execute(query).fetchall() == scored


def test_scoring_files_with_returns_gives_what_they_take_back(chain, engine, tmp_path):
    from fidelis.core.jobs.score import score_files

    shop = chain()
    path = shop.write(*R1, return_row("X1", "2025-06-08T12:00", line=3), return_row("X2", "2025-06-09T12:00", line=3))
    program = tmp_path / "program.toml"
    program.write_text(shop.ledger.current_program().program.text)
    result = score_files(program, [path], engine=engine)
    # X1 as above; X2 the second grocery unit: 1 left, 40 + 30.66 -> 70, from 101: 31 more
    assert result.table.column("points").to_pylist() == [281, -80, -31]
    assert result.table.column("receipt_id").to_pylist() == ["R1", "X1", "X2"]


def test_scoring_a_return_of_a_receipt_not_in_the_files_is_an_input_error(chain, tmp_path):
    from fidelis.core.jobs.score import score_files

    shop = chain()
    path = shop.write(*R1, return_row("X1", "2025-06-08T12:00", line=1, original="R0"))
    program = tmp_path / "program.toml"
    program.write_text(shop.ledger.current_program().program.text)
    with pytest.raises(InputError, match="return of unknown receipt 'R0'"):
        score_files(program, [path])


# --- end to end: random histories with returns, through files and the ledger ---------------------


def _file_rows(history) -> list[list]:
    """A drawn history with returns as the rows of one receipts file (instants written in UTC)."""
    batch = history.batch
    rows = [[*row[:7], "", "", "", ""] for row in history.rows]
    offsets = batch.line_offsets
    for position in np.flatnonzero(batch.is_return):
        moment = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
            microseconds=int(batch.instant_us[position]))
        for line, units in enumerate(batch.line_qty[offsets[position]:offsets[position + 1]].tolist(), start=1):
            if units:
                rows.append([batch.receipt_id[position].as_py(), "", "S1", moment.isoformat().replace("+00:00", "Z"),
                             "", units, "", "", "return", batch.original_receipt_id[position].as_py(), line])
    return rows


@pytest.mark.parametrize("part_rows", [None, 3], ids=["in-one-part", "split-into-parts"])
def test_loading_random_histories_with_returns_equals_the_reference(tmp_path, part_rows):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from fidelis.core.engine import reference

    from .strategies import histories_with_returns

    @settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def check(data):
        history = data.draw(histories_with_returns())
        batch = history.batch
        # returns that bring nothing back cannot be written as rows; the rest go to the file
        units = np.add.reduceat(batch.line_qty, batch.line_offsets[:-1]) if len(batch) else np.zeros(0)
        kept = np.flatnonzero(~batch.is_return | (units > 0))
        batch = batch.take(kept)
        expected = reference.score_batch(history.program, batch)
        folder = tmp_path / f"case{check.calls}"
        check.calls += 1
        folder.mkdir()
        path = folder / "receipts.csv"
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows([HEADER, *_file_rows(history._replace(batch=batch))])
        with Ledger.create(folder / "chain.db", history.program) as ledger:
            load_files(ledger, [path], part_rows=part_rows or 1_000_000, allow_future=True)  # to 2027
            stored = dict(ledger.db.execute("SELECT receipt_id, points FROM receipts").fetchall())
            assert stored == dict(zip(batch.receipt_id.to_pylist(), expected.points.tolist()))
            assert check_ledger(ledger, allow_future=True) == []

    check.calls = 0
    check()


def test_sending_an_earlier_return_again_after_a_later_one_finds_it_stored(chain):
    shop = chain()
    first = return_row("X1", "2025-06-08T12:00", line=3)
    shop.load(*R1, first)
    shop.load(return_row("X2", "2025-06-09T12:00", line=3))
    again = shop.load(first)  # X1 again: a duplicate, not "more than bought" nor a conflict
    assert (again.duplicates_skipped, again.conflicts, again.returns_loaded) == (1, 0, 0)
    assert check_ledger(shop.ledger) == []


def test_two_returns_by_sku_in_one_load_fill_the_sku_lines_in_turn(chain):
    shop = chain()
    two_lines = [["R1", "C1", "S1", "2025-06-07T10:00", "grocery", 1, "10.00", "A", "", "", ""],
                 ["R1", "C1", "S1", "2025-06-07T10:00", "grocery", 1, "10.00", "A", "", "", ""]]
    summary = shop.load(*two_lines, return_row("X1", "2025-06-08T12:00", sku="A"),
                        return_row("X2", "2025-06-09T12:00", sku="A"))
    assert summary.returns_loaded == 2 and summary.returns_refused == 0
    stored = lines_by_id(shop.ledger, ["X1", "X2"])
    lines = [stored[return_id]["qty"].tolist() for return_id in ("X1", "X2")]
    assert lines == [[1, 0], [0, 1]]


def test_a_return_sent_again_with_a_new_one_is_judged_against_every_stored_return(chain, tmp_path):
    shop = chain()
    x1 = return_row("X1", "2025-06-08T12:00", line=3)
    shop.load(*R1, x1, return_row("X2", "2025-06-09T12:00", line=3))
    rejects = tmp_path / "rejects.csv"
    summary = shop.load(x1, return_row("X3", "2025-06-10T12:00", line=3, qty=2), skip_bad=True,
                        rejects_file=str(rejects))
    assert (summary.duplicates_skipped, summary.returns_refused, summary.returns_loaded) == (1, 1, 0)
    assert "more than was bought: line 3 of receipt 'R1' had 3 units, 2 returned before, 2 now" in rejects.read_text()
    assert check_ledger(shop.ledger) == []
