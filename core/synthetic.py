"""Synthetic retail chains: seeded receipts, customers and a sample program.

Real receipt data cannot leave a chain, yet tests, benchmarks and the demo need data that
looks like it: a few heavy shoppers and many occasional ones, busy and quiet stores, baskets
of mixed categories, weekend and December peaks, anonymous receipts, free items, and the
awkward timestamps of a chain's time zone (the spring-forward gap and the autumn overlap,
written both as naive local times and with explicit offsets). Everything here is a pure
function of the seed and the parameters, so a failing test or a benchmark run can be
reproduced exactly.

Two outputs share one generator:

- :func:`chain_columns` returns numpy columns (customer and store indices, local time parts,
  CSR line offsets, category codes, quantities, amounts in minor units). It is fully
  vectorised, so benchmark-sized chains (millions of receipts) are built in seconds.
- :func:`generate_chain` adds the text a chain would export (PROGRAM.md §1 columns as
  strings), a customers table and a sample program; :func:`write_chain` writes them as files.

Amounts are in a 2-digit currency (RON); the program texts say so.
"""
from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .localtime import (
    MICROS_PER_SECOND,
    Transitions,
    day_number,
    local_calendar,
    local_to_instant_us,
    transitions,
)

MINOR_UNITS = 2
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class _Category:
    """How one category's lines look: how often it appears and what its items cost."""

    name: str
    line_share: float  # relative frequency among a basket's lines
    sku_prefix: str
    sku_count: int
    median_price_minor: int  # unit price of a typical item
    price_sigma: float  # lognormal spread of unit prices across the catalogue
    max_qty: int
    discountable: bool = True  # can be discounted or given away (amount 0.00)


#: The chain's categories. Tobacco and lottery are what programs usually exclude; own_brand
#: is what they usually boost; fuel is sold only at stores with a filling station.
CATEGORIES: tuple[_Category, ...] = (
    _Category("grocery", 22.0, "GRO", 2400, 850, 0.70, 6),
    _Category("fresh", 12.0, "FRS", 600, 700, 0.60, 6),
    _Category("bakery", 7.0, "BAK", 250, 450, 0.50, 6),
    _Category("dairy", 10.0, "DAI", 500, 650, 0.50, 6),
    _Category("meat", 6.0, "MEA", 400, 2500, 0.60, 4),
    _Category("beverages", 10.0, "BEV", 900, 700, 0.70, 6),
    _Category("own_brand", 9.0, "OWN", 700, 550, 0.60, 6),
    _Category("household", 5.0, "HOU", 800, 1500, 0.70, 4),
    _Category("beauty", 4.0, "BEA", 900, 2200, 0.80, 3),
    _Category("pharmacy", 2.5, "PHA", 500, 1800, 0.80, 3),
    _Category("baby", 2.5, "BAB", 400, 3000, 0.70, 4),
    _Category("pet", 2.0, "PET", 300, 2000, 0.80, 4),
    _Category("electronics", 0.8, "ELE", 300, 12000, 1.00, 2),
    _Category("fuel", 1.5, "FUE", 3, 750, 0.0, 1, discountable=False),
    _Category("tobacco", 3.0, "TOB", 60, 2500, 0.15, 2, discountable=False),
    _Category("lottery", 1.2, "LOT", 5, 1000, 0.0, 5, discountable=False),
)
CATEGORY_NAMES: tuple[str, ...] = tuple(category.name for category in CATEGORIES)
_CODE = {name: code for code, name in enumerate(CATEGORY_NAMES)}

#: Share of receipts without a customer (cash, no card).
ANONYMOUS_SHARE = 0.03
#: Share of customers whose birth date the chain knows.
BIRTH_DATE_SHARE = 0.70
#: Share of receipts whose ``ts`` carries an explicit offset, and written in UTC (``Z``).
OFFSET_TS_SHARE = 0.02
UTC_TS_SHARE = 0.01
#: Share of a customer's receipts at their home store.
HOME_STORE_SHARE = 0.85

# Lines per receipt, 1..12 (mean ≈ 6.1).
_LINES_PER_RECEIPT_WEIGHTS = np.array([10, 9, 9, 9, 9, 9, 9, 8, 8, 7, 7, 6], dtype=np.float64)
# Monday .. Sunday.
_WEEKDAY_WEIGHTS = np.array([0.92, 0.90, 0.95, 1.00, 1.18, 1.40, 0.85])
# Hour of day at stores open 07:00-22:00 (index = hour - 7), and at 24-hour stores.
_DAY_HOUR_WEIGHTS = np.array(
    [0.45, 0.60, 0.75, 0.90, 1.00, 1.10, 1.00, 0.90, 0.95, 1.15, 1.30, 1.25, 1.00, 0.70, 0.40]
)
_ALL_DAY_HOUR_WEIGHTS = np.concatenate(
    [[0.12, 0.08, 0.06, 0.05, 0.05, 0.08, 0.25], _DAY_HOUR_WEIGHTS, [0.30, 0.18]]
)
_OPENING_HOUR = 7
# Quantity on a line, 1..6, before the category's maximum.
_QTY_WEIGHTS = np.array([82.0, 10.0, 2.0, 2.0, 2.0, 2.0])
_FUEL_PRICE_MINOR = np.array([749, 769, 389])  # petrol, diesel, LPG per litre
_LOTTERY_PRICE_MINOR = np.array([500, 1000, 1500, 2000, 3000])


