"""The synthetic chain: deterministic, well-formed per PROGRAM.md §1, and realistic enough
that tests built on it meet the hard cases (DST, anonymous receipts, skew, free items)."""
from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from fidelis.core.program.model import load_program, parse_program
from fidelis.core.synthetic import (
    CATEGORY_NAMES,
    benchmark_program_text,
    chain_columns,
    generate_chain,
    promotion_store_names,
    store_names,
    write_chain,
)

BUCHAREST = zoneinfo.ZoneInfo("Europe/Bucharest")


@pytest.fixture(scope="module")
def chain():
    return generate_chain(6000, seed=11)


def receipt_rows(table: pa.Table) -> dict[str, np.ndarray]:
    """The first row of every receipt, assuming lines are contiguous."""
    ids = np.array(table["receipt_id"].to_pylist(), dtype=object)
    first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    return {name: np.array(table[name].to_pylist(), dtype=object)[first] for name in table.column_names}


def instant_of(ts: str) -> int:
    """Seconds since the epoch of a ``ts`` as PROGRAM.md §1 reads it (zoneinfo, fold=0)."""
    moment = dt.datetime.fromisoformat(ts)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=BUCHAREST)  # fold=0: gap moves forward, overlap first
    return int(moment.timestamp())


def test_same_seed_same_chain_other_seed_other_chain(chain):
    again = generate_chain(6000, seed=11)
    assert again.receipts.equals(chain.receipts)
    assert again.customers.equals(chain.customers)
    assert again.program_text == chain.program_text
    assert not generate_chain(6000, seed=12).receipts.equals(chain.receipts)


def test_columns_and_types(chain):
    assert chain.receipts.schema == pa.schema(
        [
            ("receipt_id", pa.string()),
            ("customer_id", pa.string()),
            ("store_id", pa.string()),
            ("ts", pa.string()),
            ("category", pa.string()),
            ("qty", pa.int32()),
            ("amount", pa.string()),
            ("sku", pa.string()),
        ]
    )
    assert chain.customers.schema == pa.schema(
        [("customer_id", pa.string()), ("birth_date", pa.string()), ("joined_on", pa.string())]
    )
    columns = chain.columns
    assert columns.receipt_count == 6000
    assert chain.receipts.num_rows == columns.line_count
    assert columns.customer_count == 1200 and columns.store_count == 3
    assert columns.line_offsets.dtype == np.int64 and columns.line_amount_minor.dtype == np.int64
    assert columns.line_category_code.dtype == np.int32 and columns.line_qty.dtype == np.int32
    assert columns.instant_us.dtype == np.int64 and columns.local_minute.dtype == np.int16
    assert np.all(np.diff(columns.line_offsets) >= 1) and np.all(np.diff(columns.line_offsets) <= 12)
    assert set(chain.receipts["category"].to_pylist()) <= set(CATEGORY_NAMES)
    assert {"tobacco", "lottery", "own_brand", "baby", "fuel"} <= set(chain.receipts["category"].to_pylist())


def test_the_numeric_fast_path_is_the_same_chain(chain):
    columns = chain_columns(6000, seed=11)
    assert np.array_equal(columns.instant_us, chain.columns.instant_us)
    assert np.array_equal(columns.line_amount_minor, chain.columns.line_amount_minor)


def test_sample_programs_validate(chain, tmp_path):
    program = parse_program(chain.program_text)
    assert [tier.name for tier in program.tiers] == ["Base", "Silver", "Gold"]
    assert program.qualification.hold == "next_year"
    assert program.earning.exclude_categories == ["tobacco", "lottery"]
    assert program.caps.per_receipt and program.caps.per_customer_day
    assert set(program.named_stores()) <= set(chain.columns.store_names)
    assert set(program.named_categories()) <= set(CATEGORY_NAMES)

    benchmark = parse_program(benchmark_program_text(store_count=2500))
    assert benchmark.qualification.hold == "none"
    assert benchmark.earning.welcome_points == 0 and benchmark.earning.birthday_multiplier == 1
    assert not benchmark.visit_bonuses and benchmark.caps.per_customer_day is None
    assert all(p.categories is None and p.tiers is None and p.hours is None and p.min_basket is None
               for p in benchmark.promotions)
    assert benchmark.named_stores() == promotion_store_names(2500)
    assert parse_program(benchmark_program_text(timezone="UTC")).info.timezone == "UTC"


