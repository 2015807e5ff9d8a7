"""The benchmark program's rules written the way a data team would write them without Fidelis.

Each peer scores the receipts of :func:`fidelis.core.synthetic.benchmark_program_text` with a
general-purpose tool (plain numpy, polars, DuckDB) and returns, per receipt, the status tier
and the points, which the benchmarks compare with the compiled kernel's on every receipt.
A throughput ratio means something only if the peers are exact and reasonably fast, so each
one is vectorised in its tool's idiom and uses only integer arithmetic: a receipt's points are
``Σ_k amount_k × N[tier, promoted, k] // D``, where ``amount_k`` is the receipt's amount in
rate class ``k`` (categories sharing a multiplier) and ``N / D`` the exact combined rate.

The peers may rely on what the benchmark guarantees: receipts in processing order and every
receipt with at least one line. They implement only the rules the benchmark program uses;
:func:`peer_rules` refuses a program with any other rule, so a change to the benchmark program
fails loudly instead of comparing different rules.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from fidelis.core.program.model import MAX_RECEIPT_AMOUNT_MINOR, WEEKDAYS, Program, combined_rates

NO_TIER = -1
_POLARS_WEEKDAY_OFFSET = 1  # polars numbers weekdays 1 = Monday … 7 = Sunday


@dataclass(frozen=True)
class PeerRules:
    """The benchmark program as plain integers and masks, indexed by the batch's codes.

    Parameters
    ----------
    tier_names : names in ascending order of threshold
    tier_threshold_minor : int64, shape (T,); calendar-year eligible spend to reach each tier
    denominator : the common denominator D of every combined rate
    rate_classes : the program's category classes (combined_rates' numbering) of eligible
        categories; excluded categories are in none
    rate_numerator : int64, shape (T, 2, K); numerator by tier, promoted (0/1) and class
    category_names : the batch's category vocabulary, by code
    category_rate_class : int32, shape (category codes,); position in ``rate_classes``, -1 if
        the category is excluded
    promotion_weekdays : weekdays (0 = Monday) on which the promotion runs
    promotion_store : bool, shape (store codes,); stores running the promotion
    promotion_store_names : the same stores by name
    basket_min_items, basket_points : the basket bonus
    cap_per_receipt : points a receipt may earn at most
    """

    tier_names: tuple[str, ...]
    tier_threshold_minor: np.ndarray
    denominator: int
    rate_classes: tuple[int, ...]
    rate_numerator: np.ndarray
    category_names: tuple[str, ...]
    category_rate_class: np.ndarray
    promotion_weekdays: tuple[int, ...]
    promotion_store: np.ndarray
    promotion_store_names: tuple[str, ...]
    basket_min_items: int
    basket_points: int
    cap_per_receipt: int

    @property
    def promotion_store_codes(self) -> list[int]:
        return np.flatnonzero(self.promotion_store).tolist()

    def category_rate_class_by_name(self) -> dict[str, int]:
        return {name: int(k) for name, k in zip(self.category_names, self.category_rate_class)}

    def rates_table(self) -> dict[str, list[int]]:
        """One row per (tier, promoted) with a numerator column per rate class."""
        tier_count = len(self.tier_names)
        table: dict[str, list[int]] = {
            "tier": [t for t in range(tier_count) for _ in (0, 1)],
            "promoted": [p for _ in range(tier_count) for p in (0, 1)],
        }
        for k in range(len(self.rate_classes)):
            table[f"numerator_{k}"] = [int(self.rate_numerator[t, p, k]) for t in range(tier_count) for p in (0, 1)]
        return table


def peer_rules(program: Program, category_names: list[str], store_names: list[str]) -> PeerRules:
    """Extract the benchmark program's rules; refuse any rule the peers do not implement."""
    earning, qualification = program.earning, program.qualification
    unsupported = []
    if (qualification.basis, qualification.period, qualification.hold) != ("spend", "calendar_year", "none"):
        unsupported.append("qualification other than spend / calendar_year / no hold")
    if earning.rounding != "floor":
        unsupported.append("rounding other than floor")
    if earning.welcome_points or earning.birthday_multiplier != 1:
        unsupported.append("welcome or birthday points")
    if program.visit_bonuses or program.caps.per_customer_day is not None or program.caps.per_receipt is None:
        unsupported.append("visit bonuses, a daily cap, or no per-receipt cap")
    if len(program.basket_bonuses) != 1 or program.basket_bonuses[0].min_amount is not None:
        unsupported.append("anything but one basket bonus by items")
    if len(program.promotions) != 1:
        unsupported.append("anything but one promotion")
    else:
        promotion = program.promotions[0]
        if any(getattr(promotion, name) is not None for name in ("start", "end", "hours", "tiers", "categories", "min_basket")):
            unsupported.append("a promotion with conditions other than weekdays and stores")
    rates = combined_rates(program)
    denominator = rates.denominator
    if max(rates.base.values()) * max(rates.promotion) * MAX_RECEIPT_AMOUNT_MINOR >= 2**63:
        unsupported.append("rates whose sums need more than 64 bits")
    if unsupported:
        raise ValueError(f"the peers cannot score this program: {'; '.join(unsupported)}")

    promotion = program.promotions[0]
    # Class 0 is every category the program does not name (combined_rates' convention).
    program_class = {name: index + 1 for index, name in enumerate(program.named_categories())}
    code_class = [program_class.get(name, 0) for name in category_names]
    excluded = set(earning.exclude_categories)
    rate_classes = tuple(sorted({c for c, name in zip(code_class, category_names) if name not in excluded}))
    category_rate_class = np.array(
        [-1 if name in excluded else rate_classes.index(c) for c, name in zip(code_class, category_names)],
        dtype=np.int32,
    )
    tier_count = len(program.tiers)
    rate_numerator = np.zeros((tier_count, 2, len(rate_classes)), dtype=np.int64)
    for tier in range(tier_count):
        for promoted in (0, 1):
            for k, rate_class in enumerate(rate_classes):
                rate_numerator[tier, promoted, k] = rates.numerator(tier, rate_class, promoted, False)
    weekdays = promotion.weekdays or list(WEEKDAYS)
    stores = set(promotion.stores or store_names)
    return PeerRules(
        tier_names=tuple(tier.name for tier in program.tiers),
        tier_threshold_minor=np.array([program.threshold_in_measure_units(t) for t in program.tiers], dtype=np.int64),
        denominator=denominator,
        rate_classes=rate_classes,
        rate_numerator=rate_numerator,
        category_names=tuple(category_names),
        category_rate_class=category_rate_class,
        promotion_weekdays=tuple(sorted(WEEKDAYS.index(day) for day in weekdays)),
        promotion_store=np.array([name in stores for name in store_names], dtype=bool),
        promotion_store_names=tuple(name for name in store_names if name in stores),
        basket_min_items=program.basket_bonuses[0].min_items,
        basket_points=program.basket_bonuses[0].points,
        cap_per_receipt=program.caps.per_receipt,
    )


