"""The journal and what it balances against: entries, lots, debts, and runs.

Every change to a balance is a journal entry (earn, redeem, expire, reverse, adjust); a
customer's balance is the sum of their entries, always. Lots hold the points earned per
customer and local month, and debts the points taken back beyond what a customer still had;
balance = Σ journal = Σ remaining lots − debt. Which lot pays, when a lot expires and when a
debt is paid are rules, in :mod:`fidelis.core.points`; this module reads and writes the rows.

Writes take the caller's write connection (inside its transaction); reads take the handle.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sqlite3
from typing import TYPE_CHECKING, Iterator

import numpy as np

from .customers import customer_index_of

if TYPE_CHECKING:
    from .handle import Ledger

JOURNAL_KINDS = ("earn", "redeem", "expire", "reverse", "adjust")


# Runs


def start_run(connection: sqlite3.Connection, kind: str, arguments: dict, input_hashes: dict) -> int:
    """Record a batch job that is starting (inside the caller's transaction), with its process.

    Runs left ``running`` by a process of this host that no longer exists (killed, or its
    machine restarted) are recorded as failed first, marked ``interrupted`` in their counts.
    """
    settle_interrupted_runs(connection)
    return connection.execute(
        "INSERT INTO runs (kind, arguments, input_hashes, started_at, status, process) "
        "VALUES (?, ?, ?, datetime('now'), 'running', ?)",
        (kind, json.dumps(arguments, sort_keys=True), json.dumps(input_hashes, sort_keys=True), _this_process()),
    ).lastrowid


def settle_interrupted_runs(connection: sqlite3.Connection) -> int:
    """Mark failed the running runs of this host whose process is gone; how many."""
    host = socket.gethostname()
    gone = [run_id for run_id, process in connection.execute(
        "SELECT run_id, process FROM runs WHERE status = 'running' AND process IS NOT NULL")
        if process.rpartition(":")[0] == host and not _alive(int(process.rpartition(":")[2]))]
    connection.executemany(
        "UPDATE runs SET status = 'failed', ended_at = datetime('now'), "
        "counts = json_set(counts, '$.interrupted', json('true')) WHERE run_id = ?", [(run_id,) for run_id in gone])
    return len(gone)


def _this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def finish_run(ledger: Ledger, run_id: int, status: str, counts: dict) -> None:
    """Record a run's end in a transaction of its own (after the work's own transactions)."""
    with ledger.write() as connection:
        end_run(connection, run_id, status, counts)


def end_run(connection: sqlite3.Connection, run_id: int, status: str = "done", counts: dict | None = None) -> None:
    """Record a run's end inside the caller's transaction (a run that is one transaction)."""
    connection.execute("UPDATE runs SET status = ?, ended_at = datetime('now'), counts = COALESCE(?, counts) "
                       "WHERE run_id = ?", (status, None if counts is None else json.dumps(counts), run_id))


def realtime_run(ledger: Ledger, connection: sqlite3.Connection) -> int:
    """The run real-time accruals through this handle are recorded under (one per handle)."""
    run_id = ledger.realtime_run_id
    # (a run started in a transaction that was rolled back is gone: start another)
    if run_id is None or connection.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
        run_id = ledger.realtime_run_id = start_run(connection, "realtime", {"process": os.getpid()}, {})
    return run_id


# Entries


def add_earn_entries(connection: sqlite3.Connection, entries, run_id: int) -> None:
    """``earn`` entries: (customer index, points, instant, receipt id) rows."""
    connection.executemany(
        "INSERT INTO journal (customer_index, kind, points, instant_us, reference, run_id) "
        f"VALUES (?, 'earn', ?, ?, ?, {int(run_id)})",
        entries,
    )


def add_reverse_entry(connection: sqlite3.Connection, customer: int, points: int, instant_us: int, return_id: str,
                      run_id: int | None) -> None:
    """A return's ``reverse`` entry (``points`` < 0)."""
    connection.execute(
        "INSERT INTO journal (customer_index, kind, points, instant_us, reference, run_id) "
        "VALUES (?, 'reverse', ?, ?, ?, ?)", (customer, points, instant_us, return_id, run_id))


