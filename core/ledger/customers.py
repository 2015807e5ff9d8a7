"""Customers: the id directory and the scoring state stored per customer.

External ids (card numbers, often with leading zeros) map to the dense ``customer_index``
the kernel's state arrays use; the indices are stable across loads. Each customer's state is
stored as the bytes of their state arrays (``customer_state``), decoded in one place
(:func:`decode_state`). The state generation moves whenever state is written, so a run that
scored from state read earlier can tell that another writer came in between.
"""
from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..errors import LedgerError, UnknownCustomer
from ..state import CUSTOMER_STATE_DTYPE, CustomerState

if TYPE_CHECKING:
    from ..program.tables import ProgramTables
    from .handle import Ledger


def _row_bytes(rows: np.ndarray) -> list[bytes]:
    """Each row of a 1- or 2-D array as its own bytes value, without a Python loop over rows."""
    width = rows.itemsize * (rows.shape[1] if rows.ndim == 2 else 1)
    data = pa.py_buffer(np.ascontiguousarray(rows).tobytes())
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(rows), [None, data]).to_pylist()


def _date_text(dates: np.ndarray) -> list[str | None]:
    """Dates as ISO text, None where unknown."""
    return pa.array(dates.astype("datetime64[D]"), pa.date32()).cast(pa.string()).to_pylist()


def state_generation(ledger: Ledger) -> int:
    """Moves whenever customer state is written; read it with the state you score from."""
    return ledger.db.execute("SELECT value FROM ledger_meta WHERE key = 'state_generation'").fetchone()[0]


def advance_state_generation(ledger: Ledger, connection: sqlite3.Connection, expected: int,
                             months: np.ndarray) -> int:
    """Inside a write of receipts dated in local ``months``: refuse if another writer moved
    the state since ``expected``, then move it and mark those months written at the new
    generation.

    Scoring reads customer state before writing what it scored; if another process
    wrote state in between, this run's scores rest on a stale history and must not land.
    The months let a month-end tell writes into the months it closes from the rest
    (:func:`months_written_since`).
    """
    check_state_generation(
        ledger, connection, expected, "another process wrote to the ledger while this load was running; nothing of "
        "this load's last step was written — run it again (what is already loaded is skipped)")
    generation = expected + 1
    connection.execute("UPDATE ledger_meta SET value = ? WHERE key = 'state_generation'", (generation,))
    connection.executemany(
        f"INSERT INTO month_writes (month, generation) VALUES (?, {generation}) "
        "ON CONFLICT(month) DO UPDATE SET generation = excluded.generation",
        [(month,) for month in np.unique(np.asarray(months)).tolist()])
    return generation


def months_written_since(connection: sqlite3.Connection, generation: int, through_month: int) -> bool:
    """Whether receipts dated in a local month up to ``through_month`` were written after
    the state ``generation``."""
    return connection.execute("SELECT 1 FROM month_writes WHERE month <= ? AND generation > ? LIMIT 1",
                              (through_month, generation)).fetchone() is not None


def check_state_generation(ledger: Ledger, connection: sqlite3.Connection, expected: int, message: str) -> None:
    """Inside a write: refuse, with ``message``, if customer state moved since ``expected``."""
    current = connection.execute("SELECT value FROM ledger_meta WHERE key = 'state_generation'").fetchone()[0]
    if current != expected:
        raise LedgerError(f"{ledger.path}: {message}")


def current_state_generation(connection: sqlite3.Connection) -> int:
    """The state generation as the caller's transaction sees it."""
    return connection.execute("SELECT value FROM ledger_meta WHERE key = 'state_generation'").fetchone()[0]


def load_state(ledger: Ledger, state: CustomerState) -> None:
    """Fill ``state`` with every stored customer and their scoring state.

    The directory order is the stored ``customer_index``, so indices stay stable across
    loads.
    """
    ids, birth_months = _directory(ledger, state)
    rows = ledger.db.execute(
        "SELECT customer_index, record, rolling_totals, tier_reached_month FROM customer_state"
    ).fetchall()
    if rows:
        _fill_state(state, rows)
    # the customers table is where birth dates live; the state's copy follows it
    known = birth_months > 0
    state.records["birth_month"][: len(ids)][known] = birth_months[known]