def test_lines_of_a_receipt_are_contiguous_and_agree(chain):
    table = chain.receipts
    ids = np.array(table["receipt_id"].to_pylist(), dtype=object)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    assert len(starts) == len(set(ids)) == chain.columns.receipt_count  # contiguous, unique
    assert all(re.fullmatch(r"S\d{3}-T\d-\d{6}", receipt_id) for receipt_id in ids[starts])
    run = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(ids)]))
    for name in ("customer_id", "store_id", "ts"):
        values = np.array(table[name].to_pylist(), dtype=object)
        assert np.all(values == values[starts][run]), name


def test_receipts_are_in_processing_order_and_ts_means_the_instant(chain):
    rows = receipt_rows(chain.receipts)
    instants = [instant_of(ts) for ts in rows["ts"]]
    assert instants == list(chain.columns.instant_us // 1_000_000)
    assert list(zip(instants, rows["receipt_id"])) == sorted(zip(instants, rows["receipt_id"]))
    # Local parts are those of the instant, in the chain's zone.
    local = [dt.datetime.fromtimestamp(t, BUCHAREST) for t in instants]
    assert [(d.date() - dt.date(1970, 1, 1)).days for d in local] == list(chain.columns.local_day)
    assert [d.hour * 60 + d.minute for d in local] == list(chain.columns.local_minute)
    assert [(d.year - 1970) * 12 + d.month - 1 for d in local] == list(chain.columns.local_month)


def test_timestamps_are_mostly_naive_with_a_few_offsets(chain):
    ts = receipt_rows(chain.receipts)["ts"]
    naive = [t for t in ts if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", t)]
    with_offset = [t for t in ts if re.fullmatch(r".*[+-]0[23]:00", t)]
    utc = [t for t in ts if t.endswith("Z")]
    assert len(naive) + len(with_offset) + len(utc) == len(ts)
    assert 0.9 < len(naive) / len(ts) < 0.99
    assert with_offset and utc
    assert all(dt.date(2024, 1, 1) <= dt.date.fromisoformat(t[:10]) <= dt.date(2026, 1, 1) for t in ts)


def test_dst_gap_and_overlap_receipts_appear():
    rows = receipt_rows(generate_chain(3000, seed=3).receipts)
    gap = [t for t in rows["ts"] if t[:13] in ("2024-03-31T03", "2025-03-30T03")]
    overlap = [t for t in rows["ts"] if t[:13] in ("2024-10-27T03", "2025-10-26T03")]
    assert gap and all(len(t) == 19 for t in gap)  # naive, so the gap rule applies
    assert {t[:10] for t in gap} == {"2024-03-31", "2025-03-30"}
    assert any(len(t) == 19 for t in overlap)  # naive: the first occurrence
    assert any(t.endswith("+02:00") for t in overlap)  # the second occurrence, written out
    # 03:30 in the gap is the instant of 04:30+03:00.
    some_gap = gap[0]
    moved = dt.datetime.fromisoformat(some_gap[:11] + "04" + some_gap[13:] + "+03:00")
    assert instant_of(some_gap) == int(moved.timestamp())


def test_no_dst_receipts_without_transitions():
    columns = chain_columns(3000, seed=3, timezone="UTC")
    hour = columns.local_minute // 60
    regular = ~columns.store_open_all_day[columns.store_index]
    assert np.all((hour[regular] >= 7) & (hour[regular] < 22))
    assert np.array_equal(columns.written_local_s, columns.instant_us // 1_000_000)


def test_opening_hours(chain):
    columns = chain.columns
    regular = ~columns.store_open_all_day[columns.store_index]
    written_minute = (columns.written_local_s % 86400) // 60
    assert np.all((written_minute[regular] >= 7 * 60) & (written_minute[regular] < 22 * 60))
    night = (written_minute < 7 * 60) | (written_minute >= 22 * 60)
    assert night[~regular].any()


def test_amounts_are_non_negative_with_two_decimals(chain):
    amounts = chain.receipts["amount"].to_pylist()
    assert all(re.fullmatch(r"\d+\.\d\d", amount) for amount in amounts)
    assert "0.00" in amounts
    minor = chain.columns.line_amount_minor
    assert [f"{m // 100}.{m % 100:02d}" for m in minor] == amounts
    qty = chain.columns.line_qty
    assert qty.min() >= 1 and qty.max() <= 6 and 0.7 < np.mean(qty == 1) < 0.95


def test_anonymous_share_and_customer_ids(chain):
    receipt_customers = receipt_rows(chain.receipts)["customer_id"]
    anonymous = np.mean([customer is None for customer in receipt_customers])
    assert 0.015 < anonymous < 0.05
    ids = chain.customers["customer_id"].to_pylist()
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"0\d{9}", i) for i in ids)
    assert {c for c in receipt_customers if c is not None} <= set(ids)
    births = chain.customers["birth_date"].to_pylist()
    assert 0.6 < np.mean([b is not None for b in births]) < 0.8
    assert all(dt.date.fromisoformat(b) for b in births if b is not None)


def test_customers_shop_after_joining(chain):
    columns = chain.columns
    named = columns.customer_index >= 0
    joined = columns.customer_joined_on.astype(np.int64)[columns.customer_index[named]]
    assert np.all(columns.local_day[named] >= joined)


def test_skew(chain):
    columns = chain.columns
    visits = np.bincount(columns.customer_index[columns.customer_index >= 0], minlength=columns.customer_count)
    top_tenth = np.sort(visits)[::-1][: columns.customer_count // 10]
    assert top_tenth.sum() / visits.sum() > 0.35
    store_receipts = np.bincount(columns.store_index, minlength=columns.store_count)
    assert store_receipts.max() > 1.2 * store_receipts.min()


def test_december_and_weekends_are_busier():
    columns = chain_columns(20000, seed=5)
    days = columns.local_day.astype("datetime64[D]")
    month = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    per_month = np.bincount(month, minlength=13)[1:]
    assert per_month[11] > np.median(per_month) * 1.15
    weekday = (columns.local_day.astype(np.int64) + 3) % 7
    per_weekday = np.bincount(weekday, minlength=7)
    assert per_weekday[5] > per_weekday[:4].mean() * 1.2  # Saturday


def test_write_chain(chain, tmp_path):
    paths = write_chain(chain, tmp_path / "csv")
    assert {path.name for path in paths.values()} == {"receipts.csv", "customers.csv", "program.toml"}
    load_program(paths["program"])
    strings = pacsv.ConvertOptions(column_types={"customer_id": pa.string(), "amount": pa.string(),
                                                 "birth_date": pa.string(), "joined_on": pa.string()},
                                   strings_can_be_null=True)
    receipts = pacsv.read_csv(paths["receipts"], convert_options=strings)
    assert receipts.num_rows == chain.receipts.num_rows
    assert receipts["customer_id"].to_pylist() == chain.receipts["customer_id"].to_pylist()
    assert receipts["amount"].to_pylist() == chain.receipts["amount"].to_pylist()
    customers = pacsv.read_csv(paths["customers"], convert_options=strings)
    assert customers.equals(chain.customers)

    parquet = write_chain(chain, tmp_path / "parquet", receipts_format="parquet")["receipts"]
    table = pq.read_table(parquet)
    assert table.schema.field("amount").type == pa.decimal128(18, 2)
    assert [str(a) for a in table["amount"].to_pylist()] == chain.receipts["amount"].to_pylist()
    with pytest.raises(ValueError):
        write_chain(chain, tmp_path / "x", receipts_format="json")


def test_sizes_scale_and_store_names():
    columns = chain_columns(50, seed=1, customer_count=5, store_count=1, years=1)
    assert columns.receipt_count == 50 and columns.store_count == 1 and columns.customer_count == 5
    assert columns.store_open_all_day[0]
    assert store_names(3) == ["S001", "S002", "S003"]
    assert store_names(1200)[0] == "S0001"
    assert chain_columns(0).line_count == 0