def add_redeem_entry(connection: sqlite3.Connection, customer: int, points: int, instant_us: int,
                     reference: str) -> int:
    """A ``redeem`` entry (``points`` < 0); its entry id."""
    return connection.execute(
        "INSERT INTO journal (customer_index, kind, points, instant_us, reference) VALUES (?, 'redeem', ?, ?, ?)",
        (customer, points, instant_us, reference)).lastrowid


def add_adjust_entry(connection: sqlite3.Connection, customer: int, points: int, instant_us: int, reference: str,
                     note: str) -> None:
    connection.execute(
        "INSERT INTO journal (customer_index, kind, points, instant_us, reference, note) "
        "VALUES (?, 'adjust', ?, ?, ?, ?)", (customer, points, instant_us, reference, note))


def adjustment_by_reference(connection: sqlite3.Connection, reference: str) -> tuple[int, int] | None:
    """(customer index, points) of the adjustment made under ``reference``, if any."""
    return connection.execute("SELECT customer_index, points FROM journal WHERE kind = 'adjust' AND reference = ? "
                              "LIMIT 1", (reference,)).fetchone()


def redemption_by_reference(connection: sqlite3.Connection, reference: str) -> tuple[int, int, int] | None:
    """(entry id, customer index, points) of the redemption made under ``reference``, if any."""
    return connection.execute(
        "SELECT entry_id, customer_index, -points FROM journal WHERE kind = 'redeem' AND reference = ?",
        (reference,)).fetchone()


def journal_end(connection: sqlite3.Connection) -> int:
    """The id of the last journal entry (0 when empty)."""
    return connection.execute("SELECT COALESCE(MAX(entry_id), 0) FROM journal").fetchone()[0]


# Balances


def balance(ledger: Ledger, customer_id: str) -> int:
    """Points available: the sum of the customer's journal, by definition."""
    index = customer_index_of(ledger, customer_id)
    return ledger.db.execute(
        "SELECT COALESCE(SUM(points), 0) FROM journal WHERE customer_index = ?", (index,)
    ).fetchone()[0]


def balance_of(connection: sqlite3.Connection, index: int) -> int:
    """A customer's balance by index, inside the caller's transaction."""
    return connection.execute(
        "SELECT COALESCE(SUM(points), 0) FROM journal WHERE customer_index = ?", (index,)).fetchone()[0]


def balance_at(connection: sqlite3.Connection, index: int, instant_us: int) -> int:
    """A customer's balance from the entries dated up to ``instant_us``."""
    return connection.execute(
        "SELECT COALESCE(SUM(points), 0) FROM journal WHERE customer_index = ? AND instant_us <= ?",
        (index, instant_us)).fetchone()[0]


def balance_through(connection: sqlite3.Connection, index: int, entry_id: int) -> int:
    """A customer's balance right after one of their entries."""
    return connection.execute("SELECT COALESCE(SUM(points), 0) FROM journal WHERE customer_index = ? "
                              "AND entry_id <= ?", (index, entry_id)).fetchone()[0]


def balances(ledger: Ledger) -> Iterator[tuple[str, int]]:
    """(customer id, balance) of every customer, balance = Σ journal."""
    yield from ledger.db.execute(
        "SELECT c.customer_id, COALESCE(SUM(j.points), 0) FROM customers c "
        "LEFT JOIN journal j USING (customer_index) GROUP BY c.customer_index ORDER BY c.customer_index"
    )