def unscored_state(ledger: Ledger, compiled: ProgramTables) -> CustomerState:
    """Every stored customer at their ledger index with their birth month, nothing scored:
    where a replay of the ledger's receipts (under any program) starts."""
    count = ledger.db.execute("SELECT COUNT(*) FROM customers").fetchone()[0]
    state = CustomerState.for_program(compiled, capacity=max(count, 1))
    ids, birth_months = _directory(ledger, state)
    state.records["birth_month"][: len(ids)] = birth_months
    return state


def _directory(ledger: Ledger, state: CustomerState) -> tuple[list[str], np.ndarray]:
    """Register every stored customer in ``state`` at their ledger index; their birth months."""
    customers = ledger.db.execute("SELECT customer_index, customer_id, COALESCE(CAST(substr(birth_date, 6, 2) "
                                  "AS INTEGER), 0) FROM customers ORDER BY customer_index").fetchall()
    ids = [row[1] for row in customers]
    if customers and (customers[0][0], customers[-1][0]) != (0, len(customers) - 1):
        raise LedgerError(f"{ledger.path}: customer indices are not dense; run `fidelis check`")
    if len(state):
        if not np.array_equal(state.index_of(ids), np.arange(len(ids))):
            raise LedgerError(f"{ledger.path}: customer indices are not dense; run `fidelis check`")
    else:
        state.register_directory(ids, known_unique=True)  # the customers table keys them
    return ids, np.fromiter((row[2] for row in customers), dtype=np.int8, count=len(customers))


def reload_state(ledger: Ledger, state: CustomerState, customers: np.ndarray) -> None:
    """Read back the stored state of some customers (indices into a state loaded with
    :meth:`load_state`) over what ``state`` holds for them; customers without stored
    state start afresh, with their stored birth month."""
    customers = np.asarray(customers, dtype=np.int64)
    if not len(customers):
        return
    block = json.dumps(customers.tolist())
    fresh = CustomerState.for_program_shape(state, len(customers))
    state.records[customers] = fresh.records
    state.rolling_totals[customers] = fresh.rolling_totals
    state.tier_reached_month[customers] = fresh.tier_reached_month
    births = dict(ledger.db.execute("SELECT customer_index, birth_date FROM customers "
                                  "WHERE customer_index IN (SELECT value FROM json_each(?))", (block,)).fetchall())
    state.records["birth_month"][customers] = [int(births[i][5:7]) if births.get(i) else 0
                                               for i in customers.tolist()]
    rows = ledger.db.execute("SELECT customer_index, record, rolling_totals, tier_reached_month FROM customer_state "
                           "WHERE customer_index IN (SELECT value FROM json_each(?))", (block,)).fetchall()
    if rows:
        _fill_state(state, rows)


