"""Shared fixtures: receipts written as Python rows, the example program, golden cases, engines.

Batches are built here row by row with :mod:`zoneinfo`, independently of the production
readers in ``core/io.py``, so a test of an engine never rests on the code that also feeds it.
"""
from __future__ import annotations

import csv
import datetime as dt
import functools
import tomllib
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fidelis.core.batch import CustomerTable, ReceiptBatch
from fidelis.core.program.model import Program, load_program, parse_program
from fidelis.core.engine.engines import ENGINES
from fidelis.core.jobs.load import load_files
from fidelis.core.ledger.handle import Ledger
from fidelis.core.synthetic import generate_chain, write_chain

from .loads import HEADER

CASES_DIR = Path(__file__).parent / "cases"
#: Program files in ``tests/cases`` that are not golden cases themselves.
PROGRAM_FILES = {"verde_club.toml"}

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

#: (receipt_id, customer_id or None, store_id, ts, category, qty, amount as a decimal string)
Row = tuple[str, "str | None", str, str, str, int, str]


def instant_of(ts: str, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """An ISO 8601 timestamp as an aware instant, by the rules of PROGRAM.md §1.

    Naive times are the chain's local time; ``fold=0`` (what ``replace(tzinfo=…)`` gives)
    reads a time in a DST gap with the offset in force before the gap, moving it forward by
    the gap, and takes the first occurrence of an ambiguous time.
    """
    moment = dt.datetime.fromisoformat(ts)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone, fold=0)
    # Through UTC: astimezone() to the zone a datetime already carries would keep a
    # nonexistent wall time such as 03:30 in a gap instead of the real 04:30.
    return moment.astimezone(dt.timezone.utc)