def history(ledger: Ledger, customer_id: str, limit: int = 20, before_entry: int | None = None) -> list[dict]:
    """The customer's journal entries, newest first, times in the chain's zone.

    ``before_entry`` pages backwards (the last page's smallest ``entry_id``).
    """
    index = customer_index_of(ledger, customer_id)
    zone = ledger.current_program().program.info.zone()
    rows = ledger.db.execute(
        "SELECT entry_id, kind, points, instant_us, reference FROM journal WHERE customer_index = ? "
        "AND entry_id < ? ORDER BY entry_id DESC LIMIT ?",
        (index, before_entry if before_entry is not None else 2**63 - 1, limit),
    ).fetchall()
    return [
        {"entry_id": entry_id, "kind": kind, "points": points,
         "at": dt.datetime.fromtimestamp(instant_us // 1_000_000, zone).isoformat(timespec="seconds"),
         "reference": reference}
        for entry_id, kind, points, instant_us, reference in rows
    ]


# Lots


def add_lots(connection: sqlite3.Connection, customers, months, points, expires_on) -> None:
    """Add points to the lots of (customer index, earned month); a new lot expires on ``expires_on``."""
    connection.executemany(
        "INSERT INTO lots (customer_index, earned_month, points_earned, points_remaining, expires_on) "
        "VALUES (?1, ?2, ?3, ?3, ?4) "
        "ON CONFLICT(customer_index, earned_month) DO UPDATE SET "
        "points_earned = points_earned + excluded.points_earned, "
        "points_remaining = points_remaining + excluded.points_remaining",
        zip(np.asarray(customers).tolist(), np.asarray(months).tolist(), np.asarray(points).tolist(),
            expires_on.tolist()),
    )


def points_held(connection: sqlite3.Connection, customer: int) -> int:
    """Points left in a customer's lots."""
    return connection.execute("SELECT COALESCE(SUM(points_remaining), 0) FROM lots WHERE customer_index = ?",
                              (customer,)).fetchone()[0]


def lots_with_points(connection: sqlite3.Connection, customer: int) -> list[tuple[int, int]]:
    """(earned month, points remaining) of a customer's lots that hold points, oldest first."""
    return connection.execute(
        "SELECT earned_month, points_remaining FROM lots WHERE customer_index = ? AND points_remaining > 0 "
        "ORDER BY earned_month", (customer,)).fetchall()


def lot_remaining(connection: sqlite3.Connection, customer: int, month: int) -> int:
    """Points left in one lot (0 if there is none)."""
    row = connection.execute("SELECT points_remaining FROM lots WHERE customer_index = ? AND earned_month = ?",
                             (customer, month)).fetchone()
    return 0 if row is None else row[0]


def take_from_lot(connection: sqlite3.Connection, customer: int, month: int, points: int) -> None:
    connection.execute("UPDATE lots SET points_remaining = points_remaining - ? "
                       "WHERE customer_index = ? AND earned_month = ?", (points, customer, month))


# Debts


def add_debt(connection: sqlite3.Connection, customer: int, points: int) -> None:
    connection.execute("INSERT INTO debts (customer_index, points) VALUES (?, ?) ON CONFLICT(customer_index) "
                       "DO UPDATE SET points = points + excluded.points", (customer, points))


def debts_of(connection: sqlite3.Connection, customers: np.ndarray) -> list[tuple[int, int, int]]:
    """(customer index, debt, points held in lots) of those of ``customers`` who owe points."""
    if connection.execute("SELECT 1 FROM debts LIMIT 1").fetchone() is None:
        return []
    return connection.execute(
        "SELECT d.customer_index, d.points, (SELECT COALESCE(SUM(points_remaining), 0) FROM lots l "
        "WHERE l.customer_index = d.customer_index) FROM debts d "
        "WHERE d.customer_index IN (SELECT value FROM json_each(?))",
        (json.dumps(np.unique(np.asarray(customers)).tolist()),)).fetchall()


def reduce_debt(connection: sqlite3.Connection, customer: int, paid: int, debt: int) -> None:
    """Record ``paid`` points of a customer's ``debt`` paid (the row goes when it is all paid)."""
    if paid == debt:
        connection.execute("DELETE FROM debts WHERE customer_index = ?", (customer,))
    else:
        connection.execute("UPDATE debts SET points = points - ? WHERE customer_index = ?", (paid, customer))