@dataclass
class PeerScores:
    """What every peer returns: status tier (``NO_TIER`` if anonymous) and points, by receipt."""

    tier: np.ndarray
    points: np.ndarray


# ---------------------------------------------------------------------------------------------
# numpy


@dataclass
class NumpyReceipts:
    """Receipts as numpy columns (the chain's own dense codes), lines in CSR layout.

    Parameters
    ----------
    customer_index : int32, shape (R,); -1 = anonymous
    store_code : int32, shape (R,)
    local_day : int32, shape (R,); days since 1970-01-01
    local_month : int32, shape (R,); ``(year - 1970) * 12 + month - 1``
    line_offsets : int64, shape (R + 1,)
    line_category_code, line_qty : int32, shape (L,)
    line_amount_minor : int64, shape (L,)
    """

    customer_index: np.ndarray
    store_code: np.ndarray
    local_day: np.ndarray
    local_month: np.ndarray
    line_offsets: np.ndarray
    line_category_code: np.ndarray
    line_qty: np.ndarray
    line_amount_minor: np.ndarray


def score_with_numpy(receipts: NumpyReceipts, rules: PeerRules) -> PeerScores:
    """Vectorised numpy: sums per receipt by ``reduceat`` over the CSR lines, the running
    calendar-year spend by a stable sort on (customer, year)."""
    starts = receipts.line_offsets[:-1]
    line_class = rules.category_rate_class[receipts.line_category_code]
    amount = receipts.line_amount_minor
    class_amount = [np.add.reduceat(np.where(line_class == k, amount, 0), starts) for k in range(len(rules.rate_classes))]
    eligible_amount = np.sum(class_amount, axis=0)
    eligible_items = np.add.reduceat(np.where(line_class >= 0, receipts.line_qty, 0), starts)

    # Spend earlier in the same calendar year: an exclusive cumulative sum within each
    # (customer, year) group, in processing order. Sorting (group, receipt) packed into one
    # int64 is a stable sort by group, and numpy's SIMD sort of plain integers is faster than
    # argsort(kind="stable") (0.33 s against 0.56 s for 5 M receipts here).
    receipt_count = len(receipts.customer_index)
    customer = receipts.customer_index.astype(np.int64)
    year = receipts.local_month // 12
    first_year = int(year.min())
    group = (customer + 1) * (int(year.max()) - first_year + 1) + (year - first_year)  # anonymous: group 0..
    packed = np.sort(group * receipt_count + np.arange(receipt_count))
    order = packed % receipt_count
    sorted_group = packed // receipt_count
    sorted_amount = eligible_amount[order]
    spent_before_in_order = np.cumsum(sorted_amount) - sorted_amount
    starts_group = np.r_[True, sorted_group[1:] != sorted_group[:-1]]
    group_first = np.maximum.accumulate(np.where(starts_group, np.arange(receipt_count), 0))
    spent_before = np.empty_like(eligible_amount)
    spent_before[order] = spent_before_in_order - spent_before_in_order[group_first]
    tier = np.searchsorted(rules.tier_threshold_minor, spent_before, side="right") - 1

    weekday = (receipts.local_day + 3) % 7  # 1970-01-01 was a Thursday
    promoted = np.isin(weekday, rules.promotion_weekdays) & rules.promotion_store[receipts.store_code]
    rate_row = rules.rate_numerator.reshape(-1, len(rules.rate_classes))[tier * 2 + promoted]
    weighted = sum(class_amount[k] * rate_row[:, k] for k in range(len(rules.rate_classes)))
    rate_points = weighted // rules.denominator
    basket = np.where(eligible_items >= rules.basket_min_items, rules.basket_points, 0)
    anonymous = customer < 0
    points = np.where(anonymous, 0, np.minimum(rate_points + basket, rules.cap_per_receipt))
    return PeerScores(tier=np.where(anonymous, NO_TIER, tier).astype(np.int8), points=points)


