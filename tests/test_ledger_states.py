"""The ledger under any sequence of operations: every invariant of ``check`` after every step.

A stateful hypothesis test: loads of a chunk of receipts, real-time accruals (identical
bodies from two callers at once among them), redemptions, returns, adjustments and
month-ends, in any order, on a clock that only moves forward. After each step ``check``
finds nothing, and balances equal what the journal says.
"""
from __future__ import annotations

import csv
import datetime as dt
import itertools
import zoneinfo

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fidelis.core.errors import InputError, InsufficientPoints, LedgerError, RedemptionError
from fidelis.core.ingest.receipts import check_receipt_table
from fidelis.core.jobs.accrual import GroupCommit, accrue
from fidelis.core.jobs.check import check_ledger
from fidelis.core.jobs.load import load_files
from fidelis.core.jobs.month_end import month_end
from fidelis.core.ledger.handle import Ledger
from fidelis.core.ledger.journal import balance
from fidelis.core.localtime import month_of
from fidelis.core.points.adjustment import adjust
from fidelis.core.points.redemption import redeem
from fidelis.core.program.model import parse_program

ZONE = "Europe/Bucharest"
CUSTOMERS = ("C1", "C2", "C3")
CATEGORIES = ("grocery", "own_brand", "tobacco")
COLUMNS = ("receipt_id", "customer_id", "store_id", "ts", "category", "qty", "amount", "kind",
           "original_receipt_id", "line")


class LedgerStates(RuleBasedStateMachine):
    """A Verde Club ledger driven by random operations (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.folder = LedgerStates.folder_factory()
        self.ledger = Ledger.create(self.folder / "chain.db",
                                    LedgerStates.program_factory())
        self.clock = dt.datetime(2024, 1, 3, 9, 0, tzinfo=zoneinfo.ZoneInfo(ZONE))
        self.numbers = itertools.count(1)
        self.sales: list[tuple[str, str]] = []  # (receipt id, customer) of stored sales
        self.group = GroupCommit(timezone=ZONE, minor_units=2)

    def teardown(self):
        self.ledger.close()

    # ---- helpers -------------------------------------------------------------------------
    def tick(self, minutes: int) -> str:
        self.clock += dt.timedelta(minutes=minutes)
        return self.clock.isoformat(timespec="minutes")

    def sale_rows(self, customer: str, lines: list[tuple[str, int, int]]) -> list[list]:
        receipt_id = f"R{next(self.numbers):05d}"
        ts = self.tick(37)
        return [[receipt_id, customer, "S1", ts, category, qty, f"{cents // 100}.{cents % 100:02d}", "", "", ""]
                for category, qty, cents in lines]

    def table(self, rows: list[list]) -> pa.Table:
        columns = {name: [row[i] for row in rows] for i, name in enumerate(COLUMNS)}
        columns["qty"] = pa.array(columns["qty"], pa.int64())
        return pa.table({name: columns[name] if name == "qty" else pa.array([str(v) for v in columns[name]])
                         for name in COLUMNS})

    def accrue_rows(self, rows: list[list]):
        return accrue(self.ledger, check_receipt_table(self.table(rows), timezone=ZONE, minor_units=2,
                                                       source="till"))

    # ---- operations ----------------------------------------------------------------------
    lines = st.lists(st.tuples(st.sampled_from(CATEGORIES), st.integers(1, 3), st.integers(1, 40_000)),
                     min_size=1, max_size=3)

    @rule(receipts=st.lists(st.tuples(st.sampled_from(CUSTOMERS), lines), min_size=1, max_size=6),
          chunk=st.integers(1, 4))
    def load_a_file(self, receipts, chunk):
        rows = [row for customer, lines in receipts for row in self.sale_rows(customer, lines)]
        path = self.folder / f"load{next(self.numbers)}.csv"
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows([COLUMNS, *rows])
        summary = load_files(self.ledger, [path], chunk_receipts=chunk)
        assert summary.receipts_loaded == len(receipts)
        self.sales += [(row[0], row[1]) for row in dict((row[0], row) for row in rows).values()]

    @rule(customer=st.sampled_from(CUSTOMERS), lines=lines)
    def a_till_sends_a_receipt_twice_at_once(self, customer, lines):
        table = self.table(self.sale_rows(customer, lines))
        first, again = self.group.commit(self.ledger, [table, table])
        assert [result.existing for result in first + again] == [False, True]
        assert first[0].points == again[0].points
        self.sales.append((first[0].receipt_id, customer))

    @precondition(lambda self: self.sales)
    @rule(pick=st.integers(0, 10**6), qty=st.integers(1, 3))
    def a_customer_returns_a_line(self, pick, qty):
        receipt_id, customer = self.sales[pick % len(self.sales)]
        row = [f"X{next(self.numbers):05d}", "", "S2", self.tick(11), "", qty, "", "return", receipt_id, 1]
        try:
            self.accrue_rows([row])
        except InputError as refused:  # more returned than was bought: refused whole, naming why
            assert any(problem.column in ("qty", "line") for problem in refused.problems), refused

    @rule(customer=st.sampled_from(CUSTOMERS), points=st.integers(1, 400))
    def a_customer_redeems(self, customer, points):
        try:
            before = balance(self.ledger, customer)
        except LedgerError:  # not a customer yet
            return
        self.tick(5)
        try:
            done = redeem(self.ledger, customer, points, f"till-{next(self.numbers)}",
                          instant_us=int(self.clock.timestamp() * 1_000_000))
        except InsufficientPoints:
            assert before < points
        except RedemptionError:  # the program's terms (minimum, multiples)
            pass
        else:
            assert done.balance == before - points

    @rule(customer=st.sampled_from(CUSTOMERS), points=st.integers(-50, 200).filter(bool))
    def an_operator_adjusts(self, customer, points):
        try:
            before = balance(self.ledger, customer)
        except LedgerError:
            return
        self.tick(3)
        try:
            after = adjust(self.ledger, customer, points, "by hand", instant_us=int(self.clock.timestamp() * 1e6))
        except LedgerError:
            assert before < -points
        else:
            assert after == before + points

    @rule(days=st.integers(1, 45))
    def time_passes_and_month_end_runs(self, days):
        self.tick(days * 24 * 60)
        today = self.clock.date()
        month_end(self.ledger, month_of(today) - 1, today=today)

    # ---- invariants ----------------------------------------------------------------------
    @invariant()
    def every_invariant_of_check_holds(self):
        assert check_ledger(self.ledger) == []


@pytest.fixture
def ledger_states(tmp_path_factory, verde_club):
    LedgerStates.folder_factory = staticmethod(lambda: tmp_path_factory.mktemp("states"))
    # with expiry, so that month-ends take points too
    LedgerStates.program_factory = staticmethod(lambda: parse_program(verde_club.text + "\n[expiry]\nafter_months = 2\n"))
    return LedgerStates


def test_any_sequence_of_ledger_operations_keeps_every_invariant(ledger_states):
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(ledger_states, settings=settings(
        max_examples=25, stateful_step_count=12, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]))
