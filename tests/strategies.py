"""Hypothesis strategies for random programs and receipt histories.

Shared by the equivalence tests (compiled kernel == reference, chunked == whole, saved and
restored state == uninterrupted). Programs are generated as TOML text and validated by the
real parser, so every program drawn is one a chain could write. Values are small enough
that tiers are actually reached, promotions actually apply and caps actually bite.
"""
from __future__ import annotations

import datetime as dt
import os
from typing import NamedTuple

from hypothesis import settings
from hypothesis import strategies as st

from fidelis.core.batch import CustomerTable, ReceiptBatch
from fidelis.core.program.model import Program, parse_program

# Bounded by default so the suite stays fast; FIDELIS_HYPOTHESIS_PROFILE=thorough for a long hunt.
settings.register_profile("default", max_examples=60, deadline=None)
settings.register_profile("thorough", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("FIDELIS_HYPOTHESIS_PROFILE", "default"))

CATEGORIES = ("grocery", "own_brand", "tobacco", "baby", "fuel")
#: A category no program names: it must score like any unnamed category.
UNNAMED_CATEGORY = "misc"
STORES = ("S1", "S2", "S3")
CUSTOMERS = ("0001", "0002", "0003", "0004", "0005")
FIRST_DAY = dt.date(2024, 11, 20)
LAST_DAY = dt.date(2027, 3, 10)
TIMEZONES = ("Europe/Bucharest", "America/New_York", "UTC")

decimals = st.sampled_from(["0.25", "0.5", "1", "1.1", "1.25", "1.5", "2", "3", "0.013", "2.75"])
promotion_multipliers = st.sampled_from(["1", "1.2", "1.5", "2", "3", "2.5"])


def _toml_list(values) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


@st.composite
def programs(draw) -> Program:
    """A valid program exercising any combination of the rules of PROGRAM.md."""
    minor_units = draw(st.sampled_from([0, 1, 2, 3, 4]))
    timezone = draw(st.sampled_from(TIMEZONES))
    lines = [
        "[program]", 'name = "Generated"', 'currency = "EUR"', f"minor_units = {minor_units}",
        f'timezone = "{timezone}"', "",
        "[earning]",
        f'points_per_unit = "{draw(decimals)}"',
        f'rounding = "{draw(st.sampled_from(["floor", "half_up", "half_even"]))}"',
    ]
    excluded = draw(st.lists(st.sampled_from(CATEGORIES), unique=True, max_size=2))
    lines.append(f"exclude_categories = {_toml_list(excluded)}")
    lines.append(f"welcome_points = {draw(st.sampled_from([0, 0, 50, 100]))}")
    lines.append(f'birthday_multiplier = "{draw(st.sampled_from(["1", "2", "1.5"]))}"')
    multiplied = draw(st.lists(st.sampled_from([c for c in CATEGORIES if c not in excluded]), unique=True, max_size=3))
    lines.append("[earning.category_multipliers]")
    lines += [f'{category} = "{draw(decimals)}"' for category in multiplied]

    basis = draw(st.sampled_from(["spend", "visits", "points"]))
    period = draw(st.sampled_from(["calendar_year", "rolling_12_months"]))
    holds = ["none", "months"] + (["next_year"] if period == "calendar_year" else [])
    hold = draw(st.sampled_from(holds))
    lines += ["", "[qualification]", f'basis = "{basis}"', f'period = "{period}"', f'hold = "{hold}"']
    if hold == "months":
        lines.append(f"hold_months = {draw(st.integers(1, 6))}")

    steps = {"spend": ["40", "150", "400", "900"], "visits": ["2", "3", "5", "8"], "points": ["30", "120", "400", "1000"]}
    tier_count = draw(st.integers(1, 4))
    thresholds = ["0"] + sorted(draw(st.lists(st.sampled_from(steps[basis]), unique=True,
                                               min_size=tier_count - 1, max_size=tier_count - 1)),
                                key=float)
    tier_names = [f"T{index}" for index in range(len(thresholds))]
    for name, threshold in zip(tier_names, thresholds):
        lines += ["", "[[tiers]]", f'name = "{name}"', f'threshold = "{threshold}"', f'multiplier = "{draw(decimals)}"']

    for index in range(draw(st.integers(0, 3))):
        lines += ["", "[[promotions]]", f'name = "P{index}"', f'multiplier = "{draw(promotion_multipliers)}"']
        if draw(st.booleans()):
            start = FIRST_DAY + dt.timedelta(days=draw(st.integers(0, 400)))
            lines.append(f"start = {start.isoformat()}")
            if draw(st.booleans()):
                lines.append(f"end = {(start + dt.timedelta(days=draw(st.integers(0, 200)))).isoformat()}")
        elif draw(st.booleans()):
            lines.append(f"end = {(FIRST_DAY + dt.timedelta(days=draw(st.integers(0, 400)))).isoformat()}")
        if draw(st.booleans()):
            lines.append(f"weekdays = {_toml_list(draw(st.lists(st.sampled_from(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']), unique=True, min_size=1)))}")
        if draw(st.booleans()):
            start_hour = draw(st.integers(0, 22))
            end_hour = draw(st.integers(start_hour + 1, 24))
            lines.append(f'hours = "{start_hour:02d}:{draw(st.sampled_from(["00", "30"]))}-{end_hour:02d}:00"')
        if draw(st.booleans()):
            lines.append(f"stores = {_toml_list(draw(st.lists(st.sampled_from(STORES), unique=True, min_size=1)))}")
        if draw(st.booleans()):
            lines.append(f"tiers = {_toml_list(draw(st.lists(st.sampled_from(tier_names), unique=True, min_size=1)))}")
        if draw(st.booleans()):
            lines.append(f"categories = {_toml_list(draw(st.lists(st.sampled_from(CATEGORIES), unique=True, min_size=1)))}")
        if draw(st.booleans()):
            lines.append(f'min_basket = "{draw(st.sampled_from(["5", "20", "60"]))}"')

    for _ in range(draw(st.integers(0, 2))):
        lines += ["", "[[basket_bonuses]]"]
        needs = draw(st.sampled_from(["items", "amount", "both"]))
        if needs in ("items", "both"):
            lines.append(f"min_items = {draw(st.integers(1, 6))}")
        if needs in ("amount", "both"):
            lines.append(f'min_amount = "{draw(st.sampled_from(["10", "50", "120"]))}"')
        lines.append(f"points = {draw(st.integers(1, 80))}")
    for _ in range(draw(st.integers(0, 2))):
        lines += ["", "[[visit_bonuses]]", f"nth = {draw(st.integers(1, 4))}", f"points = {draw(st.integers(1, 80))}"]

    caps = []
    if draw(st.booleans()):
        caps.append(f"per_receipt = {draw(st.integers(0, 400))}")
    if draw(st.booleans()):
        caps.append(f"per_customer_day = {draw(st.integers(0, 600))}")
    if caps:
        lines += ["", "[caps]", *caps]
    return parse_program("\n".join(lines) + "\n", source="generated.toml")