# ---------------------------------------------------------------------------------------------
# polars


def polars_receipt_sums(lines: pl.LazyFrame, rules: PeerRules, *, by: str, category: str, keep=()) -> pl.LazyFrame:
    """Eligible items and the amount in each rate class, one row per receipt in line order.

    ``category`` names a column of category codes or names; ``keep`` are receipt columns
    repeated on every line, carried through with ``first()``.
    """
    by_name = rules.category_rate_class_by_name()
    if lines.collect_schema()[category] == pl.String:
        rate_class = pl.col(category).replace_strict(by_name, default=-1, return_dtype=pl.Int8)
    else:
        rate_class = pl.col(category).replace_strict(
            dict(enumerate(int(k) for k in rules.category_rate_class)), return_dtype=pl.Int8
        )
    return (
        lines.with_columns(rate_class=rate_class)
        .group_by(by, maintain_order=True)
        .agg(
            *(pl.col(name).first() for name in keep),
            eligible_items=pl.when(pl.col("rate_class") >= 0).then(pl.col("qty")).otherwise(0).sum(),
            **{
                f"amount_{k}": pl.when(pl.col("rate_class") == k).then(pl.col("amount_minor")).otherwise(0).sum()
                for k in range(len(rules.rate_classes))
            },
        )
    )