def _microseconds_since_epoch(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


def _amount_minor(amount: str, minor_units: int) -> int:
    value = Decimal(amount)
    minor = value.scaleb(minor_units)
    assert value >= 0 and minor == minor.to_integral_value(), (
        f"amount {amount!r} is negative or has more than {minor_units} fractional digits"
    )
    return int(minor)


def build_batch(rows: Iterable[Row], timezone: str = "Europe/Bucharest", minor_units: int = 2) -> ReceiptBatch:
    """A ReceiptBatch from line rows: rows sharing a receipt id are one receipt, lines in row
    order; receipts sorted into processing order (instant, then receipt id by code point)."""
    zone = zoneinfo.ZoneInfo(timezone)
    headers: dict[str, tuple[str | None, str, str]] = {}
    lines: dict[str, list[tuple[str, int, int]]] = {}
    for receipt_id, customer_id, store_id, ts, category, qty, amount in rows:
        header = (customer_id, store_id, ts)
        assert headers.setdefault(receipt_id, header) == header, (
            f"rows of receipt {receipt_id!r} disagree: {headers[receipt_id]} vs {header}"
        )
        assert qty >= 1, f"receipt {receipt_id!r}: qty must be at least 1"
        lines.setdefault(receipt_id, []).append((category, qty, _amount_minor(amount, minor_units)))

    instants = {receipt_id: instant_of(ts, zone) for receipt_id, (_, _, ts) in headers.items()}
    order = sorted(headers, key=lambda receipt_id: (_microseconds_since_epoch(instants[receipt_id]), receipt_id))

    store_names: list[str] = []
    category_names: list[str] = []

    def code(names: list[str], name: str) -> int:
        if name not in names:
            names.append(name)
        return names.index(name)

    local_times = [instants[receipt_id].astimezone(zone) for receipt_id in order]
    line_rows = [line for receipt_id in order for line in lines[receipt_id]]
    return ReceiptBatch(
        receipt_id=pa.array(order, type=pa.string()),
        customer_id=pa.array([headers[r][0] for r in order], type=pa.string()),
        store_code=np.array([code(store_names, headers[r][1]) for r in order], dtype=np.int32),
        instant_us=np.array([_microseconds_since_epoch(instants[r]) for r in order], dtype=np.int64),
        local_day=np.array([(t.date() - _EPOCH.date()).days for t in local_times], dtype=np.int32),
        local_minute=np.array([t.hour * 60 + t.minute for t in local_times], dtype=np.int16),
        local_month=np.array([(t.year - 1970) * 12 + t.month - 1 for t in local_times], dtype=np.int32),
        line_offsets=np.concatenate([[0], np.cumsum([len(lines[r]) for r in order])]).astype(np.int64),
        line_category_code=np.array([code(category_names, c) for c, _, _ in line_rows], dtype=np.int32),
        line_qty=np.array([qty for _, qty, _ in line_rows], dtype=np.int32),
        line_amount_minor=np.array([amount for _, _, amount in line_rows], dtype=np.int64),
        store_names=store_names,
        category_names=category_names,
    )


def names_of(codes: np.ndarray, names: list[str]) -> list[str]:
    return [names[code] for code in codes]


def assert_same_batch(left: ReceiptBatch, right: ReceiptBatch) -> None:
    assert left.receipt_id.to_pylist() == right.receipt_id.to_pylist()
    assert left.customer_id.to_pylist() == right.customer_id.to_pylist()
    assert names_of(left.store_code, left.store_names) == names_of(
        right.store_code, right.store_names
    )
    for name in (
        "instant_us", "local_day", "local_minute", "local_month",
        "line_offsets", "line_qty", "line_amount_minor",
    ):
        assert np.array_equal(getattr(left, name), getattr(right, name)), name
        assert getattr(left, name).dtype == getattr(right, name).dtype, name
    assert names_of(left.line_category_code, left.category_names) == names_of(
        right.line_category_code, right.category_names
    )
    left_sku = None if left.line_sku is None else left.line_sku.to_pylist()
    right_sku = None if right.line_sku is None else right.line_sku.to_pylist()
    assert left_sku == right_sku


def build_customers(birth_dates: Mapping[str, str | None]) -> CustomerTable:
    """A customers table from customer id -> birth date (YYYY-MM-DD, or None if unknown)."""
    ids = list(birth_dates)
    return CustomerTable(
        customer_id=pa.array(ids, type=pa.string()),
        birth_date=np.array([birth_dates[i] or "NaT" for i in ids], dtype="datetime64[D]"),
        joined_on=np.full(len(ids), np.datetime64("NaT"), dtype="datetime64[D]"),
    )


# --- golden cases -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedReceipt:
    receipt_id: str
    tier: str  # tier name; "" for an anonymous receipt
    rate_points: int
    basket_points: int
    visit_points: int
    welcome_points: int
    cap_points: int
    points: int


@dataclass(frozen=True)
class ExpectedStatus:
    customer_id: str
    local_date: dt.date
    tier: str


@dataclass(frozen=True)
class GoldenCase:
    """A hand-computed case from ``tests/cases/<name>.toml`` (format: tests/test_golden.py)."""

    name: str
    description: str
    program: Program
    batch: ReceiptBatch
    customers: CustomerTable | None
    expected: tuple[ExpectedReceipt, ...]
    expected_status: tuple[ExpectedStatus, ...]

    def tier_index(self, name: str) -> int:
        return -1 if name == "" else self.program.tier_index(name)


def golden_case_paths() -> list[Path]:
    return sorted(path for path in CASES_DIR.glob("*.toml") if path.name not in PROGRAM_FILES)


def load_case(path: Path) -> GoldenCase:
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    if "program_file" in document:
        program = load_program(CASES_DIR / document["program_file"])
    else:
        program = parse_program(document["program"], source=f"{path.name}:program")
    rows = [
        (receipt_id, customer_id or None, store_id, ts, category, qty, amount)
        for receipt_id, customer_id, store_id, ts, category, qty, amount in document["receipts"]
    ]
    customers = None
    if "customers" in document:
        customers = build_customers({customer_id: birth or None for customer_id, birth in document["customers"]})
    expected = tuple(ExpectedReceipt(*row) for row in document["expected"])
    for row in expected:
        parts = row.rate_points + row.basket_points + row.visit_points + row.welcome_points + row.cap_points
        assert parts == row.points, f"{path.name}: expected row {row.receipt_id} does not add up ({parts})"
    expected_status = tuple(
        ExpectedStatus(customer_id, dt.date.fromisoformat(date), tier)
        for customer_id, date, tier in document.get("status_as_of", [])
    )
    return GoldenCase(
        name=path.stem,
        description=document["description"],
        program=program,
        batch=build_batch(rows, program.info.timezone, program.info.minor_units),
        customers=customers,
        expected=expected,
        expected_status=expected_status,
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Any test that asks for ``golden_case`` runs once per case file."""
    if "golden_case" in metafunc.fixturenames:
        paths = golden_case_paths()
        metafunc.parametrize("golden_case", paths, ids=[path.stem for path in paths], indirect=True)


@pytest.fixture
def golden_case(request: pytest.FixtureRequest) -> GoldenCase:
    return load_case(request.param)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Every scoring engine by name; engine tests must pass for each."""
    return request.param


@pytest.fixture
def verde_club() -> Program:
    """The example program of PROGRAM.md §2."""
    return load_program(CASES_DIR / "verde_club.toml")


@pytest.fixture
def make_batch():
    """``make_batch(rows, timezone="Europe/Bucharest", minor_units=2)``: see :func:`build_batch`."""
    return build_batch


@pytest.fixture
def make_customers():
    """``make_customers({"C1": "1990-06-15", "C2": None})``: see :func:`build_customers`."""
    return build_customers


# ---- ledgers and receipt files (rows in loads.py) -------------------------------------------
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


@pytest.fixture
def loaded_chain(tmp_path):
    chain = write_chain(generate_chain(2000, seed=5), tmp_path / "chain")
    ledger = Ledger.create(tmp_path / "chain.db", load_program(chain["program"]))
    load_files(ledger, [chain["receipts"]], customers_file=chain["customers"], chunk_receipts=500)
    yield ledger
    ledger.close()


@pytest.fixture
def between_chunks(monkeypatch):
    """``between_chunks(action)``: a load calls ``action(ledger_path, n)`` before it writes its
    n-th chunk (from 1), as another process writing between two of its transactions would."""
    from fidelis.core.jobs import load as load_job

    def install(action):
        real = load_job._ChunkWriter._chunks

        def chunks(self, *args):
            for number, chunk in enumerate(real(self, *args), start=1):
                action(self.ledger.path, number)
                yield chunk

        monkeypatch.setattr(load_job._ChunkWriter, "_chunks", chunks)

    return install