@st.composite
def receipt_rows(draw, minor_units: int = 2, max_receipts: int = 40) -> list[tuple]:
    """Line rows (receipt_id, customer_id, store_id, ts, category, qty, amount) of a history.

    Timestamps span more than two years, so receipts cross month and year ends and DST
    changes; most are naive local times, some carry a UTC offset (the same instant written
    another way), and a few share a timestamp so the receipt-id tie-break matters.
    """
    receipt_count = draw(st.integers(1, max_receipts))
    span_days = (LAST_DAY - FIRST_DAY).days
    rows = []
    shared_moments = []
    for number in range(receipt_count):
        customer = draw(st.sampled_from(CUSTOMERS + (None,)))
        store = draw(st.sampled_from(STORES))
        if shared_moments and draw(st.integers(0, 9)) == 0:
            moment = draw(st.sampled_from(shared_moments))
        else:
            day = FIRST_DAY + dt.timedelta(days=draw(st.integers(0, span_days)))
            moment = dt.datetime.combine(day, dt.time(draw(st.integers(0, 23)), draw(st.sampled_from([0, 15, 30, 59]))))
            shared_moments.append(moment)
        written = moment.isoformat()
        if draw(st.integers(0, 4)) == 0:
            written += draw(st.sampled_from(["Z", "+02:00", "-05:00", "+00:30"]))
        receipt_id = f"R{draw(st.integers(0, 10**6)):07d}-{number}"
        for _ in range(draw(st.integers(1, 4))):
            category = draw(st.sampled_from(CATEGORIES + (UNNAMED_CATEGORY,)))
            amount_minor = draw(st.one_of(st.just(0), st.integers(1, 30_000)))
            amount = f"{amount_minor // 10**minor_units}" + (
                f".{amount_minor % 10**minor_units:0{minor_units}d}" if minor_units else ""
            )
            rows.append((receipt_id, customer, store, written, category, draw(st.integers(1, 3)), amount))
    return rows