@dataclass
class ChainColumns:
    """A synthetic chain as numpy columns, receipts in processing order.

    Receipts are sorted by instant, then by receipt id (PROGRAM.md §1); the lines of receipt
    ``r`` are ``line_offsets[r]:line_offsets[r + 1]`` of every ``line_*`` column. Local time
    parts are those of the instant in ``timezone`` (what the engine derives), so a naive time
    written in the spring-forward gap (03:30) has ``local_minute`` of 04:30.

    Parameters
    ----------
    customer_index : int32, shape (R,); index into the customer columns, -1 = anonymous
    store_index : int32, shape (R,); index into ``store_names``
    till : int8, shape (R,); till number within the store, 1..9
    receipt_number : int64, shape (R,); per store and till, increasing with time
    instant_us : int64, shape (R,); microseconds since 1970-01-01T00:00Z
    local_day : int32, shape (R,); local date as days since 1970-01-01
    local_minute : int16, shape (R,); minutes since local midnight
    local_month : int32, shape (R,); ``(year - 1970) * 12 + month - 1``
    written_local_s : int64, shape (R,); the local wall clock a naive ``ts`` shows, seconds
        since 1970-01-01T00:00 local (may lie in a DST gap or overlap)
    ts_style : int8, shape (R,); 0 naive local, 1 local with offset, 2 UTC with ``Z``
    line_offsets : int64, shape (R + 1,)
    line_category_code : int32, shape (L,); index into ``category_names``
    line_qty : int32, shape (L,); ≥ 1
    line_amount_minor : int64, shape (L,); line total in minor units, ≥ 0
    line_sku_code : int32, shape (L,); index into ``sku_names``
    customer_number : int64, shape (C,); the card number, written with 10 digits
    customer_birth_date, customer_joined_on : datetime64[D], shape (C,); NaT where unknown
    store_names : list[str]; store_open_all_day, store_has_fuel : bool, shape (S,)
    sku_names : list[str]; category_names : tuple[str, ...]; the vocabularies of the codes
    timezone, start, end : the chain's zone and its local date range, end exclusive
    """

    customer_index: np.ndarray
    store_index: np.ndarray
    till: np.ndarray
    receipt_number: np.ndarray
    instant_us: np.ndarray
    local_day: np.ndarray
    local_minute: np.ndarray
    local_month: np.ndarray
    written_local_s: np.ndarray
    ts_style: np.ndarray
    line_offsets: np.ndarray
    line_category_code: np.ndarray
    line_qty: np.ndarray
    line_amount_minor: np.ndarray
    line_sku_code: np.ndarray
    customer_number: np.ndarray
    customer_birth_date: np.ndarray
    customer_joined_on: np.ndarray
    store_names: list[str]
    store_open_all_day: np.ndarray
    store_has_fuel: np.ndarray
    sku_names: list[str]
    category_names: tuple[str, ...]
    timezone: str
    start: dt.date
    end: dt.date
    seed: int

    @property
    def receipt_count(self) -> int:
        return len(self.instant_us)

    @property
    def line_count(self) -> int:
        return int(self.line_offsets[-1])

    @property
    def customer_count(self) -> int:
        return len(self.customer_number)

    @property
    def store_count(self) -> int:
        return len(self.store_names)

    def line_receipt_index(self) -> np.ndarray:
        """For each line, the index of its receipt (int32, shape (L,))."""
        counts = np.diff(self.line_offsets)
        return np.repeat(np.arange(self.receipt_count, dtype=np.int32), counts)


@dataclass
class SyntheticChain:
    """A chain's export as it would arrive: receipts and customers tables, and a program.

    ``receipts`` has the PROGRAM.md §1 columns, all strings except ``qty`` (int32), one row
    per line, receipts in time order with their lines contiguous; ``customer_id`` is null on
    anonymous receipts. ``customers`` has ``customer_id``, ``birth_date`` (YYYY-MM-DD or
    null) and ``joined_on`` (YYYY-MM-DD). ``columns`` is the numeric form the text was made
    from, the ground truth for tests.
    """

    receipts: pa.Table
    customers: pa.Table
    program_text: str
    columns: ChainColumns


