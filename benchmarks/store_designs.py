"""How fast can SQLite take a load's writes? The receipt store's candidate designs, measured.

Usage (from the repository root)::

    python benchmarks/store_designs.py --receipts 10000000            # every design
    python benchmarks/store_designs.py --receipts 1000000 --design rowid

Each design receives the same rows, chunk by chunk, the way a load writes them: per receipt
its facts, points and lines (six lines of 20 bytes on average), an earn entry in the
journal, and per chunk the lots and the state of the customers it touched. Receipt ids are
store-terminal-sequence texts arriving in time order across stores (so not in id order);
customers are drawn with a skew (a few regulars, many occasional). The rows are made
outside the timed region; the time is SQLite's (and pyarrow's for the columnar lines), with
Python's ``executemany`` — the best raw inserts a Python program can write.

Designs:

``current``
    the ledger as released: receipts ``WITHOUT ROWID`` keyed by the receipt id, lines blob
    in the row, an index by customer and instant; an earn journal entry per receipt.
``rowid``
    (a) receipts in arrival order (rowid), a unique index on the receipt id, the index by
    customer; the sale's earn entry folded into the receipt row (no journal row); page cache
    and mmap sized for the indexes.
``current_cached``, ``rowid_journal``
    the two changes of ``rowid`` one at a time: today's schema with its cache, and the rowid
    layout with an earn entry per receipt.
``columnar``, ``columnar_journal``
    (b) as ``rowid`` without the lines, which go to one Parquet file per chunk beside the
    ledger (written to a temporary name, fsynced and renamed before the commit naming it);
    ``columnar_journal`` keeps the earn entry of each receipt in the journal.

The report gives, per design, the receipts/s of each successive tenth of the run (a falling
rate shows), the whole rate, and the file sizes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

LINE = np.dtype([("category_id", "<i4"), ("sku_id", "<i4"), ("qty", "<i4"), ("amount_minor", "<i8")])
CHUNK = 200_000
SORT_BY_CUSTOMER = False

SCHEMAS = {
    "current": """
        CREATE TABLE receipts (receipt_id TEXT PRIMARY KEY, customer_index INTEGER, store_id TEXT NOT NULL,
            instant_us INTEGER NOT NULL, local_day INTEGER NOT NULL, amount_minor INTEGER NOT NULL, tier INTEGER,
            rate_points INTEGER NOT NULL, basket_points INTEGER NOT NULL, visit_points INTEGER NOT NULL,
            welcome_points INTEGER NOT NULL, cap_points INTEGER NOT NULL, points INTEGER NOT NULL,
            content_hash INTEGER NOT NULL, lines BLOB NOT NULL, program_version INTEGER NOT NULL,
            run_id INTEGER NOT NULL, original_receipt_id TEXT, visit_rank INTEGER NOT NULL DEFAULT 0,
            earned_before_today INTEGER NOT NULL DEFAULT 0, birthday INTEGER NOT NULL DEFAULT 0,
            unrecovered_points INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
        CREATE INDEX receipts_by_customer ON receipts(customer_index, instant_us);
        CREATE TABLE journal (entry_id INTEGER PRIMARY KEY, customer_index INTEGER NOT NULL, kind TEXT NOT NULL,
            points INTEGER NOT NULL, instant_us INTEGER NOT NULL, reference TEXT NOT NULL, run_id INTEGER, note TEXT);
        CREATE INDEX journal_by_customer ON journal(customer_index, entry_id);
    """,
    "rowid": """
        CREATE TABLE receipts (receipt_row INTEGER PRIMARY KEY, receipt_id TEXT NOT NULL, customer_index INTEGER,
            store_id INTEGER NOT NULL, instant_us INTEGER NOT NULL, local_day INTEGER NOT NULL,
            amount_minor INTEGER NOT NULL, tier INTEGER, rate_points INTEGER NOT NULL,
            basket_points INTEGER NOT NULL, visit_points INTEGER NOT NULL, welcome_points INTEGER NOT NULL,
            cap_points INTEGER NOT NULL, points INTEGER NOT NULL, content_hash INTEGER NOT NULL, lines BLOB,
            program_version INTEGER NOT NULL, run_id INTEGER NOT NULL, original_receipt_id TEXT,
            visit_rank INTEGER NOT NULL DEFAULT 0, earned_before_today INTEGER NOT NULL DEFAULT 0,
            birthday INTEGER NOT NULL DEFAULT 0, unrecovered_points INTEGER NOT NULL DEFAULT 0);
        CREATE UNIQUE INDEX receipts_by_id ON receipts(receipt_id);
        CREATE INDEX receipts_by_customer ON receipts(customer_index, instant_us);
        CREATE TABLE journal (entry_id INTEGER PRIMARY KEY, customer_index INTEGER NOT NULL, kind TEXT NOT NULL,
            points INTEGER NOT NULL, instant_us INTEGER NOT NULL, reference TEXT NOT NULL, run_id INTEGER, note TEXT);
        CREATE INDEX journal_by_customer ON journal(customer_index, entry_id);
    """,
}
SCHEMAS["columnar"] = SCHEMAS["rowid"]
# the two changes of (a) apart: the page cache alone, and the rowid layout keeping earn entries
SCHEMAS["current_cached"] = SCHEMAS["current"]
SCHEMAS["rowid_journal"] = SCHEMAS["rowid"]
SCHEMAS["columnar_journal"] = SCHEMAS["rowid"]  # (b) keeping an earn entry per receipt
COMMON = """
    CREATE TABLE customer_state (customer_index INTEGER PRIMARY KEY, record BLOB NOT NULL);
    CREATE TABLE lots (customer_index INTEGER NOT NULL, earned_month INTEGER NOT NULL,
        points_earned INTEGER NOT NULL, points_remaining INTEGER NOT NULL, expires_on INTEGER,
        PRIMARY KEY (customer_index, earned_month)) WITHOUT ROWID;
"""


def make_chunks(receipts: int, seed: int = 7):
    """The rows of every chunk, made up front (outside timing): a generator of dicts."""
    rng = np.random.default_rng(seed)
    customers = max(receipts // 7, 1)
    stores, terminals = 400, 6
    start_us = 1_704_060_000 * 1_000_000
    span_us = 5 * 365 * 86_400 * 1_000_000 * receipts // 100_000_000 + 86_400 * 1_000_000
    sequence = np.zeros(stores * terminals, dtype=np.int64)
    for first in range(0, receipts, CHUNK):
        n = min(CHUNK, receipts - first)
        instant = start_us + (np.arange(first, first + n) * (span_us // receipts))
        till = rng.integers(0, stores * terminals, n)
        number = np.empty(n, dtype=np.int64)
        for i, t in enumerate(till.tolist()):  # per-till counters, as tills number receipts
            sequence[t] += 1
            number[i] = sequence[t]
        ids = [f"S{t // terminals:04d}-T{t % terminals}-{s:07d}" for t, s in zip(till.tolist(), number.tolist())]
        customer = np.minimum((rng.pareto(1.2, n) * customers / 20).astype(np.int64), customers - 1)
        customer[rng.random(n) < 0.3] = -1  # anonymous
        counts = rng.integers(1, 12, n)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        lines = np.zeros(offsets[-1], dtype=LINE)
        lines["category_id"] = rng.integers(1, 30, offsets[-1])
        lines["sku_id"] = rng.integers(1, 20_000, offsets[-1])
        lines["qty"] = 1
        lines["amount_minor"] = rng.integers(50, 9_000, offsets[-1])
        amount = np.add.reduceat(lines["amount_minor"], offsets[:-1])
        points = amount // 100
        day = instant // 86_400_000_000
        yield {
            "ids": ids, "customer": customer, "store": till // terminals, "instant": instant, "day": day,
            "amount": amount, "points": points, "offsets": offsets, "lines": lines,
            "print": rng.integers(-2**62, 2**62, n), "month": (day // 30).astype(np.int64),
        }


def blobs(chunk) -> list[bytes]:
    offsets = chunk["offsets"] * LINE.itemsize
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(offsets) - 1,
        [None, pa.py_buffer(offsets.astype(np.int64).tobytes()), pa.py_buffer(chunk["lines"].tobytes())]).to_pylist()


def by_customer(chunk) -> dict:
    """The chunk's receipts stably sorted by customer: each customer's stay in order."""
    order = np.argsort(chunk["customer"], kind="stable")
    counts = np.diff(chunk["offsets"])
    line_order = np.concatenate([np.arange(chunk["offsets"][i], chunk["offsets"][i + 1]) for i in order]) \
        if len(order) else np.zeros(0, np.int64)
    offsets = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(counts[order], out=offsets[1:])
    sorted_chunk = {key: (value[order] if isinstance(value, np.ndarray) and len(value) == len(order) else value)
                    for key, value in chunk.items()}
    sorted_chunk["ids"] = [chunk["ids"][i] for i in order.tolist()]
    sorted_chunk["offsets"], sorted_chunk["lines"] = offsets, chunk["lines"][line_order]
    return sorted_chunk


def write_chunk(design: str, db: sqlite3.Connection, folder: Path, number: int, chunk) -> None:
    n = len(chunk["ids"])
    customer = chunk["customer"]
    identified = customer >= 0
    zeros = [0] * n
    if design.startswith("columnar"):
        lines = chunk["lines"]
        receipt_of_line = np.repeat(np.arange(n), np.diff(chunk["offsets"]))
        table = pa.table({"receipt_row": receipt_of_line + 1 + number * CHUNK, "category_id": lines["category_id"],
                          "sku_id": lines["sku_id"], "qty": lines["qty"], "amount_minor": lines["amount_minor"]})
        temporary = folder / f".chunk-{number:06d}.parquet.tmp"
        pq.write_table(table, temporary, compression="zstd")
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.rename(temporary, folder / f"chunk-{number:06d}.parquet")
        line_values = [None] * n
    else:
        line_values = blobs(chunk)
    columns = [chunk["ids"], np.where(identified, customer, -1).tolist(),
               chunk["store"].tolist(), chunk["instant"].tolist(), chunk["day"].tolist(), chunk["amount"].tolist(),
               np.where(identified, 0, -1).tolist(), chunk["points"].tolist(), zeros, zeros, zeros, zeros,
               np.where(identified, chunk["points"], 0).tolist(), chunk["print"].tolist(), line_values]
    db.execute("BEGIN IMMEDIATE")
    if design in ("current", "current_cached", "rowid_journal", "columnar_journal"):
        db.executemany(
            "INSERT INTO receipts (receipt_id, customer_index, store_id, instant_us, local_day, amount_minor, tier, "
            "rate_points, basket_points, visit_points, welcome_points, cap_points, points, content_hash, lines, "
            "program_version, run_id) VALUES (?, NULLIF(?, -1), ?, ?, ?, ?, NULLIF(?, -1), ?, ?, ?, ?, ?, ?, ?, ?, 1, 1)",
            zip(*columns))
        earning = identified & (chunk["points"] > 0)
        db.executemany("INSERT INTO journal (customer_index, kind, points, instant_us, reference, run_id) "
                       "VALUES (?, 'earn', ?, ?, ?, 1)",
                       zip(customer[earning].tolist(), chunk["points"][earning].tolist(),
                           chunk["instant"][earning].tolist(), [chunk["ids"][i] for i in np.flatnonzero(earning)]))
    else:
        db.executemany(
            "INSERT INTO receipts (receipt_id, customer_index, store_id, instant_us, local_day, amount_minor, tier, "
            "rate_points, basket_points, visit_points, welcome_points, cap_points, points, content_hash, lines, "
            "program_version, run_id) VALUES (?, NULLIF(?, -1), ?, ?, ?, ?, NULLIF(?, -1), ?, ?, ?, ?, ?, ?, ?, ?, 1, 1)",
            zip(*columns))
    # lots and the touched customers' state: the same for every design
    keys = customer[identified] * 4096 + chunk["month"][identified]
    unique_keys, inverse = np.unique(keys, return_inverse=True)
    sums = np.zeros(len(unique_keys), dtype=np.int64)
    np.add.at(sums, inverse, chunk["points"][identified])
    db.executemany("INSERT INTO lots VALUES (?, ?, ?, ?, NULL) ON CONFLICT (customer_index, earned_month) DO UPDATE "
                   "SET points_earned = points_earned + excluded.points_earned, "
                   "points_remaining = points_remaining + excluded.points_remaining",
                   zip((unique_keys // 4096).tolist(), (unique_keys % 4096).tolist(), sums.tolist(), sums.tolist()))
    touched = np.unique(customer[identified]).tolist()
    record = bytes(48)
    db.executemany("INSERT OR REPLACE INTO customer_state VALUES (?, ?)", ((c, record) for c in touched))
    db.execute("COMMIT")


def run(design: str, receipts: int, folder: Path) -> dict:
    path = folder / "ledger.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    if design == "current":
        db.execute("PRAGMA cache_size = -262144")  # 256 MiB, as the released ledger asks
    else:
        db.execute("PRAGMA cache_size = -1048576")  # 1 GiB: the indexes stay in memory
        db.execute("PRAGMA mmap_size = 4294967296")
    db.executescript(SCHEMAS[design] + COMMON)
    tenth = max(receipts // 10, CHUNK)
    rates, done, mark, mark_time, total = [], 0, 0, 0.0, 0.0
    for number, chunk in enumerate(make_chunks(receipts)):
        if SORT_BY_CUSTOMER:
            chunk = by_customer(chunk)
        started = time.perf_counter()
        write_chunk(design, db, folder, number, chunk)
        elapsed = time.perf_counter() - started
        total += elapsed
        done += len(chunk["ids"])
        if done - mark >= tenth or done == receipts:
            rates.append(round((done - mark) / (total - mark_time)))
            mark, mark_time = done, total
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    sizes = {"ledger_mb": round(path.stat().st_size / 1e6),
             "parquet_mb": round(sum(p.stat().st_size for p in folder.glob("chunk-*.parquet")) / 1e6)}
    return {"design": design, "receipts": receipts, "seconds": round(total, 1),
            "receipts_per_s": round(receipts / total), "per_tenth": rates, **sizes}


def main() -> None:
    global CHUNK, SORT_BY_CUSTOMER
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", type=int, default=1_000_000)
    parser.add_argument("--design", choices=sorted(SCHEMAS), action="append")
    parser.add_argument("--by-customer", action="store_true",
                        help="write each chunk's receipts stably sorted by customer (indexes by customer fill in order)")
    parser.add_argument("--chunk", type=int, default=200_000, help="receipts per transaction")
    parser.add_argument("--folder", type=Path, default=None, help="where the ledgers are built (default: a temp dir)")
    arguments = parser.parse_args()
    CHUNK, SORT_BY_CUSTOMER = arguments.chunk, arguments.by_customer
    results = []
    for design in arguments.design or ["current", "current_cached", "rowid_journal", "rowid", "columnar"]:
        folder = Path(tempfile.mkdtemp(prefix=f"store-{design}-", dir=arguments.folder))
        try:
            results.append(run(design, arguments.receipts, folder))
            print(json.dumps(results[-1]), flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    if len(results) > 1:
        base = results[0]["receipts_per_s"]
        for result in results:
            print(f"{result['design']:>9}: {result['receipts_per_s']:>9,} receipts/s ({result['receipts_per_s'] / base:.2f}x), "
                  f"last tenth at {result['per_tenth'][-1] / result['per_tenth'][0]:.0%} of the first; "
                  f"{result['ledger_mb']:,} MB ledger + {result['parquet_mb']:,} MB Parquet")


if __name__ == "__main__":
    main()