def stored_state_arrays(ledger: Ledger, compiled: ProgramTables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every customer's stored state as arrays by customer index (records, rolling totals,
    tiers reached), without the id directory: what status at month end needs, and half the
    cost of :meth:`load_state` on a large ledger."""
    count = ledger.db.execute("SELECT COUNT(*) FROM customers").fetchone()[0]
    state = CustomerState.for_program(compiled, capacity=max(count, 1))
    rows = ledger.db.execute(
        "SELECT customer_index, record, rolling_totals, tier_reached_month FROM customer_state").fetchall()
    if rows:
        _fill_state(state, rows)
    return state.records[:count], state.rolling_totals[:count], state.tier_reached_month[:count]


def customer_details(ledger: Ledger, indices: np.ndarray) -> tuple[list[str], np.ndarray]:
    """External ids and birth months (1..12, 0 unknown; int8) of customers, by index."""
    indices = np.asarray(indices).tolist()
    rows = {index: (customer_id, birth_date) for index, customer_id, birth_date in ledger.db.execute(
        "SELECT customer_index, customer_id, birth_date FROM customers "
        "WHERE customer_index IN (SELECT value FROM json_each(?))", (json.dumps(indices),))}
    ids = [rows[index][0] for index in indices]
    births = [rows[index][1] for index in indices]
    return ids, np.array([int(birth[5:7]) if birth else 0 for birth in births], dtype=np.int8)


def _fill_state(state: CustomerState, rows: list[tuple]) -> None:
    """Copy stored ``customer_state`` rows (index, record, rolling, reached) into ``state``."""
    index = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    records, rolling, reached = decode_state([row[1:] for row in rows], state)
    state.records[index] = records
    if rolling is not None:
        state.rolling_totals[index] = rolling
    if reached is not None:
        state.tier_reached_month[index] = reached


def decode_state(rows: list[tuple], shape: CustomerState) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Stored ``customer_state`` values (record, rolling totals, tiers reached) as arrays, one
    row each: the one reader of the state blob, whose layout is ``shape``'s program's (a record
    is :data:`~fidelis.core.state.CUSTOMER_STATE_DTYPE`; 12 int64 rolling totals and one int32
    month per tier, present only where the program has them)."""
    records = np.frombuffer(b"".join(row[0] for row in rows), dtype=CUSTOMER_STATE_DTYPE)
    rolling = reached = None
    if shape.rolling_months:
        rolling = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.int64).reshape(len(rows), 12)
    if shape.reached_tiers:
        reached = np.frombuffer(b"".join(row[2] for row in rows), dtype=np.int32).reshape(len(rows), shape.tier_count)
    return records, rolling, reached


def stored_standing(ledger: Ledger, compiled: ProgramTables, customer_id: str
                    ) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """(index, balance, record, rolling totals, tiers reached) of one customer, the state as
    1-row arrays straight from the stored bytes, in one query: a balance lookup's hot path."""
    found = ledger.db.conn.execute(
        "SELECT c.customer_index, s.record, s.rolling_totals, s.tier_reached_month, "
        "(SELECT COALESCE(SUM(j.points), 0) FROM journal j WHERE j.customer_index = c.customer_index) "
        "FROM customers c LEFT JOIN customer_state s USING (customer_index) WHERE c.customer_id = ?",
        (customer_id,)).fetchone()
    if found is None:
        raise UnknownCustomer(f"unknown customer {customer_id!r}")
    empty = CustomerState.for_program(compiled, capacity=1)
    records, rolling, reached = empty.records[:1], empty.rolling_totals[:1], empty.tier_reached_month[:1]
    if found[1] is not None:
        stored_records, stored_rolling, stored_reached = decode_state([found[1:4]], empty)
        records = stored_records
        rolling = rolling if stored_rolling is None else stored_rolling
        reached = reached if stored_reached is None else stored_reached
    return found[0], found[4], records, rolling, reached


def customer_states(ledger: Ledger, compiled: ProgramTables, customer_ids: list[str]) -> tuple[CustomerState, np.ndarray]:
    """The stored state of some customers, for scoring a few receipts without the whole
    directory: a state holding the known ones (in the order given, unknown ids left out)
    and the stored index of each of its customers."""
    rows = ledger.db.execute(
        "SELECT customer_index, customer_id, birth_date FROM customers "
        "WHERE customer_id IN (SELECT value FROM json_each(?))", (json.dumps(list(dict.fromkeys(customer_ids))),)
    ).fetchall()
    state = CustomerState.for_program(compiled, capacity=max(len(rows), 1))
    stored_index = np.array([row[0] for row in rows], dtype=np.int64)
    if rows:
        state.index_of([row[1] for row in rows])
        local = {index: position for position, index in enumerate(stored_index.tolist())}
        stored = ledger.db.execute(
            "SELECT customer_index, record, rolling_totals, tier_reached_month FROM customer_state "
            "WHERE customer_index IN (SELECT value FROM json_each(?))", (json.dumps(stored_index.tolist()),)
        ).fetchall()
        if stored:
            _fill_state(state, [(local[row[0]], *row[1:]) for row in stored])
        births = np.array([int(row[2][5:7]) if row[2] else 0 for row in rows], dtype=np.int8)
        state.records["birth_month"][:len(rows)][births > 0] = births[births > 0]
    return state, stored_index