def default_customer_count(receipt_count: int) -> int:
    """About one customer per five receipts over the chain's history."""
    return max(1, round(receipt_count / 5))


def default_store_count(receipt_count: int) -> int:
    """About one store per 2,000 receipts, at least three."""
    return max(3, round(receipt_count / 2000))


def store_names(store_count: int) -> list[str]:
    """``S001`` …; wider numbers only when the chain has more than 999 stores."""
    width = max(3, len(str(store_count)))
    return [f"S{number:0{width}d}" for number in range(1, store_count + 1)]


def promotion_store_names(store_count: int) -> list[str]:
    """The stores running the weekend promotion: every third store, at most 50."""
    return store_names(store_count)[::3][:50]


def chain_columns(
    receipt_count: int,
    *,
    seed: int = 7,
    customer_count: int | None = None,
    store_count: int | None = None,
    start: dt.date = dt.date(2024, 1, 1),
    years: int = 2,
    timezone: str = "Europe/Bucharest",
) -> ChainColumns:
    """Generate a chain as numpy columns, without any text (the fast path for benchmarks).

    Every step is vectorised over customers, receipts or lines; the only Python loops place
    a few receipts in each DST gap and overlap and walk the catalogue's categories. Each
    stage draws from its own seeded stream, so changing one stage does not reshuffle the
    others.
    """
    if receipt_count < 0:
        raise ValueError("receipt_count must be ≥ 0")
    if years < 1:
        raise ValueError("years must be ≥ 1")
    customer_count = default_customer_count(receipt_count) if customer_count is None else customer_count
    store_count = default_store_count(receipt_count) if store_count is None else store_count
    if customer_count < 1 or store_count < 1:
        raise ValueError("customer_count and store_count must be ≥ 1")
    zoneinfo.ZoneInfo(timezone)  # an unknown zone fails here, before any work
    end = _add_years(start, years)
    streams = [np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(6)]
    stores_rng, customers_rng, receipts_rng, times_rng, lines_rng, dst_rng = streams

    # Stores: skewed traffic; one in five open around the clock, those with a filling station.
    store_traffic = stores_rng.lognormal(0.0, 0.5, store_count)
    store_open_all_day = np.arange(store_count) % 5 == 1
    if not store_open_all_day.any():
        store_open_all_day[0] = True
    store_has_fuel = store_open_all_day.copy()
    store_tills = np.clip(np.rint(2 + 3 * store_traffic / store_traffic.mean()), 2, 9).astype(np.int8)
    store_cdf = _cdf(store_traffic)

    # Calendar: weekday, December and holiday effects plus a mild growth trend.
    start_day, end_day = day_number(start), day_number(end)
    day_weights = _day_weights(start_day, end_day)
    day_cdf = _cdf(day_weights)
    day_count = end_day - start_day

    # Customers: lognormal visit rates (a heavy-shopper tail), a home store, a join date.
    visit_rate = customers_rng.lognormal(0.0, 1.3, customer_count)
    np.minimum(visit_rate, 100 * visit_rate.mean(), out=visit_rate)
    home_store = np.searchsorted(store_cdf, customers_rng.random(customer_count), side="right")
    home_store = np.minimum(home_store, store_count - 1).astype(np.int32)
    joined_before = customers_rng.random(customer_count) < 0.55
    join_offset_days = np.where(
        joined_before,
        -customers_rng.integers(1, 5 * 365, customer_count),
        np.floor(customers_rng.random(customer_count) ** 1.3 * day_count).astype(np.int64),
    )
    join_index = np.maximum(join_offset_days, 0)  # first day index the customer can shop
    joined_on = (start_day + join_offset_days).astype("datetime64[D]")
    mass_before_join = np.where(join_index > 0, day_cdf[np.maximum(join_index - 1, 0)], 0.0)
    active_rate = visit_rate * (1.0 - mass_before_join)
    has_birth_date = customers_rng.random(customer_count) < BIRTH_DATE_SHARE
    age_days = customers_rng.integers(18 * 365, 85 * 365, customer_count)
    birth_date = np.where(has_birth_date, start_day - age_days, 0).astype("datetime64[D]")
    birth_date[~has_birth_date] = np.datetime64("NaT")
    smoker = customers_rng.random(customer_count) < 0.25
    has_baby = customers_rng.random(customer_count) < 0.12
    customer_number = 10_000 + 3 * np.arange(customer_count, dtype=np.int64) + customers_rng.integers(
        0, 3, customer_count
    )

    # Receipts: who, where, which day, what time.
    anonymous_count = int(receipts_rng.binomial(receipt_count, ANONYMOUS_SHARE)) if receipt_count else 0
    named_count = receipt_count - anonymous_count
    visits = receipts_rng.multinomial(named_count, active_rate / active_rate.sum())
    customer_index = np.concatenate(
        [np.repeat(np.arange(customer_count, dtype=np.int32), visits), np.full(anonymous_count, -1, np.int32)]
    )
    named = customer_index >= 0
    away_store = np.minimum(
        np.searchsorted(store_cdf, receipts_rng.random(receipt_count), side="right"), store_count - 1
    ).astype(np.int32)
    at_home = named & (receipts_rng.random(receipt_count) < HOME_STORE_SHARE)
    store_index = np.where(at_home, home_store[np.maximum(customer_index, 0)], away_store).astype(np.int32)
    till = (1 + np.floor(receipts_rng.random(receipt_count) * store_tills[store_index])).astype(np.int8)

    low = np.where(named, mass_before_join[np.maximum(customer_index, 0)], 0.0)
    u = low + times_rng.random(receipt_count) * (1.0 - low)
    day_index = np.minimum(np.searchsorted(day_cdf, u, side="right"), day_count - 1)
    all_day = store_open_all_day[store_index]
    hour = np.where(
        all_day,
        _draw(times_rng, _ALL_DAY_HOUR_WEIGHTS, receipt_count),
        _OPENING_HOUR + _draw(times_rng, _DAY_HOUR_WEIGHTS, receipt_count),
    ).astype(np.int64)
    second_of_hour = times_rng.integers(0, 3600, receipt_count)
    written_local_s = (start_day + day_index) * SECONDS_PER_DAY + hour * 3600 + second_of_hour
    style_draw = times_rng.random(receipt_count)
    ts_style = np.where(
        style_draw < OFFSET_TS_SHARE, 1, np.where(style_draw < OFFSET_TS_SHARE + UTC_TS_SHARE, 2, 0)
    ).astype(np.int8)

    instant_s = _instants_s(written_local_s, timezone)

    # Night receipts at 24-hour stores inside each DST gap and overlap, so that every chain
    # whose range includes a transition exercises both rules. Candidates are customers who
    # joined before the range (or anonymous) so moving a receipt keeps it after joined_on.
    joined_early = np.where(named, join_offset_days[np.maximum(customer_index, 0)] <= 0, True)
    candidates = np.flatnonzero(all_day & joined_early)
    found = transitions(timezone, start.year - 1, end.year + 1)
    windows = _dst_windows(found, start_day * SECONDS_PER_DAY, end_day * SECONDS_PER_DAY)
    per_window = int(np.clip(receipt_count // 5000, 2, 40))
    if windows and len(candidates):
        chosen = dst_rng.choice(candidates, min(len(candidates), per_window * len(windows)), replace=False)
        for number, (window_start, window_end, offset_after, is_gap) in enumerate(windows):
            picked = chosen[number * per_window : (number + 1) * per_window]
            if not len(picked):
                break
            written_local_s[picked] = dst_rng.integers(window_start, window_end, len(picked))
            ts_style[picked] = 0
            instant_s[picked] = _instants_s(written_local_s[picked], timezone)
            if not is_gap:
                # Half of the overlap receipts happened in the second occurrence of the
                # hour; only an explicit offset can say so.
                second = picked[: len(picked) // 2]
                ts_style[second] = 1
                instant_s[second] = written_local_s[second] - offset_after

    # Processing order: instant, then receipt id (store, till, number - numbers follow time).
    order = _processing_order(instant_s, store_index, till)
    customer_index, store_index, till = customer_index[order], store_index[order], till[order]
    instant_s, written_local_s, ts_style = instant_s[order], written_local_s[order], ts_style[order]
    receipt_number = _numbers_per_till(store_index, till, receipts_rng)

    calendar = local_calendar(instant_s * MICROS_PER_SECOND, timezone)

    # Lines: generated in final receipt order so no 30-million-row permutation is needed.
    lines = _lines(
        lines_rng, customer_index, store_index, smoker, has_baby, store_has_fuel, receipt_count
    )
    return ChainColumns(
        customer_index=customer_index,
        store_index=store_index,
        till=till,
        receipt_number=receipt_number,
        instant_us=instant_s * MICROS_PER_SECOND,
        local_day=calendar.local_day,
        local_minute=calendar.local_minute,
        local_month=calendar.local_month,
        written_local_s=written_local_s,
        ts_style=ts_style,
        customer_number=customer_number,
        customer_birth_date=birth_date,
        customer_joined_on=joined_on,
        store_names=store_names(store_count),
        store_open_all_day=store_open_all_day,
        store_has_fuel=store_has_fuel,
        category_names=CATEGORY_NAMES,
        timezone=timezone,
        start=start,
        end=end,
        seed=seed,
        **lines,
    )


def generate_chain(
    receipt_count: int,
    *,
    seed: int = 7,
    customer_count: int | None = None,
    store_count: int | None = None,
    start: dt.date = dt.date(2024, 1, 1),
    years: int = 2,
    timezone: str = "Europe/Bucharest",
) -> SyntheticChain:
    """Generate a chain's export: receipts and customers as text tables, and a program.

    Same seed and parameters, same chain, byte for byte. See :func:`chain_columns` for the
    numeric form alone.
    """
    columns = chain_columns(
        receipt_count,
        seed=seed,
        customer_count=customer_count,
        store_count=store_count,
        start=start,
        years=years,
        timezone=timezone,
    )
    return SyntheticChain(
        receipts=receipts_table(columns),
        customers=customers_table(columns),
        program_text=sample_program_text(columns),
        columns=columns,
    )


def receipts_table(columns: ChainColumns) -> pa.Table:
    """The receipts export (PROGRAM.md §1), one row per line, built with Arrow kernels."""
    line_receipt = pa.array(columns.line_receipt_index())
    customer_ids = _customer_ids(columns.customer_number)
    anonymous = columns.customer_index < 0
    receipt_customer = pc.take(
        customer_ids, pa.array(np.maximum(columns.customer_index, 0), mask=anonymous)
    )
    receipt_store = pc.take(pa.array(columns.store_names), pa.array(columns.store_index))
    number_width = max(6, len(str(int(columns.receipt_number.max(initial=0)))))
    receipt_id = pc.binary_join_element_wise(
        receipt_store,
        "-T",
        pc.cast(pa.array(columns.till), pa.string()),
        "-",
        pc.utf8_lpad(pc.cast(pa.array(columns.receipt_number), pa.string()), number_width, "0"),
        "",
    )
    amount_minor = columns.line_amount_minor
    amount = pc.binary_join_element_wise(
        pc.cast(pa.array(amount_minor // 100), pa.string()),
        pc.utf8_lpad(pc.cast(pa.array(amount_minor % 100), pa.string()), 2, "0"),
        ".",
    )
    return pa.table(
        {
            "receipt_id": pc.take(receipt_id, line_receipt),
            "customer_id": pc.take(receipt_customer, line_receipt),
            "store_id": pc.take(receipt_store, line_receipt),
            "ts": pc.take(_timestamps(columns), line_receipt),
            "category": pc.take(pa.array(list(columns.category_names)), pa.array(columns.line_category_code)),
            "qty": pa.array(columns.line_qty),
            "amount": amount,
            "sku": pc.take(pa.array(columns.sku_names), pa.array(columns.line_sku_code)),
        }
    )


def customers_table(columns: ChainColumns) -> pa.Table:
    """The customers export: every card holder, including those who never shopped."""
    return pa.table(
        {
            "customer_id": _customer_ids(columns.customer_number),
            "birth_date": _date_strings(columns.customer_birth_date),
            "joined_on": _date_strings(columns.customer_joined_on),
        }
    )


def sample_program_text(columns: ChainColumns) -> str:
    """A realistic program for the chain, touching every rule PROGRAM.md §2 describes.

    Tier thresholds come from the chain's own spending (about the top 20% of customer-years
    reach Silver, the top 4% Gold), so tiers matter whatever the chain's size.
    """
    silver, gold = _tier_thresholds(columns)
    start = columns.start
    weekend_from = _first_of_next_month(start + dt.timedelta(days=60))
    category_from = start + dt.timedelta(days=120)
    category_to = category_from + dt.timedelta(days=13)
    stores = ", ".join(f'"{name}"' for name in promotion_store_names(columns.store_count))
    decembers = "".join(
        f"""
[[promotions]]
name = "Christmas {year}"
multiplier = "2"
start = {year}-12-01
end = {year}-12-24
min_basket = "100.00"
"""
        for year in range(start.year, columns.end.year + 1)
        if dt.date(year, 12, 1) < columns.end and dt.date(year, 12, 24) >= start
    )
    return f"""\
# Sample program for a synthetic chain (seed {columns.seed}).
[program]
name = "Verde Club"
currency = "RON"
minor_units = {MINOR_UNITS}
timezone = "{columns.timezone}"

[earning]
points_per_unit = "1"
rounding = "floor"
exclude_categories = ["tobacco", "lottery"]
welcome_points = 100
birthday_multiplier = "2"

[earning.category_multipliers]
own_brand = "2"

[qualification]
basis = "spend"
period = "calendar_year"
hold = "next_year"

[[tiers]]
name = "Base"
threshold = "0"
multiplier = "1"

[[tiers]]
name = "Silver"
threshold = "{silver}"
multiplier = "1.25"

[[tiers]]
name = "Gold"
threshold = "{gold}"
multiplier = "1.5"

[[promotions]]
name = "Weekends at participating stores"
multiplier = "2"
start = {weekend_from.isoformat()}
weekdays = ["sat", "sun"]
stores = [{stores}]

[[promotions]]
name = "Baby and beauty fortnight"
multiplier = "3"
start = {category_from.isoformat()}
end = {category_to.isoformat()}
categories = ["baby", "beauty"]

[[promotions]]
name = "Gold evenings"
multiplier = "1.5"
hours = "18:00-21:00"
tiers = ["Gold"]
{decembers}
[[basket_bonuses]]
min_items = 10
points = 50

[[basket_bonuses]]
min_amount = "250.00"
points = 100

[[basket_bonuses]]
min_items = 20
min_amount = "500.00"
points = 300

[[visit_bonuses]]
nth = 4
points = 100

[[visit_bonuses]]
nth = 10
points = 250

[caps]
per_receipt = 5000
per_customer_day = 8000
"""


def benchmark_program_text(*, timezone: str = "Europe/Bucharest", store_count: int = 3) -> str:
    """A program a data team could also score with plain numpy, polars or DuckDB.

    Only the rules that need no per-customer sequence beyond a running yearly total: a base
    rate, tiers by calendar-year spend without hold, excluded categories, one category
    multiplier, a weekend promotion at some stores, one basket bonus and a per-receipt cap.
    ``store_count`` must be the chain's, so that the promotion names stores that exist.
    """
    stores = ", ".join(f'"{name}"' for name in promotion_store_names(store_count))
    return f"""\
[program]
name = "Benchmark"
currency = "RON"
minor_units = {MINOR_UNITS}
timezone = "{timezone}"

[earning]
points_per_unit = "1"
rounding = "floor"
exclude_categories = ["tobacco", "lottery"]

[earning.category_multipliers]
own_brand = "2"

[qualification]
basis = "spend"
period = "calendar_year"
hold = "none"

[[tiers]]
name = "Base"
threshold = "0"
multiplier = "1"

[[tiers]]
name = "Silver"
threshold = "1000"
multiplier = "1.25"

[[tiers]]
name = "Gold"
threshold = "3000"
multiplier = "1.5"

[[promotions]]
name = "Weekends at participating stores"
multiplier = "2"
weekdays = ["sat", "sun"]
stores = [{stores}]

[[basket_bonuses]]
min_items = 10
points = 50

[caps]
per_receipt = 5000
"""


def write_chain(
    chain: SyntheticChain,
    out_dir: str | Path,
    *,
    receipts_format: Literal["csv", "parquet"] = "csv",
) -> dict[str, Path]:
    """Write receipts.csv (or .parquet), customers.csv and program.toml; return their paths.

    In Parquet, ``amount`` is written as decimal(18, 2), the type a warehouse export
    carries; CSV keeps the text.
    """
    import pyarrow.csv as pacsv

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Unquoted, like most till exports: a reader must keep "0000123456" a string by itself.
    # Arrow refuses to write a value that would need quotes, so this never corrupts a file.
    csv_options = pacsv.WriteOptions(quoting_style="none")
    paths = {
        "receipts": out_dir / f"receipts.{receipts_format}",
        "customers": out_dir / "customers.csv",
        "program": out_dir / "program.toml",
    }
    if receipts_format == "csv":
        pacsv.write_csv(chain.receipts, paths["receipts"], csv_options)
    elif receipts_format == "parquet":
        import pyarrow.parquet as pq

        receipts = chain.receipts
        amount = pc.cast(receipts["amount"], pa.decimal128(18, MINOR_UNITS))
        receipts = receipts.set_column(receipts.schema.get_field_index("amount"), "amount", amount)
        pq.write_table(receipts, paths["receipts"])
    else:
        raise ValueError(f"receipts_format must be 'csv' or 'parquet', got {receipts_format!r}")
    pacsv.write_csv(chain.customers, paths["customers"], csv_options)
    paths["program"].write_text(chain.program_text, encoding="utf-8")
    return paths


# --- time -------------------------------------------------------------------------------


def _dst_windows(found: Transitions, first_local_s: int, end_local_s: int) -> list[tuple[int, int, int, bool]]:
    """``(start, end, offset after, is_gap)`` of each DST gap or overlap, in local seconds."""
    windows = []
    for k, utc in enumerate(found.instant_s):
        before, after = int(found.offset_s[k]), int(found.offset_s[k + 1])
        window = (int(utc) + min(before, after), int(utc) + max(before, after))
        if first_local_s <= window[0] and window[1] <= end_local_s:
            windows.append((*window, after, after > before))
    return windows


def _instants_s(local_s: np.ndarray, timezone: str) -> np.ndarray:
    """Instants of naive local times by PROGRAM.md's rule (gaps forward, overlaps first)."""
    return local_to_instant_us(local_s * MICROS_PER_SECOND, timezone) // MICROS_PER_SECOND


def _timestamps(columns: ChainColumns) -> pa.Array:
    """``ts`` per receipt: naive local for most, with an offset or ``Z`` for a few."""
    # Casting to text and swapping the separator is several times faster than strftime.
    naive = pc.replace_substring(
        pc.cast(pa.array(columns.written_local_s.astype("datetime64[s]")), pa.string()),
        " ",
        "T",
        max_replacements=1,
    )
    explicit = np.flatnonzero(columns.ts_style > 0)
    if not len(explicit):
        return naive
    zone = zoneinfo.ZoneInfo(columns.timezone)
    texts = []
    for index in explicit:
        moment = dt.datetime.fromtimestamp(int(columns.instant_us[index]) // 1_000_000, dt.timezone.utc)
        if columns.ts_style[index] == 2:
            texts.append(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
        else:
            texts.append(moment.astimezone(zone).isoformat())
    mask = np.zeros(len(columns.ts_style), dtype=bool)
    mask[explicit] = True
    return pc.replace_with_mask(naive, pa.array(mask), pa.array(texts))


def _day_weights(start_day: int, end_day: int) -> np.ndarray:
    days = np.arange(start_day, end_day)
    dates = days.astype("datetime64[D]")
    month = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day_of_month = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    weights = _WEEKDAY_WEIGHTS[(days + 3) % 7].copy()
    december = month == 12
    weights[december] *= 1.25
    weights[december & (day_of_month >= 15) & (day_of_month <= 23)] *= 1.3
    weights[((month == 12) & (day_of_month == 25)) | ((month == 1) & (day_of_month == 1))] *= 0.25
    weights[((month == 12) & (day_of_month == 26)) | ((month == 1) & (day_of_month == 2))] *= 0.6
    weights *= 1.0 + 0.08 * (days - start_day) / 365.25
    return weights


def _processing_order(instant_s: np.ndarray, store_index: np.ndarray, till: np.ndarray) -> np.ndarray:
    """Receipt order by instant, store, till; receipt numbers are assigned in this order,
    so it is also the order of (instant, receipt_id) by code point."""
    if not len(instant_s):
        return np.zeros(0, dtype=np.int64)
    store_bits = max(1, int(store_index.max()).bit_length())
    span_bits = max(1, int(instant_s.max() - instant_s.min()).bit_length())
    if span_bits + store_bits + 4 < 63:
        key = ((instant_s - instant_s.min()) << (store_bits + 4)) | (store_index.astype(np.int64) << 4) | till
        return np.argsort(key, kind="stable")
    return np.lexsort((till, store_index, instant_s))


def _numbers_per_till(store_index: np.ndarray, till: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Receipt numbers counting up per store and till, from a random starting point."""
    group = store_index.astype(np.int64) * 16 + till
    group_order = np.argsort(group, kind="stable")
    sorted_group = group[group_order]
    group_start = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    rank = np.arange(len(group)) - np.repeat(group_start, np.diff(np.r_[group_start, len(group)]))
    first_number = rng.integers(1, 5000, int(group.max(initial=0)) + 1)
    numbers = np.empty(len(group), dtype=np.int64)
    numbers[group_order] = first_number[sorted_group] + rank
    return numbers


# --- lines ------------------------------------------------------------------------------


def _lines(
    rng: np.random.Generator,
    customer_index: np.ndarray,
    store_index: np.ndarray,
    smoker: np.ndarray,
    has_baby: np.ndarray,
    store_has_fuel: np.ndarray,
    receipt_count: int,
) -> dict[str, object]:
    sku_start, sku_price_minor, sku_names = _catalogue(rng)
    line_counts = 1 + _draw(rng, _LINES_PER_RECEIPT_WEIGHTS, receipt_count).astype(np.int64)
    line_offsets = np.zeros(receipt_count + 1, dtype=np.int64)
    np.cumsum(line_counts, out=line_offsets[1:])
    line_count = int(line_offsets[-1])
    line_receipt = np.repeat(np.arange(receipt_count, dtype=np.int32), line_counts)

    shares = np.array([category.line_share for category in CATEGORIES])
    category = _draw(rng, shares, line_count).astype(np.int32)
    # Who buys what: fuel only where it is sold, tobacco only by smokers, baby goods only
    # by families with a baby (anonymous buyers may be anyone).
    line_customer = customer_index[line_receipt]
    anonymous = line_customer < 0
    known = np.maximum(line_customer, 0)
    grocery = _CODE["grocery"]
    category[(category == _CODE["fuel"]) & ~store_has_fuel[store_index[line_receipt]]] = grocery
    category[(category == _CODE["tobacco"]) & ~(anonymous | smoker[known])] = grocery
    category[(category == _CODE["baby"]) & ~(anonymous | has_baby[known])] = grocery
    del line_customer, anonymous, known

    sku_count = np.array([c.sku_count for c in CATEGORIES])
    popularity = rng.random(line_count, dtype=np.float32)
    popularity *= popularity * popularity  # a few bestsellers per category
    sku = (sku_start[category] + (popularity * sku_count[category]).astype(np.int64)).astype(np.int32)

    qty = 1 + _draw(rng, _QTY_WEIGHTS, line_count).astype(np.int32)
    max_qty = np.array([c.max_qty for c in CATEGORIES], dtype=np.int32)
    np.minimum(qty, max_qty[category], out=qty)
    amount = sku_price_minor[sku] * qty

    fuel = np.flatnonzero(category == _CODE["fuel"])
    litres = np.clip(rng.lognormal(np.log(35.0), 0.4, len(fuel)), 5.0, 80.0)
    amount[fuel] = np.rint(litres * sku_price_minor[sku[fuel]]).astype(np.int64)

    discountable = np.array([c.discountable for c in CATEGORIES])[category]
    effect = rng.random(line_count, dtype=np.float32)
    discounted = discountable & (effect < 0.08)
    amount[discounted] = np.floor(amount[discounted] * rng.uniform(0.70, 0.95, int(discounted.sum())))
    amount[discountable & (effect >= 0.08) & (effect < 0.083)] = 0  # free items
    return {
        "line_offsets": line_offsets,
        "line_category_code": category,
        "line_qty": qty,
        "line_amount_minor": amount.astype(np.int64),
        "line_sku_code": sku,
        "sku_names": sku_names,
    }


def _catalogue(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every category's SKUs with a fixed unit price, so an item costs the same each time."""
    sku_start = np.zeros(len(CATEGORIES), dtype=np.int64)
    prices, names = [], []
    for code, category in enumerate(CATEGORIES):
        sku_start[code] = len(names)
        names.extend(f"{category.sku_prefix}-{number:05d}" for number in range(1, category.sku_count + 1))
        if category.name == "fuel":
            price = _FUEL_PRICE_MINOR
        elif category.name == "lottery":
            price = _LOTTERY_PRICE_MINOR
        else:
            raw = rng.lognormal(np.log(category.median_price_minor), category.price_sigma, category.sku_count)
            price = np.maximum(np.ceil(raw / 10) * 10 - 1, 9)  # shelf prices end in 9
        prices.append(np.asarray(price, dtype=np.int64))
    return sku_start, np.concatenate(prices), names


# --- helpers ----------------------------------------------------------------------------


def _tier_thresholds(columns: ChainColumns) -> tuple[str, str]:
    """Silver and Gold thresholds (major units, round numbers) from customer-year spend."""
    eligible = ~np.isin(columns.line_category_code, [_CODE["tobacco"], _CODE["lottery"]])
    receipt_spend = np.add.reduceat(
        np.where(eligible, columns.line_amount_minor, 0), columns.line_offsets[:-1]
    ) if columns.receipt_count else np.zeros(0, np.int64)
    named = columns.customer_index >= 0
    year = columns.local_day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64)
    key = columns.customer_index[named].astype(np.int64) * 64 + (year[named] - year.min(initial=0))
    _, group = np.unique(key, return_inverse=True)
    totals = np.bincount(group, weights=receipt_spend[named]) / 10**MINOR_UNITS
    silver = _round_number(np.quantile(totals, 0.80) if len(totals) else 0.0, minimum=100)
    gold = _round_number(np.quantile(totals, 0.96) if len(totals) else 0.0, minimum=2 * silver)
    return str(silver), str(gold)


def _round_number(value: float, *, minimum: int) -> int:
    """The nearest of 1, 2, 2.5, 5 × 10^k at or above ``minimum``."""
    value = max(float(value), float(minimum))
    exponent = 10 ** int(np.floor(np.log10(value)))
    for step in (1, 2, 2.5, 5, 10):
        if step * exponent >= value * 0.85:
            candidate = int(step * exponent)
            if candidate >= minimum:
                return candidate
    return int(10 * exponent)


def _customer_ids(customer_number: np.ndarray) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(customer_number), pa.string()), 10, "0")


def _date_strings(dates: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(dates, mask=np.isnat(dates)), pa.string())


def _draw(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    """Indices drawn with the given weights, quantised to 1/65536 (uint8).

    A lookup table indexed by 16 random bits is several times faster than a search over
    the cumulative weights, which matters at tens of millions of lines.
    """
    counts = np.diff(np.rint(_cdf(weights) * 65536).astype(np.int64), prepend=0)
    table = np.repeat(np.arange(len(weights), dtype=np.uint8), counts)
    return table[rng.integers(0, 65536, size, dtype=np.uint16)]


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights, dtype=np.float64)
    return cdf / cdf[-1]


def _add_years(date: dt.date, years: int) -> dt.date:
    try:
        return date.replace(year=date.year + years)
    except ValueError:  # 29 February
        return date.replace(year=date.year + years, day=28)


def _first_of_next_month(date: dt.date) -> dt.date:
    return dt.date(date.year + date.month // 12, date.month % 12 + 1, 1)