birth_dates = st.dictionaries(
    st.sampled_from(CUSTOMERS),
    st.one_of(st.none(), st.dates(dt.date(1950, 1, 1), dt.date(2005, 12, 31)).map(dt.date.isoformat)),
)


class History(NamedTuple):
    """A random program with a receipt history to score under it."""

    program: Program
    rows: list[tuple]
    customers: CustomerTable
    batch: ReceiptBatch


@st.composite
def histories(draw) -> History:
    # imported here: the batch builder lives with the test fixtures
    from .conftest import build_batch, build_customers

    program = draw(programs())
    rows = draw(receipt_rows(minor_units=program.info.minor_units))
    return History(
        program=program,
        rows=rows,
        customers=build_customers(draw(birth_dates)),
        batch=build_batch(rows, program.info.timezone, program.info.minor_units),
    )


def returns_batch(batch: ReceiptBatch, timezone: str, picks: list[tuple[int, int, list[int]]]) -> ReceiptBatch:
    """Return receipts for ``batch``: each pick is (sale position, microseconds after the sale,
    units returned of each of its lines), already within what earlier picks left."""
    import numpy as np
    import pyarrow as pa

    from fidelis.core.localtime import local_calendar
    from fidelis.core.returns import remaining_amount

    offsets = batch.line_offsets
    returned: dict[int, np.ndarray] = {}
    ids, customers, originals, instants, counts = [], [], [], [], []
    categories, quantities, amounts = [], [], []
    for number, (position, delay_us, units) in enumerate(picks):
        lines = slice(offsets[position], offsets[position + 1])
        qty, amount = batch.line_qty[lines], batch.line_amount_minor[lines]
        before = returned.get(position, np.zeros(len(qty), np.int64))
        after = before + np.asarray(units, dtype=np.int64)
        returned[position] = after
        ids.append(f"X{number:04d}")
        customers.append(batch.customer_id[position].as_py())
        originals.append(batch.receipt_id[position].as_py())
        instants.append(int(batch.instant_us[position]) + delay_us)
        counts.append(len(qty))
        categories.append(batch.line_category_code[lines])
        quantities.append(np.asarray(units, dtype=np.int32))
        amounts.append(remaining_amount(amount, qty, qty - before) - remaining_amount(amount, qty, qty - after))
    instant_us = np.array(instants, dtype=np.int64)
    calendar = local_calendar(instant_us, timezone)
    line_offsets = np.zeros(len(picks) + 1, dtype=np.int64)
    np.cumsum(counts, out=line_offsets[1:])
    return ReceiptBatch(
        receipt_id=pa.array(ids, pa.string()),
        customer_id=pa.array(customers, pa.string()),
        store_code=np.zeros(len(picks), dtype=np.int32),
        instant_us=instant_us,
        local_day=calendar.local_day,
        local_minute=calendar.local_minute,
        local_month=calendar.local_month,
        line_offsets=line_offsets,
        line_category_code=np.concatenate(categories).astype(np.int32),
        line_qty=np.concatenate(quantities).astype(np.int32),
        line_amount_minor=np.concatenate(amounts).astype(np.int64),
        store_names=batch.store_names,
        category_names=batch.category_names,
        original_receipt_id=pa.array(originals, pa.string()),
    )


@st.composite
def histories_with_returns(draw) -> History:
    """A history in which some receipts have goods returned later, in part or whole, once or
    in several returns (anonymous receipts too: their returns take nothing back)."""
    import numpy as np

    history = draw(histories())
    batch = history.batch
    left = {position: batch.line_qty[batch.line_offsets[position]:batch.line_offsets[position + 1]].astype(int)
            for position in range(len(batch))}
    picks = []
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(batch) - 1))
        if not left[position].any():
            continue
        units = [draw(st.integers(0, int(n))) for n in left[position]]
        left[position] = left[position] - np.array(units)
        delay_us = draw(st.sampled_from([0, 60_000_000, 86_400_000_000, 40 * 86_400_000_000, 400 * 86_400_000_000]))
        picks.append((position, delay_us, units))
    if not picks:
        return history
    returns = returns_batch(batch, history.program.info.timezone, picks)
    return history._replace(batch=ReceiptBatch.concat([batch, returns]))