def insert_customers(connection: sqlite3.Connection, customer_ids: list[str]) -> np.ndarray:
    """Add new customers (no details) at the next indices, inside the caller's transaction."""
    first = connection.execute("SELECT COALESCE(MAX(customer_index), -1) + 1 FROM customers").fetchone()[0]
    connection.executemany("INSERT INTO customers (customer_index, customer_id) VALUES (?, ?)",
                           enumerate(customer_ids, start=first))
    return np.arange(first, first + len(customer_ids), dtype=np.int64)


def save_state(connection: sqlite3.Connection, state: CustomerState, customers: np.ndarray,
               stored_as: np.ndarray | None = None) -> None:
    """Upsert the state of ``customers`` (indices into ``state``) inside the caller's
    transaction, as the stored customers ``stored_as`` (default: the same indices)."""
    connection.executemany(
        "INSERT INTO customer_state (customer_index, record, rolling_totals, tier_reached_month) "
        "VALUES (?, ?, ?, ?) ON CONFLICT(customer_index) DO UPDATE SET record = excluded.record, "
        "rolling_totals = excluded.rolling_totals, tier_reached_month = excluded.tier_reached_month",
        zip(
            (customers if stored_as is None else stored_as).tolist(),
            _row_bytes(state.records[customers]),
            _row_bytes(state.rolling_totals[customers]) if state.rolling_months else [None] * len(customers),
            _row_bytes(state.tier_reached_month[customers]) if state.reached_tiers else [None] * len(customers),
        ),
    )


def add_customers(connection: sqlite3.Connection, state: CustomerState, first_new_index: int,
                  customers=None) -> None:
    """Insert the customers the state learned since ``first_new_index`` (in index order).

    With a customers file, new customers are inserted with its birth date, join date and
    further attributes, and customers already in the ledger are updated from it; a value
    the file leaves empty (or a column it lacks) keeps what the ledger has.
    """
    new_ids = state.customer_ids[first_new_index:]
    details: dict[str, tuple] = {}
    known: list[tuple] = []
    if customers is not None:
        attributes = (customers.attributes.to_pylist() if customers.attributes is not None
                      and customers.attributes.num_columns else [{}] * len(customers))
        rows = zip(_date_text(customers.birth_date), _date_text(customers.joined_on),
                   [json.dumps(row, default=str) if row else None for row in attributes],
                   customers.customer_id.to_pylist())
        indices = state.index_of(customers.customer_id)
        for index, row in zip(indices.tolist(), rows):
            if index >= first_new_index:
                details[row[3]] = row[:3]
            else:
                known.append(row)
    empty = (None, None, None)
    connection.executemany(
        "INSERT INTO customers (customer_index, customer_id, birth_date, joined_on, attributes) "
        "VALUES (?, ?, ?, ?, ?)",
        ((index, customer_id, *details.get(customer_id, empty))
         for index, customer_id in enumerate(new_ids, start=first_new_index)),
    )
    connection.executemany(
        "UPDATE customers SET birth_date = COALESCE(?, birth_date), joined_on = COALESCE(?, joined_on), "
        "attributes = COALESCE(?, attributes) WHERE customer_id = ?", known)


def customer_index_of(ledger: Ledger, customer_id: str) -> int:
    """The ledger's index of a customer; :class:`UnknownCustomer` if there is none."""
    row = ledger.db.execute("SELECT customer_index FROM customers WHERE customer_id = ?", (customer_id,)).fetchone()
    if row is None:
        raise UnknownCustomer(f"unknown customer {customer_id!r}")
    return row[0]


def customer_ids_of(ledger: Ledger, indices: list[int]) -> list[str]:
    """External ids of customer indices, in the same order."""
    found = dict(ledger.db.execute(
        "SELECT customer_index, customer_id FROM customers WHERE customer_index IN (SELECT value FROM json_each(?))",
        (json.dumps(indices),)).fetchall())
    return [found[index] for index in indices]
