"""Receipts as stored: their facts and points, their lines, and the names lines refer to.

A receipt's lines are stored as fixed-width records (:data:`LINE_DTYPE`: category id, sku
id, qty, amount), so a chunk's lines are one buffer and each receipt's value is a slice of
it, with no per-receipt encoding in Python. Every encode and decode of that value is here.
Category and sku names get ledger-wide ids on first sight.
"""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..errors import CorruptReceiptLines
from .chunk_files import chunk_table, line_records, read_rows, write_chunk_file
from ..localtime import instant_month, local_calendar
from ..returns import OriginalReceipt

if TYPE_CHECKING:
    from .handle import Ledger

#: A stored line: the layout of a receipt's ``lines`` value, record after record.
LINE_DTYPE = np.dtype([("category_id", "<i4"), ("sku_id", "<i4"), ("qty", "<i4"), ("amount_minor", "<i8")])


def encode_lines(line_offsets: np.ndarray, category_ids: np.ndarray, sku_ids: np.ndarray | None, qty: np.ndarray,
                 amount_minor: np.ndarray) -> list[bytes]:
    """The ``lines`` value of each receipt of a batch (lines in CSR by ``line_offsets``), built
    as one buffer and sliced, not record by record."""
    lines = np.empty(len(qty), dtype=LINE_DTYPE)
    lines["category_id"] = category_ids
    lines["sku_id"] = 0 if sku_ids is None else sku_ids
    lines["qty"] = qty
    lines["amount_minor"] = amount_minor
    return _slices(lines, line_offsets)


def decode_lines(value: bytes) -> np.ndarray:
    """One receipt's stored ``lines`` value as records of :data:`LINE_DTYPE`;
    :class:`CorruptReceiptLines` if it is not a whole number of records."""
    if not isinstance(value, bytes) or len(value) % LINE_DTYPE.itemsize:
        raise CorruptReceiptLines("stored receipt lines are corrupt; run `fidelis check` to find which receipts, "
                                  "and restore the ledger from a backup")
    return np.frombuffer(value, dtype=LINE_DTYPE)


def corrupt_lines(connection: sqlite3.Connection) -> list[tuple[str, int]]:
    """(receipt id, bytes) of receipts whose stored lines are not a whole number of line records."""
    return connection.execute(
        f"SELECT receipt_id, length(lines) FROM receipts WHERE lines IS NOT NULL AND (typeof(lines) != 'blob' "
        f"OR length(lines) % {LINE_DTYPE.itemsize} != 0) ORDER BY receipt_id").fetchall()


def fill_lines(ledger: Ledger, rows: list[tuple], row_at: int, lines_at: int,
               customers: tuple[int, int] | None = None) -> list[tuple]:
    """``rows`` with the lines of file-held receipts (NULL in SQLite) read from their chunk
    files: column ``row_at`` is the receipt row, ``lines_at`` the lines value. ``customers``:
    the least and greatest customer index among them, to skip row groups of others."""
    missing = sorted(row[row_at] for row in rows if row[lines_at] is None)
    if not missing:
        return rows
    table = read_rows(ledger, np.array(missing, dtype=np.int64), ["lines"], customers)
    records, offsets = line_records(table.column("lines"), LINE_DTYPE)
    found = dict(zip(table.column("receipt_row").to_pylist(), _slices(records, offsets)))
    if len(found) != len(missing):
        absent = sorted(set(missing) - set(found))[:5]
        raise CorruptReceiptLines(f"the lines of receipt rows {absent} are in no chunk file; run `fidelis check`, "
                                  "and restore the ledger from a backup")
    return [row if row[lines_at] is not None else (*row[:lines_at], found[row[row_at]], *row[lines_at + 1:])
            for row in rows]


def _slices(records: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    """Each receipt's ``lines`` value, sliced out of one buffer of records in CSR."""
    byte_offsets = (offsets * LINE_DTYPE.itemsize).astype(np.int64)
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(offsets) - 1, [None, pa.py_buffer(byte_offsets.tobytes()), pa.py_buffer(records.tobytes())]
    ).to_pylist()