def polars_points(receipts: pl.LazyFrame, rules: PeerRules, *, store_is_promoted: pl.Expr) -> pl.LazyFrame:
    """Tier and points from per-receipt sums (``polars_receipt_sums``) joined with receipt
    columns ``customer`` (null = anonymous) and ``local_date``, in processing order."""
    class_count = len(rules.rate_classes)
    eligible_amount = pl.sum_horizontal(*(pl.col(f"amount_{k}") for k in range(class_count)))
    spent_before = (pl.col("eligible_amount").cum_sum() - pl.col("eligible_amount")).over("customer", "year")
    tier = pl.sum_horizontal(*(spent_before >= threshold for threshold in rules.tier_threshold_minor[1:].tolist()))
    weekdays = [day + _POLARS_WEEKDAY_OFFSET for day in rules.promotion_weekdays]
    rates = pl.LazyFrame(rules.rates_table(), schema_overrides={"tier": pl.Int8, "promoted": pl.Int8})
    weighted = pl.sum_horizontal(*(pl.col(f"amount_{k}") * pl.col(f"numerator_{k}") for k in range(class_count)))
    basket = pl.when(pl.col("eligible_items") >= rules.basket_min_items).then(rules.basket_points).otherwise(0)
    anonymous = pl.col("customer").is_null()
    return (
        receipts.with_columns(
            eligible_amount=eligible_amount,
            year=pl.col("local_date").dt.year(),
            promoted=(pl.col("local_date").dt.weekday().is_in(weekdays) & store_is_promoted).cast(pl.Int8),
        )
        .with_columns(tier=tier.cast(pl.Int8))
        .join(rates, on=["tier", "promoted"], how="left", maintain_order="left")
        .select(
            *(["receipt_id"] if "receipt_id" in receipts.collect_schema() else []),
            tier=pl.when(anonymous).then(NO_TIER).otherwise(pl.col("tier")).cast(pl.Int8),
            points=pl.when(anonymous)
            .then(0)
            .otherwise(pl.min_horizontal(weighted // rules.denominator + basket, rules.cap_per_receipt))
            .cast(pl.Int64),
        )
    )


def score_with_polars(receipts: pl.DataFrame, lines: pl.DataFrame, rules: PeerRules) -> pl.DataFrame:
    """polars: a group_by over lines for the sums, a window over (customer, year) for the tier.

    ``receipts``: receipt, customer (null = anonymous), store (code), local_date;
    ``lines``: receipt (sorted), category_code, qty, amount_minor.
    """
    sums = polars_receipt_sums(lines.lazy(), rules, by="receipt", category="category_code")
    joined = pl.concat([receipts.lazy(), sums.drop("receipt")], how="horizontal")
    store_is_promoted = pl.col("store").is_in(rules.promotion_store_codes)
    return polars_points(joined, rules, store_is_promoted=store_is_promoted).collect()


# ---------------------------------------------------------------------------------------------
# DuckDB


def duckdb_query(rules: PeerRules) -> str:
    """SQL over tables ``receipts``, ``lines``, ``categories`` and ``rates`` (see the fixture)."""
    class_count = len(rules.rate_classes)
    class_sums = ",\n".join(
        f"SUM(CASE WHEN c.rate_class = {k} THEN l.amount_minor ELSE 0 END)::BIGINT AS amount_{k}"
        for k in range(class_count)
    )
    eligible_amount = " + ".join(f"amount_{k}" for k in range(class_count))
    weighted = " + ".join(f"amount_{k} * numerator_{k}" for k in range(class_count))
    tier = " + ".join(f"(spent_before >= {int(t)})::TINYINT" for t in rules.tier_threshold_minor[1:]) or "0"
    # DuckDB's isodow: 1 = Monday … 7 = Sunday.
    weekdays = ", ".join(str(day + 1) for day in rules.promotion_weekdays)
    return f"""
WITH sums AS (
    SELECT l.receipt,
           SUM(CASE WHEN c.rate_class >= 0 THEN l.qty ELSE 0 END)::BIGINT AS eligible_items,
           {class_sums}
    FROM lines l JOIN categories c USING (category_code)
    GROUP BY l.receipt
),
status AS (
    SELECT r.receipt, r.customer, s.*,
           (isodow(r.local_date) IN ({weekdays}) AND r.store IN (SELECT store FROM promotion_stores))::TINYINT
               AS promoted,
           COALESCE(SUM({eligible_amount}) OVER (
               PARTITION BY r.customer, year(r.local_date) ORDER BY r.receipt
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)::BIGINT AS spent_before
    FROM receipts r JOIN sums s USING (receipt)
),
tiered AS (
    SELECT *, ({tier})::TINYINT AS tier FROM status
)
SELECT t.receipt,
       CASE WHEN t.customer IS NULL THEN {NO_TIER} ELSE t.tier END::TINYINT AS tier,
       CASE WHEN t.customer IS NULL THEN 0
            ELSE LEAST(({weighted}) // {rules.denominator}
                       + CASE WHEN eligible_items >= {rules.basket_min_items} THEN {rules.basket_points} ELSE 0 END,
                       {rules.cap_per_receipt})
       END::BIGINT AS points
FROM tiered t JOIN rates USING (tier, promoted)
ORDER BY t.receipt
"""


# ---------------------------------------------------------------------------------------------
# polars from a CSV file, end to end

_CSV_SCHEMA = {
    "receipt_id": pl.String,
    "customer_id": pl.String,
    "store_id": pl.String,
    "ts": pl.String,
    "category": pl.String,
    "qty": pl.Int32,
    "amount": pl.Decimal(18, 2),
    "sku": pl.String,
}


def polars_instant(ts: pl.Expr, timezone: str) -> pl.Expr:
    """ISO 8601 text to an instant (UTC) by PROGRAM.md §1.

    With ``Z`` or an offset: that instant. Naive: local time, an ambiguous time taking its
    first occurrence; a time in a DST gap is read with the offset of the day before (the
    offset before the gap), which moves it forward by the gap.
    """
    day = pl.duration(days=1)
    naive = ts.str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False, time_unit="us")
    explicit = ts.str.to_datetime("%Y-%m-%dT%H:%M:%S%#z", strict=False, time_unit="us")
    local = naive.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
    in_gap = (naive - day).dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null") + day
    return pl.coalesce(
        explicit.dt.convert_time_zone("UTC"),
        local.dt.convert_time_zone("UTC"),
        in_gap.dt.convert_time_zone("UTC"),
    )


def score_csv_with_polars(path, rules: PeerRules, *, timezone: str, minor_units: int) -> pl.DataFrame:
    """Read a receipts CSV and score it: receipt_id, tier (name, empty if anonymous), points.

    The file is assumed in processing order with each receipt's lines together, as the
    synthetic export is, so receipts are numbered where the id changes and grouped by that
    number (3x faster than grouping by the id text). Timestamps are parsed once per receipt.
    """
    new_receipt = (pl.col("receipt_id") != pl.col("receipt_id").shift()).fill_null(True)
    lines = pl.scan_csv(path, schema=_CSV_SCHEMA).select(
        "receipt_id",
        "customer_id",
        "store_id",
        "ts",
        "category",
        "qty",
        receipt=new_receipt.cum_sum().set_sorted(),
        amount_minor=(pl.col("amount") * 10**minor_units).cast(pl.Int64),
    )
    receipts = polars_receipt_sums(
        lines, rules, by="receipt", category="category", keep=("receipt_id", "customer_id", "store_id", "ts")
    ).with_columns(
        customer=pl.col("customer_id"),
        local_date=polars_instant(pl.col("ts"), timezone).dt.convert_time_zone(timezone).dt.date(),
    )
    store_is_promoted = pl.col("store_id").is_in(rules.promotion_store_names)
    tier_name = dict(enumerate(rules.tier_names)) | {NO_TIER: ""}
    return (
        polars_points(receipts, rules, store_is_promoted=store_is_promoted)
        .with_columns(tier=pl.col("tier").replace_strict(tier_name, return_dtype=pl.String))
        .collect()
    )