def lines_by_id(ledger: Ledger, receipt_ids: list[str]) -> dict[str, np.ndarray]:
    """Stored receipts' lines as records of :data:`LINE_DTYPE`, wherever they are held."""
    rows = ledger.db.execute("SELECT receipt_row, receipt_id, lines FROM receipts "
                             "WHERE receipt_id IN (SELECT value FROM json_each(?))",
                             (json.dumps(list(receipt_ids)),)).fetchall()
    return {receipt_id: decode_lines(lines) for _, receipt_id, lines in fill_lines(ledger, rows, 0, 2)}


def decode_receipt_lines(values: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Several receipts' ``lines`` values as one array of records and their CSR offsets;
    :class:`LedgerError` if one is not a whole number of records (``check`` names it)."""
    if any(not isinstance(value, bytes) or len(value) % LINE_DTYPE.itemsize for value in values):
        raise CorruptReceiptLines("stored receipt lines are corrupt; run `fidelis check` to find which receipts, "
                                  "and restore the ledger from a backup")
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum([len(value) // LINE_DTYPE.itemsize for value in values], out=offsets[1:])
    return np.frombuffer(b"".join(values), dtype=LINE_DTYPE), offsets


def next_receipt_row(connection: sqlite3.Connection) -> int:
    """The row number the next stored receipt gets: after every row in SQLite and in the
    chunk files (a voided receipt's row is never reused, its file still holds it)."""
    return 1 + connection.execute(
        "SELECT MAX(COALESCE((SELECT MAX(receipt_row) FROM receipts), 0), "
        "COALESCE((SELECT MAX(last_row) FROM chunk_files), 0))").fetchone()[0]


def insert_receipts(connection: sqlite3.Connection, receipts, program_version: int, run_id: int) -> None:
    """Scored receipts, one row each: receipt row, receipt id, customer index (-1 anonymous),
    store id, instant, local day, amount, tier (-1 anonymous), rate, basket, visit, welcome
    and cap points, points, content fingerprint, lines (None: in a chunk file), original
    receipt id (None on a sale), visit rank, points earned earlier that day, birthday."""
    connection.executemany(
        "INSERT INTO receipts (receipt_row, receipt_id, customer_index, store_id, instant_us, local_day, "
        "amount_minor, tier, rate_points, basket_points, visit_points, welcome_points, cap_points, points, "
        "content_hash, lines, original_receipt_id, visit_rank, earned_before_today, birthday, program_version, "
        "run_id) VALUES (?, ?, NULLIF(?, -1), ?, ?, ?, ?, NULLIF(?, -1), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
        f"{int(program_version)}, {int(run_id)})",
        receipts,
    )


def record_unrecovered(connection: sqlite3.Connection, return_id: str, points: int) -> None:
    """The points a return could not take back, on the return."""
    connection.execute("UPDATE receipts SET unrecovered_points = ? WHERE receipt_id = ?", (points, return_id))


def vocabulary_ids(connection: sqlite3.Connection, table: str, names: list[str]) -> np.ndarray:
    """Ledger-wide ids of category or sku names (int32, by position), adding new names."""
    column = {"categories": ("category_id", "name"), "skus": ("sku_id", "sku")}[table]
    wanted = list(dict.fromkeys(names))
    if len(wanted) < 1000:  # a few names (a receipt): look them up rather than read the table
        known = dict(connection.execute(
            f"SELECT {column[1]}, {column[0]} FROM {table} WHERE {column[1]} IN (SELECT value FROM json_each(?))",
            (json.dumps(wanted),)).fetchall())
    else:
        known = dict(connection.execute(f"SELECT {column[1]}, {column[0]} FROM {table}").fetchall())
    new = [name for name in wanted if name not in known]
    if new:
        start = (connection.execute(f"SELECT COALESCE(MAX({column[0]}), 0) FROM {table}").fetchone()[0]) + 1
        connection.executemany(f"INSERT INTO {table} ({column[0]}, {column[1]}) VALUES (?, ?)",
                               zip(range(start, start + len(new)), new))
        known.update(zip(new, range(start, start + len(new))))
    return np.array([known[name] for name in names], dtype=np.int32)


def last_receipt_at(ledger: Ledger, customer_index: int, instant_us: int) -> str | None:
    """The customer's last receipt id (in processing order) at exactly ``instant_us``."""
    row = ledger.db.execute(
        "SELECT MAX(receipt_id) FROM receipts WHERE customer_index = ? AND instant_us = ?",
        (customer_index, instant_us),
    ).fetchone()
    return row[0]


def receipt_for_void(connection: sqlite3.Connection, receipt_id: str) -> tuple | None:
    """(customer index, customer id, instant, local day, points, is a return, ids of its returns, the
    id of the customer's next receipt after it or None) of a stored receipt; None if absent."""
    row = connection.execute(
        "SELECT r.customer_index, c.customer_id, r.local_day, r.points, r.original_receipt_id IS NOT NULL, "
        "r.instant_us FROM receipts r LEFT JOIN customers c ON c.customer_index = r.customer_index "
        "WHERE r.receipt_id = ?", (receipt_id,)).fetchone()
    if row is None:
        return None
    customer, customer_id, local_day, points, is_return, instant_us = row
    returns = [found for (found,) in connection.execute(
        "SELECT receipt_id FROM receipts WHERE original_receipt_id = ? ORDER BY receipt_id", (receipt_id,))]
    later = None if customer is None else connection.execute(
        "SELECT receipt_id FROM receipts WHERE customer_index = ? AND (instant_us > ? OR (instant_us = ? AND "
        "receipt_id > ?)) ORDER BY instant_us DESC, receipt_id DESC LIMIT 1",
        (customer, instant_us, instant_us, receipt_id)).fetchone()
    return customer, customer_id, instant_us, local_day, points, bool(is_return), returns, later and later[0]


def move_to_voided(ledger: Ledger, connection: sqlite3.Connection, receipt_id: str, unrecovered: int, void_run_id: int,
                   reason: str) -> None:
    """Take a receipt out of ``receipts`` into ``voided_receipts`` (inside the caller's transaction)."""
    (_, lines), = fill_lines(ledger, connection.execute(
        "SELECT receipt_row, lines FROM receipts WHERE receipt_id = ?", (receipt_id,)).fetchall(), 0, 1)
    connection.execute(
        "INSERT INTO voided_receipts (receipt_id, customer_index, store_id, instant_us, amount_minor, points, "
        "points_unrecovered, content_hash, lines, run_id, void_run_id, reason, receipt_row) SELECT receipt_id, "
        "customer_index, store_id, instant_us, amount_minor, points, ?, content_hash, ?, run_id, ?, ?, receipt_row "
        "FROM receipts WHERE receipt_id = ?", (unrecovered, lines, void_run_id, reason, receipt_id))
    connection.execute("DELETE FROM receipts WHERE receipt_id = ?", (receipt_id,))


def receipt_results(connection: sqlite3.Connection, receipt_ids: list[str]) -> dict[str, tuple]:
    """Receipt id -> (customer id, tier, (rate, basket, visit, welcome, cap points, points),
    unrecovered points, original receipt id, the customer's balance now)."""
    rows = connection.execute(
        "SELECT r.receipt_id, c.customer_id, r.tier, r.rate_points, r.basket_points, r.visit_points, "
        "r.welcome_points, r.cap_points, r.points, r.unrecovered_points, r.original_receipt_id, "
        "(SELECT COALESCE(SUM(points), 0) FROM journal j WHERE j.customer_index = r.customer_index) "
        "FROM receipts r LEFT JOIN customers c USING (customer_index) "
        "WHERE r.receipt_id IN (SELECT value FROM json_each(?))", (json.dumps(receipt_ids),)).fetchall()
    return {row[0]: (row[1], row[2], tuple(row[3:9]), row[9], row[10], row[11] if row[1] is not None else None)
            for row in rows}


def existing_receipts(ledger: Ledger, receipt_ids: list[str]) -> dict[str, int]:
    """Receipt id -> stored content fingerprint, for the ids already in the ledger."""
    if not ledger.db.execute("SELECT 1 FROM receipts LIMIT 1").fetchone():
        return {}
    found: dict[str, int] = {}
    # ids go in as one JSON array per block: no temporary table to write, no variable limit
    for start in range(0, len(receipt_ids), 50_000):
        found.update(ledger.db.execute(
            "SELECT receipt_id, content_hash FROM receipts WHERE receipt_id IN (SELECT value FROM json_each(?))",
            (json.dumps(receipt_ids[start:start + 50_000]),),
        ).fetchall())
    return found


def stored_originals(ledger: Ledger, receipt_ids: list[str]) -> dict[str, OriginalReceipt]:
    """Stored sale receipts a return may refer to, with the returns stored of them."""
    if not receipt_ids or not ledger.db.execute("SELECT 1 FROM receipts LIMIT 1").fetchone():
        return {}
    zone = ledger.current_program().program.info.zone()
    categories = category_names(ledger)
    skus = dict(ledger.db.execute("SELECT sku_id, sku FROM skus").fetchall())
    found = {}
    for start in range(0, len(receipt_ids), 50_000):
        block = json.dumps(receipt_ids[start:start + 50_000])
        returned: dict[str, list] = {}
        for _, return_id, original_id, instant_us, lines in fill_lines(ledger, ledger.db.execute(
                "SELECT receipt_row, receipt_id, original_receipt_id, instant_us, lines FROM receipts "
                "WHERE original_receipt_id IN (SELECT value FROM json_each(?))", (block,)).fetchall(), 0, 4):
            qty = decode_lines(lines)["qty"].astype(np.int64)
            returned.setdefault(original_id, []).append((instant_us, return_id, qty))
        for (_, receipt_id, customer_id, store_id, instant_us, local_day, tier, visit_rank, earned_before_today,
             birthday, lines) in fill_lines(ledger, ledger.db.execute(
                "SELECT r.receipt_row, r.receipt_id, c.customer_id, r.store_id, r.instant_us, r.local_day, r.tier, "
                "r.visit_rank, r.earned_before_today, r.birthday, r.lines FROM receipts r "
                "LEFT JOIN customers c USING (customer_index) "
                "WHERE r.receipt_id IN (SELECT value FROM json_each(?)) AND r.original_receipt_id IS NULL",
                (block,)).fetchall(), 0, 10):
            records = decode_lines(lines)
            local = dt.datetime.fromtimestamp(instant_us // 1_000_000, zone)
            found[receipt_id] = OriginalReceipt(
                receipt_id=receipt_id, customer_id=customer_id, store_id=store_id, instant_us=instant_us,
                local_day=local_day, local_minute=local.hour * 60 + local.minute,
                local_month=instant_month(instant_us, zone),
                line_category=[categories[i] for i in records["category_id"].tolist()],
                line_sku=[skus.get(i) for i in records["sku_id"].tolist()],
                line_qty=records["qty"].astype(np.int64), line_amount_minor=records["amount_minor"].astype(np.int64),
                tier=tier if tier is not None else 0, visit_rank=visit_rank,
                earned_before_today=earned_before_today, birthday=bool(birthday),
                returned_qty=sum((units for _, _, units in returned.get(receipt_id, ())),
                                 np.zeros(len(records), dtype=np.int64)),
                stored_returns=tuple(sorted(returned.get(receipt_id, ()), key=lambda r: r[:2])),
            )
    return found


def stored_receipts(ledger: Ledger, customers: range | np.ndarray | None = None) -> list[tuple]:
    """(receipt id, customer id, store id, instant, lines, points, original receipt id) in
    processing order.

    ``customers``: only the receipts of those customer indices (a range or an array; no
    anonymous receipts then).
    """
    where, parameters, span = "", (), None
    if isinstance(customers, range):
        where, parameters = "WHERE r.customer_index >= ? AND r.customer_index < ? ", (customers.start, customers.stop)
        span = (customers.start, customers.stop - 1)
    elif customers is not None:
        where = "WHERE r.customer_index IN (SELECT value FROM json_each(?)) "
        parameters = (json.dumps(np.asarray(customers).tolist()),)
        span = (int(np.min(customers)), int(np.max(customers))) if len(customers) else None
    rows = ledger.db.execute(
        "SELECT r.receipt_id, c.customer_id, r.store_id, r.instant_us, r.lines, r.points, r.original_receipt_id, "
        f"r.receipt_row FROM receipts r LEFT JOIN customers c USING (customer_index) {where}"
        "ORDER BY r.instant_us, r.receipt_id", parameters
    ).fetchall()
    return [row[:7] for row in fill_lines(ledger, rows, 7, 4, span)]


def returns_written_from(ledger: Ledger, original_ids: list[str], first_row: int) -> set[str]:
    """Ids of the stored returns of those originals written at or after ``first_row`` (in
    arrival order): what a replay reaching that row has not scored yet."""
    return {row[0] for row in ledger.db.execute(
        "SELECT receipt_id FROM receipts WHERE original_receipt_id IN (SELECT value FROM json_each(?)) "
        "AND receipt_row >= ?", (json.dumps(original_ids), first_row))}


def category_names(ledger: Ledger) -> list[str]:
    """Category names by ledger category id (position 0 unused)."""
    categories = dict(ledger.db.execute("SELECT category_id, name FROM categories").fetchall())
    return [categories.get(i, "") for i in range(max(categories, default=0) + 1)]


#: Receipts moved from SQLite into one chunk file at a time (one transaction each).
MOVE_RECEIPTS = 500_000


def move_held_receipts(ledger: Ledger, connection: sqlite3.Connection, run_id: int, timezone: str,
                       limit: int = MOVE_RECEIPTS) -> int:
    """Move the lines of up to ``limit`` receipts SQLite holds (accrued one by one) into a
    chunk file of their own, oldest rows first, inside the caller's transaction; how many.

    Their rows are scattered between the files of loads; a replay merges them back by row.
    """
    table = held_receipts(connection, timezone, limit=limit)
    if not len(table):
        return 0
    write_chunk_file(ledger, connection, table, run_id)
    connection.execute("UPDATE receipts SET lines = NULL WHERE lines IS NOT NULL AND receipt_row <= ?",
                       (table.column("receipt_row")[-1].as_py(),))
    return len(table)


def held_receipts(connection: sqlite3.Connection, timezone: str, *, lo: int = 0, hi: int | None = None,
                  limit: int = -1) -> pa.Table:
    """The receipts whose lines SQLite holds, of rows ``lo <= row < hi`` (oldest first, at
    most ``limit``), as a chunk file's table: what a month-end writes and a replay reads."""
    rows = connection.execute(
        "SELECT receipt_row, receipt_id, customer_index, store_id, instant_us, amount_minor, tier, points, "
        "original_receipt_id, program_version, run_id, lines FROM receipts WHERE lines IS NOT NULL "
        "AND receipt_row >= ? AND receipt_row < ? ORDER BY receipt_row LIMIT ?",
        (lo, (1 << 63) - 1 if hi is None else hi, limit)).fetchall()
    records, offsets = decode_receipt_lines([row[11] for row in rows])
    instants = np.array([row[4] for row in rows], dtype=np.int64)
    calendar = local_calendar(instants, timezone)
    column = list(zip(*rows)) or [()] * 12
    return chunk_table(np.array(column[0], dtype=np.int64), {
        "receipt_id": pa.array(column[1], pa.string()), "customer_index": pa.array(column[2], pa.int64()),
        "store_id": pa.array(column[3], pa.string()), "instant": instants, "local_date": calendar.local_day,
        "local_minute": calendar.local_minute, "local_month": calendar.local_month,
        "amount_minor": np.array(column[5], dtype=np.int64), "tier": pa.array(column[6], pa.int8()),
        "points": np.array(column[7], dtype=np.int64), "original_receipt_id": pa.array(column[8], pa.string()),
        "program_version": np.array(column[9], dtype=np.int32), "run_id": np.array(column[10], dtype=np.int64),
    }, offsets, {name: records[name] for name in LINE_DTYPE.names})
