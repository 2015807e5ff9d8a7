"""The ledger: a chain's loyalty history in SQLite (the embedded default).

What it holds and why:

- ``program_versions``: every program that scored a receipt, with its text and hash, so a
  receipt's points can always be traced to the rules that gave them. Versions carry an
  ``effective_from`` date for the day programs change mid-history.
- ``customers``: external id (card number, often with leading zeros) ↔ the dense
  ``customer_index`` the kernel's state arrays use, plus birth date and attributes.
- ``customer_state``: the kernel's per-customer state record, so a later load continues
  each customer's history exactly where the last one stopped.
- ``receipts``: one row per scored receipt — its facts, the points of each rule, the
  context a return needs to be re-scored, and its lines as one compact msgpack value.
- ``journal``: every change to a balance (earn, redeem, expire, reverse, adjust). A
  customer's balance is the sum of their journal, always.
- ``lots``: points earned by a customer in one local month, consumed oldest first.
- ``runs``: each batch job execution, for idempotency, resume and audit.

Writers take ``BEGIN IMMEDIATE`` so concurrent writers queue instead of failing half-way;
readers never block writers (WAL).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pyarrow as pa
import sqlite_utils
from sqlite_utils.migrations import Migrations

from ..localtime import instant_month, month_first_day
from ..program.model import Program, parse_program
from ..state import CUSTOMER_STATE_DTYPE, CustomerState
from ..errors import IdempotencyConflict, InsufficientPoints, LedgerBusy, LedgerError, RedemptionError, UnknownCustomer

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None

if TYPE_CHECKING:
    from ..program.tables import CompiledProgram
    from ..returns import OriginalReceipt

BUSY_TIMEOUT_MS = 10_000
#: Page cache per connection: bulk loads insert into large B-trees in key order of receipt ids,
#: which is not time order; the default 2 MB cache makes every insert a disk read.
CACHE_KIB = 256 * 1024
#: A receipt's lines as stored: fixed-width records, so a chunk's lines are one buffer and each
#: receipt's value is a slice of it (no per-receipt encoding in Python).
LINE_DTYPE = np.dtype([("category_id", "<i4"), ("sku_id", "<i4"), ("qty", "<i4"), ("amount_minor", "<i8")])
JOURNAL_KINDS = ("earn", "redeem", "expire", "reverse", "adjust")

migrations = Migrations("fidelis")


#: API keys read ``fid_<key id>_<secret>``; roles, each allowing what the ones before it do.
API_KEY_PREFIX = "fid"
API_ROLES = ("read", "write")


@dataclass(frozen=True)
class Redemption:
    """A recorded redemption; ``existing`` when the key had already been redeemed."""

    customer_id: str
    points: int
    reference: str
    entry_id: int
    balance: int
    existing: bool


@migrations()
def m001_initial_schema(db: sqlite_utils.Database) -> None:
    kinds = ", ".join(f"'{kind}'" for kind in JOURNAL_KINDS)
    db.executescript(
        f"""
        CREATE TABLE program_versions (
            version INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            source TEXT NOT NULL,
            text TEXT NOT NULL,
            effective_from TEXT,              -- local date; NULL = from the first receipt
            created_at TEXT NOT NULL
        );
        CREATE TABLE customers (
            customer_index INTEGER PRIMARY KEY,   -- the kernel's dense index
            customer_id TEXT NOT NULL UNIQUE,
            birth_date TEXT,
            joined_on TEXT,
            attributes TEXT                   -- JSON object of further columns
        );
        CREATE TABLE customer_state (
            customer_index INTEGER PRIMARY KEY REFERENCES customers(customer_index),
            record BLOB NOT NULL,             -- customer_state_t (see core/_types.pxd)
            rolling_totals BLOB,              -- 12 × int64, rolling 12-month period only
            tier_reached_month BLOB           -- tiers × int32, months hold only
        );
        CREATE TABLE categories (
            category_id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE
        );
        CREATE TABLE skus (
            sku_id INTEGER PRIMARY KEY,       -- 0 = a line without a sku
            sku TEXT NOT NULL UNIQUE
        );
        CREATE TABLE runs (
            run_id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            arguments TEXT NOT NULL,          -- JSON
            input_hashes TEXT NOT NULL,       -- JSON: file -> sha256
            started_at TEXT NOT NULL,
            ended_at TEXT,
            status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
            counts TEXT NOT NULL DEFAULT '{{}}'   -- JSON
        );
        CREATE TABLE receipts (
            receipt_id TEXT PRIMARY KEY,
            customer_index INTEGER,           -- NULL = anonymous
            store_id TEXT NOT NULL,
            instant_us INTEGER NOT NULL,
            local_day INTEGER NOT NULL,
            amount_minor INTEGER NOT NULL,    -- all lines
            tier INTEGER,                     -- status tier at the receipt; NULL = anonymous
            rate_points INTEGER NOT NULL,
            basket_points INTEGER NOT NULL,
            visit_points INTEGER NOT NULL,
            welcome_points INTEGER NOT NULL,
            cap_points INTEGER NOT NULL,
            points INTEGER NOT NULL,
            content_hash INTEGER NOT NULL,    -- 64-bit fingerprint of the receipt's content
            lines BLOB NOT NULL,              -- LINE_DTYPE records: category_id, sku_id, qty, amount_minor
            program_version INTEGER NOT NULL REFERENCES program_versions(version),
            run_id INTEGER NOT NULL REFERENCES runs(run_id)
        ) WITHOUT ROWID;
        CREATE INDEX receipts_by_customer ON receipts(customer_index, instant_us);
        CREATE TABLE journal (
            entry_id INTEGER PRIMARY KEY,
            customer_index INTEGER NOT NULL REFERENCES customers(customer_index),
            kind TEXT NOT NULL CHECK (kind IN ({kinds})),
            points INTEGER NOT NULL,
            instant_us INTEGER NOT NULL,
            reference TEXT NOT NULL,          -- receipt id, redemption key, …
            run_id INTEGER REFERENCES runs(run_id)
        );
        CREATE INDEX journal_by_customer ON journal(customer_index, entry_id);
        CREATE TABLE lots (
            customer_index INTEGER NOT NULL REFERENCES customers(customer_index),
            earned_month INTEGER NOT NULL,    -- local month, (year - 1970) * 12 + month - 1
            points_earned INTEGER NOT NULL,
            points_remaining INTEGER NOT NULL CHECK (points_remaining >= 0),
            expires_on INTEGER,               -- local day; NULL = never
            PRIMARY KEY (customer_index, earned_month)
        ) WITHOUT ROWID;
        """
    )


@migrations()
def m002_state_generation(db: sqlite_utils.Database) -> None:
    """A counter every write of customer state moves, so writers can detect each other."""
    db.executescript(
        """
        CREATE TABLE ledger_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO ledger_meta VALUES ('state_generation', 0);
        """
    )


@migrations()
def m003_journal_kind_check_without_in(db: sqlite_utils.Database) -> None:
    """The journal's kind check as comparisons: SQLite evaluates ``IN (list)`` in a CHECK by
    building a lookup table on every insert, which halved the journal's insert rate."""
    kinds = " OR ".join(f"kind = '{kind}'" for kind in JOURNAL_KINDS)
    # statement by statement: executescript would commit the migration's transaction first
    statements = f"""
        CREATE TABLE journal_new (
            entry_id INTEGER PRIMARY KEY,
            customer_index INTEGER NOT NULL REFERENCES customers(customer_index),
            kind TEXT NOT NULL CHECK ({kinds}),
            points INTEGER NOT NULL,
            instant_us INTEGER NOT NULL,
            reference TEXT NOT NULL,          -- receipt id, redemption key, …
            run_id INTEGER REFERENCES runs(run_id)
        );
        INSERT INTO journal_new SELECT entry_id, customer_index, kind, points, instant_us, reference, run_id
            FROM journal;
        DROP TABLE journal;
        ALTER TABLE journal_new RENAME TO journal;
        CREATE INDEX journal_by_customer ON journal(customer_index, entry_id)
        """
    for statement in statements.split(";"):
        db.execute(statement)


@migrations()
def m004_redemptions_and_notes(db: sqlite_utils.Database) -> None:
    """A note on each journal entry (an adjustment's reason) and redemption keys made unique."""
    db.execute("ALTER TABLE journal ADD COLUMN note TEXT")
    db.execute("CREATE UNIQUE INDEX journal_redemption_keys ON journal(reference) WHERE kind = 'redeem'")


@migrations()
def m005_month_closes(db: sqlite_utils.Database) -> None:
    """Month-end: each close, each customer's status at the last close, and tier movements."""
    db.execute("""
        CREATE TABLE month_closes (
            month INTEGER PRIMARY KEY,          -- local month, (year - 1970) * 12 + month - 1
            run_id INTEGER NOT NULL REFERENCES runs(run_id),
            closed_at TEXT NOT NULL,
            expired_points INTEGER NOT NULL,
            customers_expired INTEGER NOT NULL,
            movements INTEGER NOT NULL,
            journal_before INTEGER NOT NULL     -- the last journal entry before the close's own
        )""")
    db.execute("""
        CREATE TABLE customer_status (          -- status as of the day after the last close;
            customer_index INTEGER PRIMARY KEY REFERENCES customers(customer_index),
            tier INTEGER NOT NULL               -- a customer without a row has the first tier
        )""")
    db.execute("""
        CREATE TABLE tier_movements (
            month INTEGER NOT NULL,             -- the month whose close moved the customer
            customer_index INTEGER NOT NULL REFERENCES customers(customer_index),
            from_tier INTEGER NOT NULL,
            to_tier INTEGER NOT NULL,
            PRIMARY KEY (month, customer_index)
        ) WITHOUT ROWID""")


@migrations()
def m006_lots_due_index(db: sqlite_utils.Database) -> None:
    """Lots that can still expire, by expiry day: a month-end close reads only those due.

    Partial, so programs without expiry (and spent lots) cost nothing to index.
    """
    db.execute("CREATE INDEX lots_due ON lots(expires_on) WHERE expires_on IS NOT NULL AND points_remaining > 0")


#: Rebuilds the scoring context of stored sale receipts (m007): the visit rank among the
#: customer's receipts of the local month, the points earned earlier that local day (after
#: caps, without welcome points), and whether the receipt is in the customer's birth month.
CONTEXT_BACKFILL = (
    """WITH context AS (
        SELECT receipt_id,
            ROW_NUMBER() OVER (PARTITION BY customer_index, strftime('%Y-%m', local_day * 86400, 'unixepoch')
                               ORDER BY instant_us, receipt_id) AS visit_rank,
            COALESCE(SUM(points - welcome_points) OVER (
                PARTITION BY customer_index, local_day ORDER BY instant_us, receipt_id
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS earned_before_today
        FROM receipts WHERE customer_index IS NOT NULL)
    UPDATE receipts SET visit_rank = context.visit_rank, earned_before_today = context.earned_before_today
    FROM context WHERE receipts.receipt_id = context.receipt_id""",
    """UPDATE receipts SET birthday = 1 WHERE customer_index IS NOT NULL AND strftime('%m', local_day * 86400,
        'unixepoch') = (SELECT substr(birth_date, 6, 2) FROM customers c
                        WHERE c.customer_index = receipts.customer_index)""",
)


@migrations()
def m007_returns(db: sqlite_utils.Database) -> None:
    """Returns: receipts that take goods back, the context a return re-scores its original in,
    and debts (points taken back after they were spent, under ``negative_balance = "allow"``).

    The context of receipts loaded before is rebuilt from their neighbours: the visit rank
    among the customer's receipts of the local month, the points earned earlier that day,
    and whether the receipt is in the customer's birth month.
    """
    for statement in (
        "ALTER TABLE receipts ADD COLUMN original_receipt_id TEXT",  # a return: the receipt it returns
        "ALTER TABLE receipts ADD COLUMN visit_rank INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE receipts ADD COLUMN earned_before_today INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE receipts ADD COLUMN birthday INTEGER NOT NULL DEFAULT 0",
        # floor_zero: what a return could not take back because it was spent
        "ALTER TABLE receipts ADD COLUMN unrecovered_points INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX receipts_returns ON receipts(original_receipt_id) WHERE original_receipt_id IS NOT NULL",
        """CREATE TABLE debts (
            customer_index INTEGER PRIMARY KEY REFERENCES customers(customer_index),
            points INTEGER NOT NULL CHECK (points > 0)
        )""",
        *CONTEXT_BACKFILL,
    ):
        db.execute(statement)


@migrations()
def m008_api_keys(db: sqlite_utils.Database) -> None:
    """API keys of the HTTP server: only a SHA-256 of each key's secret is kept."""
    db.execute("""
        CREATE TABLE api_keys (
            key_id TEXT PRIMARY KEY,            -- the key's public part, to find it and to revoke it
            secret_sha256 TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role = 'read' OR role = 'write'),
            name TEXT,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        )""")


def _row_bytes(rows: np.ndarray) -> list[bytes]:
    """Each row of a 1- or 2-D array as its own bytes value, without a Python loop over rows."""
    width = rows.itemsize * (rows.shape[1] if rows.ndim == 2 else 1)
    data = pa.py_buffer(np.ascontiguousarray(rows).tobytes())
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(rows), [None, data]).to_pylist()


def _date_text(dates: np.ndarray) -> list[str | None]:
    """Dates as ISO text, None where unknown."""
    return pa.array(dates.astype("datetime64[D]"), pa.date32()).cast(pa.string()).to_pylist()


def _now_us() -> int:
    return time.time_ns() // 1000


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Standing:
    """A customer's balance and status, as a till or an app shows it."""

    customer_id: str
    points: int
    tier: str
    #: Qualifying total so far, in the measure's units (minor units of spend, visits or points).
    qualifying_total: int
    next_tier: str | None
    #: How much more of the measure reaches ``next_tier`` (None at the top tier).
    to_next_tier: int | None
    #: The ledger's index of the customer.
    customer_index: int = -1


@dataclass(frozen=True)
class ProgramVersion:
    version: int
    program: Program


class Ledger:
    """A handle on one ledger file; cheap to open, one per thread or request."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise LedgerError(f"{self.path}: no ledger here; create one with `fidelis init {self.path} --program FILE`")
        try:
            # look before touching: switching another application's file to WAL would change it
            probe = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                is_ledger = probe.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'program_versions'").fetchone()
            finally:
                probe.close()
            if not is_ledger:
                raise LedgerError(f"{self.path}: this SQLite file is not a Fidelis ledger; it was left untouched")
            self.db = self._connect(self.path)
            self._memo: dict[str, object] = {}
            self._memo_version = None
            self._reading = False
            self._writer_lock: int | None = None  # descriptor of <ledger>-writer; -1: none to be had
            if migrations.pending(self.db):
                migrations.apply(self.db)
        except sqlite3.DatabaseError as error:
            raise LedgerError(f"{self.path}: cannot open the ledger: {error}") from None

    @staticmethod
    def _connect(path: Path) -> sqlite_utils.Database:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                     check_same_thread=False)
        db = sqlite_utils.Database(connection)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.enable_wal()
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        db.execute("PRAGMA foreign_keys = ON")
        return db

    @classmethod
    def create(cls, path: str | Path, program: Program) -> "Ledger":
        """A new ledger scoring with ``program``; refuses to overwrite an existing file."""
        path = Path(path)
        if path.exists():
            raise LedgerError(f"{path}: a file already exists here; choose another path")
        if not path.parent.is_dir():
            raise LedgerError(f"{path}: the folder {path.parent} does not exist")
        db = cls._connect(path)
        migrations.apply(db)
        db.close()
        ledger = cls(path)
        ledger.set_program(program)
        return ledger

    def close(self) -> None:
        if getattr(self, "_writer_lock", None) is not None and self._writer_lock >= 0:
            os.close(self._writer_lock)
        self._writer_lock = None
        self.db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (``BEGIN IMMEDIATE``): all or nothing.

        Writers first queue on a lock file beside the ledger (``<ledger>-writer``): SQLite's
        own wait for its write lock sleeps 1, 2, 5, 10… ms between tries, which leaves the
        machine idle while many small writes (real-time accruals from several server
        processes) take turns; the lock file is polled every 0.1–1 ms instead.
        """
        connection = self.db.conn
        if connection.in_transaction:
            raise LedgerError("a write was started inside another on the same ledger handle")
        self._queue_for_write()
        try:
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                raise LedgerBusy(f"{self.path}: another process is writing to the ledger ({error}); "
                                 "try again when it has finished") from None
            self._memo.clear()
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                self._memo.clear()
                raise
            connection.execute("COMMIT")
            self._memo.clear()
        finally:
            if self._writer_lock >= 0:
                fcntl.flock(self._writer_lock, fcntl.LOCK_UN)

    def _queue_for_write(self) -> None:
        if self._writer_lock is None:
            opened = self._open_writer_lock()
            self._writer_lock = -1 if opened is None else opened
        if self._writer_lock < 0:  # no lock file here: SQLite's own busy wait alone
            return
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.0001
        while True:
            try:
                fcntl.flock(self._writer_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LedgerBusy(f"{self.path}: another process has been writing to the ledger for "
                                     f"{BUSY_TIMEOUT_MS // 1000} s; try again when it has finished") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.001)

    def _open_writer_lock(self) -> int | None:
        """The lock file's descriptor, created with the ledger file's permissions (as SQLite
        creates ``-wal``); None where it cannot be (no POSIX locks, a folder we cannot write),
        and writers then queue on SQLite's lock alone, as before."""
        if fcntl is None:
            return None
        try:
            return os.open(self.path.with_name(self.path.name + "-writer"), os.O_RDONLY | os.O_CREAT,
                           self.path.stat().st_mode & 0o666)
        except OSError:
            return None

    def _remembered(self, name: str, compute):
        """``compute()``, remembered until the ledger changes.

        SQLite's ``data_version`` moves whenever another connection commits; this handle's
        own writes clear the memory themselves (:meth:`write`). A lookup then asks the
        program, the last close and the like once per change instead of once per request.
        """
        if not self._reading:
            if self.db.conn.in_transaction:  # this handle's own write: nothing is remembered
                return compute()
            self._check_memo()
        if name not in self._memo:
            self._memo[name] = compute()
        return self._memo[name]

    def _check_memo(self) -> None:
        version = self.db.conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._memo_version:
            self._memo.clear()
            self._memo_version = version

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One read transaction around several lookups: they see one consistent snapshot, and
        take SQLite's read lock once instead of once per statement (a lookup's main cost)."""
        connection = self.db.conn
        if connection.in_transaction:
            yield
            return
        connection.execute("BEGIN")
        try:
            self._check_memo()
            self._reading = True
            yield
        finally:
            self._reading = False
            connection.execute("COMMIT")

    # ---- program -----------------------------------------------------------------------
    def current_program(self) -> ProgramVersion:
        """The program receipts are scored with; parsed once per version per handle."""
        row = self._remembered("program", lambda: self.db.execute(
            "SELECT version, sha256 FROM program_versions ORDER BY version DESC LIMIT 1").fetchone())
        if row is None:
            raise LedgerError(f"{self.path}: the ledger has no program")
        cached = getattr(self, "_program", None)
        if cached is None or (cached.version, cached.program.sha256) != row:
            source, text = self.db.execute(
                "SELECT source, text FROM program_versions WHERE version = ?", (row[0],)).fetchone()
            self._program = ProgramVersion(row[0], parse_program(text, source=source))
        return self._program

    def compiled_program(self) -> tuple[Program, "CompiledProgram"]:
        """The current program and its kernel tables, compiled once per version per handle.

        A balance lookup needs the tables; compiling them on every request would cost more
        than the lookup itself.
        """
        from ..program.tables import compile_program

        version = self.current_program()
        cached = getattr(self, "_compiled", None)
        if cached is None or cached[0] is not version:
            self._compiled = (version, compile_program(version.program))
        return version.program, self._compiled[1]

    def set_program(self, program: Program) -> int:
        """Store ``program`` as the ledger's program; refused once receipts were scored.

        Setting the same program again is a no-op. Program versions effective from a date
        will lift the refusal; until then a different program needs a new ledger.
        """
        with self.write() as connection:
            existing = connection.execute(
                "SELECT version, sha256 FROM program_versions ORDER BY version DESC LIMIT 1"
            ).fetchone()
            if existing and existing[1] == program.sha256:
                return existing[0]
            if existing and connection.execute("SELECT 1 FROM receipts LIMIT 1").fetchone():
                raise LedgerError(
                    f"{self.path}: the ledger has scored receipts with program version {existing[0]}; "
                    "changing the program of a ledger with history is not supported yet "
                    "(create a new ledger for a new program)"
                )
            connection.execute("DELETE FROM program_versions")
            cursor = connection.execute(
                "INSERT INTO program_versions (sha256, name, source, text, created_at) VALUES (?, ?, ?, ?, ?)",
                (program.sha256, program.info.name, program.source, program.text, _now()),
            )
            return cursor.lastrowid

    # ---- customer state ----------------------------------------------------------------
    def state_generation(self) -> int:
        """Moves whenever customer state is written; read it with the state you score from."""
        return self.db.execute("SELECT value FROM ledger_meta WHERE key = 'state_generation'").fetchone()[0]

    def advance_state_generation(self, connection: sqlite3.Connection, expected: int) -> int:
        """Inside a write: refuse if another writer moved the state since ``expected``.

        Scoring reads customer state before writing what it scored; if another process
        wrote state in between, this run's scores rest on a stale history and must not land.
        """
        self.check_state_generation(
            connection, expected, "another process wrote to the ledger while this load was running; nothing of "
            "this load's last step was written — run it again (what is already loaded is skipped)")
        connection.execute("UPDATE ledger_meta SET value = ? WHERE key = 'state_generation'", (expected + 1,))
        return expected + 1

    def check_state_generation(self, connection: sqlite3.Connection, expected: int, message: str) -> None:
        """Inside a write: refuse, with ``message``, if customer state moved since ``expected``."""
        current = connection.execute("SELECT value FROM ledger_meta WHERE key = 'state_generation'").fetchone()[0]
        if current != expected:
            raise LedgerError(f"{self.path}: {message}")


    def load_state(self, state: CustomerState) -> None:
        """Fill ``state`` with every stored customer and their scoring state.

        The directory order is the stored ``customer_index``, so indices stay stable across
        loads.
        """
        customers = self.db.execute("SELECT customer_id, birth_date FROM customers ORDER BY customer_index").fetchall()
        ids = [row[0] for row in customers]
        if ids and not np.array_equal(state.index_of(ids), np.arange(len(ids))):
            raise LedgerError(f"{self.path}: customer indices are not dense; run `fidelis check`")
        birth_months = np.array([int(row[1][5:7]) if row[1] else 0 for row in customers], dtype=np.int8)
        rows = self.db.execute(
            "SELECT customer_index, record, rolling_totals, tier_reached_month FROM customer_state"
        ).fetchall()
        if rows:
            self._fill_state(state, rows)
        # the customers table is where birth dates live; the state's copy follows it
        known = birth_months > 0
        state.records["birth_month"][: len(ids)][known] = birth_months[known]

    def reload_state(self, state: CustomerState, customers: np.ndarray) -> None:
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
        births = dict(self.db.execute("SELECT customer_index, birth_date FROM customers "
                                      "WHERE customer_index IN (SELECT value FROM json_each(?))", (block,)).fetchall())
        state.records["birth_month"][customers] = [int(births[i][5:7]) if births.get(i) else 0
                                                   for i in customers.tolist()]
        rows = self.db.execute("SELECT customer_index, record, rolling_totals, tier_reached_month FROM customer_state "
                               "WHERE customer_index IN (SELECT value FROM json_each(?))", (block,)).fetchall()
        if rows:
            self._fill_state(state, rows)

    def stored_state_arrays(self, compiled: "CompiledProgram") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every customer's stored state as arrays by customer index (records, rolling totals,
        tiers reached), without the id directory: what status at month end needs, and half the
        cost of :meth:`load_state` on a large ledger."""
        count = self.db.execute("SELECT COUNT(*) FROM customers").fetchone()[0]
        state = CustomerState.for_program(compiled, capacity=max(count, 1))
        rows = self.db.execute(
            "SELECT customer_index, record, rolling_totals, tier_reached_month FROM customer_state").fetchall()
        if rows:
            self._fill_state(state, rows)
        return state.records[:count], state.rolling_totals[:count], state.tier_reached_month[:count]

    def customer_details(self, indices: np.ndarray) -> tuple[list[str], np.ndarray]:
        """External ids and birth months (1..12, 0 unknown; int8) of customers, by index."""
        indices = np.asarray(indices).tolist()
        rows = {index: (customer_id, birth_date) for index, customer_id, birth_date in self.db.execute(
            "SELECT customer_index, customer_id, birth_date FROM customers "
            "WHERE customer_index IN (SELECT value FROM json_each(?))", (json.dumps(indices),))}
        ids = [rows[index][0] for index in indices]
        births = [rows[index][1] for index in indices]
        return ids, np.array([int(birth[5:7]) if birth else 0 for birth in births], dtype=np.int8)

    @staticmethod
    def _fill_state(state: CustomerState, rows: list[tuple]) -> None:
        """Copy stored ``customer_state`` rows (index, record, rolling, reached) into ``state``."""
        index = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        state.records[index] = np.frombuffer(b"".join(row[1] for row in rows), dtype=CUSTOMER_STATE_DTYPE)
        if state.rolling_months:
            state.rolling_totals[index] = np.frombuffer(
                b"".join(row[2] for row in rows), dtype=np.int64).reshape(len(rows), 12)
        if state.reached_tiers:
            state.tier_reached_month[index] = np.frombuffer(
                b"".join(row[3] for row in rows), dtype=np.int32).reshape(len(rows), state.tier_count)

    def customer_states(self, compiled: "CompiledProgram", customer_ids: list[str]) -> tuple[CustomerState, np.ndarray]:
        """The stored state of some customers, for scoring a few receipts without the whole
        directory: a state holding the known ones (in the order given, unknown ids left out)
        and the stored index of each of its customers."""
        rows = self.db.execute(
            "SELECT customer_index, customer_id, birth_date FROM customers "
            "WHERE customer_id IN (SELECT value FROM json_each(?))", (json.dumps(list(dict.fromkeys(customer_ids))),)
        ).fetchall()
        state = CustomerState.for_program(compiled, capacity=max(len(rows), 1))
        stored_index = np.array([row[0] for row in rows], dtype=np.int64)
        if rows:
            state.index_of([row[1] for row in rows])
            local = {index: position for position, index in enumerate(stored_index.tolist())}
            stored = self.db.execute(
                "SELECT customer_index, record, rolling_totals, tier_reached_month FROM customer_state "
                "WHERE customer_index IN (SELECT value FROM json_each(?))", (json.dumps(stored_index.tolist()),)
            ).fetchall()
            if stored:
                self._fill_state(state, [(local[row[0]], *row[1:]) for row in stored])
            births = np.array([int(row[2][5:7]) if row[2] else 0 for row in rows], dtype=np.int8)
            state.records["birth_month"][:len(rows)][births > 0] = births[births > 0]
        return state, stored_index

    def insert_customers(self, connection: sqlite3.Connection, customer_ids: list[str]) -> np.ndarray:
        """Add new customers (no details) at the next indices, inside the caller's transaction."""
        first = connection.execute("SELECT COALESCE(MAX(customer_index), -1) + 1 FROM customers").fetchone()[0]
        connection.executemany("INSERT INTO customers (customer_index, customer_id) VALUES (?, ?)",
                               enumerate(customer_ids, start=first))
        return np.arange(first, first + len(customer_ids), dtype=np.int64)

    def save_state(self, connection: sqlite3.Connection, state: CustomerState, customers: np.ndarray,
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

    def add_customers(self, connection: sqlite3.Connection, state: CustomerState, first_new_index: int,
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

    # ---- vocabularies and receipts -------------------------------------------------------
    def vocabulary_ids(self, connection: sqlite3.Connection, table: str, names: list[str]) -> np.ndarray:
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

    def last_receipt_at(self, customer_index: int, instant_us: int) -> str | None:
        """The customer's last receipt id (in processing order) at exactly ``instant_us``."""
        row = self.db.execute(
            "SELECT MAX(receipt_id) FROM receipts WHERE customer_index = ? AND instant_us = ?",
            (customer_index, instant_us),
        ).fetchone()
        return row[0]

    def receipt_results(self, connection: sqlite3.Connection, receipt_ids: list[str]) -> dict[str, tuple]:
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

    def realtime_run(self, connection: sqlite3.Connection) -> int:
        """The run real-time accruals through this handle are recorded under (one per handle)."""
        run_id = getattr(self, "_realtime_run_id", None)
        # (a run started in a transaction that was rolled back is gone: start another)
        if run_id is None or connection.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            run_id = self._realtime_run_id = self.start_run(connection, "realtime", {"process": os.getpid()}, {})
        return run_id

    @staticmethod
    def current_state_generation(connection: sqlite3.Connection) -> int:
        return connection.execute("SELECT value FROM ledger_meta WHERE key = 'state_generation'").fetchone()[0]

    def existing_receipts(self, receipt_ids: list[str]) -> dict[str, int]:
        """Receipt id -> stored content fingerprint, for the ids already in the ledger."""
        if not self.db.execute("SELECT 1 FROM receipts LIMIT 1").fetchone():
            return {}
        found: dict[str, int] = {}
        # ids go in as one JSON array per block: no temporary table to write, no variable limit
        for start in range(0, len(receipt_ids), 50_000):
            found.update(self.db.execute(
                "SELECT receipt_id, content_hash FROM receipts WHERE receipt_id IN (SELECT value FROM json_each(?))",
                (json.dumps(receipt_ids[start:start + 50_000]),),
            ).fetchall())
        return found

    # ---- runs and scored receipts --------------------------------------------------------
    @staticmethod
    def start_run(connection: sqlite3.Connection, kind: str, arguments: dict, input_hashes: dict) -> int:
        """Record a batch job that is starting (inside the caller's transaction)."""
        return connection.execute(
            "INSERT INTO runs (kind, arguments, input_hashes, started_at, status) "
            "VALUES (?, ?, ?, datetime('now'), 'running')",
            (kind, json.dumps(arguments, sort_keys=True), json.dumps(input_hashes, sort_keys=True)),
        ).lastrowid

    def finish_run(self, run_id: int, status: str, counts: dict) -> None:
        with self.write() as connection:
            connection.execute("UPDATE runs SET status = ?, ended_at = datetime('now'), counts = ? WHERE run_id = ?",
                               (status, json.dumps(counts), run_id))

    def append_scored(self, connection: sqlite3.Connection, receipts, earn_entries,
                      lots: tuple[np.ndarray, np.ndarray, np.ndarray], program_version: int, run_id: int,
                      returns: list[tuple[str, int, int, int]] = ()) -> int:
        """Scored receipts, their earn entries, the points they add to lots, and returns.

        ``receipts`` rows: receipt id, customer index (-1 anonymous), store id, instant,
        local day, amount, tier (-1 anonymous), rate, basket, visit, welcome and cap points,
        points, content fingerprint, lines, original receipt id (None on a sale), visit rank,
        points earned earlier that day, birthday. ``earn_entries``: customer index, points,
        instant, receipt id. ``lots``: see :meth:`add_to_lots`. ``returns``: (return id,
        customer index, points taken back > 0, instant) in processing order, taken back
        after the chunk's earnings (see :meth:`take_back`). Returns the points returns could
        not take back.
        """
        connection.executemany(
            "INSERT INTO receipts (receipt_id, customer_index, store_id, instant_us, local_day, amount_minor, tier, "
            "rate_points, basket_points, visit_points, welcome_points, cap_points, points, content_hash, lines, "
            "original_receipt_id, visit_rank, earned_before_today, birthday, program_version, run_id) "
            "VALUES (?, NULLIF(?, -1), ?, ?, ?, ?, NULLIF(?, -1), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            f"{int(program_version)}, {int(run_id)})",
            receipts,
        )
        connection.executemany(
            "INSERT INTO journal (customer_index, kind, points, instant_us, reference, run_id) "
            f"VALUES (?, 'earn', ?, ?, ?, {int(run_id)})",
            earn_entries,
        )
        self.add_to_lots(connection, *lots)
        return sum(self.take_back(connection, customer, points, instant_us, return_id, run_id)
                   for return_id, customer, points, instant_us in returns)

    def take_back(self, connection: sqlite3.Connection, customer: int, points: int, instant_us: int,
                  return_id: str, run_id: int | None) -> int:
        """A return's points taken back: a journal ``reverse`` entry; the points not recovered.

        Points still held come out of the oldest lots. Points already spent (the balance at
        the return's instant is short) are, under the program's ``negative_balance``:
        ``allow``, taken anyway — the balance goes negative and the debt is paid first from
        later earnings; ``floor_zero``, not taken — recorded on the return as unrecovered.
        """
        policy = self.current_program().program.returns.negative_balance
        held = connection.execute("SELECT COALESCE(SUM(points_remaining), 0) FROM lots WHERE customer_index = ?",
                                  (customer,)).fetchone()[0]
        if policy == "floor_zero":
            at_instant = connection.execute(
                "SELECT COALESCE(SUM(points), 0) FROM journal WHERE customer_index = ? AND instant_us <= ?",
                (customer, instant_us)).fetchone()[0]
            taken = max(0, min(points, at_instant, held))
        else:
            taken = points
        from_lots = min(taken, held)
        if from_lots:
            self._take_from_lots(connection, customer, from_lots)
        if taken > from_lots:
            connection.execute("INSERT INTO debts (customer_index, points) VALUES (?, ?) ON CONFLICT(customer_index) "
                               "DO UPDATE SET points = points + excluded.points", (customer, taken - from_lots))
        if taken:
            connection.execute(
                "INSERT INTO journal (customer_index, kind, points, instant_us, reference, run_id) "
                "VALUES (?, 'reverse', ?, ?, ?, ?)", (customer, -taken, instant_us, return_id, run_id))
        unrecovered = points - taken
        if unrecovered:
            connection.execute("UPDATE receipts SET unrecovered_points = ? WHERE receipt_id = ?",
                               (unrecovered, return_id))
        return unrecovered

    def _settle_debts(self, connection: sqlite3.Connection, customers: np.ndarray) -> None:
        """Pay the debts of ``customers`` from their lots, oldest first, as far as they reach."""
        if connection.execute("SELECT 1 FROM debts LIMIT 1").fetchone() is None:
            return
        owing = connection.execute(
            "SELECT d.customer_index, d.points, (SELECT COALESCE(SUM(points_remaining), 0) FROM lots l "
            "WHERE l.customer_index = d.customer_index) FROM debts d "
            "WHERE d.customer_index IN (SELECT value FROM json_each(?))",
            (json.dumps(np.unique(np.asarray(customers)).tolist()),)).fetchall()
        for customer, debt, held in owing:
            paid = min(debt, held)
            if not paid:
                continue
            self._take_from_lots(connection, customer, paid)
            if paid == debt:
                connection.execute("DELETE FROM debts WHERE customer_index = ?", (customer,))
            else:
                connection.execute("UPDATE debts SET points = points - ? WHERE customer_index = ?", (paid, customer))

    def stored_originals(self, receipt_ids: list[str]) -> dict[str, "OriginalReceipt"]:
        """Stored sale receipts a return may refer to, with the returns stored of them."""
        from ..returns import OriginalReceipt

        if not receipt_ids or not self.db.execute("SELECT 1 FROM receipts LIMIT 1").fetchone():
            return {}
        zone = self.current_program().program.info.zone()
        categories = self.category_names()
        skus = dict(self.db.execute("SELECT sku_id, sku FROM skus").fetchall())
        found = {}
        for start in range(0, len(receipt_ids), 50_000):
            block = json.dumps(receipt_ids[start:start + 50_000])
            returned: dict[str, list] = {}
            for return_id, original_id, instant_us, lines in self.db.execute(
                    "SELECT receipt_id, original_receipt_id, instant_us, lines FROM receipts "
                    "WHERE original_receipt_id IN (SELECT value FROM json_each(?))", (block,)):
                qty = np.frombuffer(lines, dtype=LINE_DTYPE)["qty"].astype(np.int64)
                returned.setdefault(original_id, []).append((instant_us, return_id, qty))
            for (receipt_id, customer_id, store_id, instant_us, local_day, tier, visit_rank, earned_before_today,
                 birthday, lines) in self.db.execute(
                    "SELECT r.receipt_id, c.customer_id, r.store_id, r.instant_us, r.local_day, r.tier, r.visit_rank, "
                    "r.earned_before_today, r.birthday, r.lines FROM receipts r "
                    "LEFT JOIN customers c USING (customer_index) "
                    "WHERE r.receipt_id IN (SELECT value FROM json_each(?)) AND r.original_receipt_id IS NULL",
                    (block,)):
                records = np.frombuffer(lines, dtype=LINE_DTYPE)
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

    def add_to_lots(self, connection: sqlite3.Connection, customers: np.ndarray, months: np.ndarray,
                    points: np.ndarray) -> None:
        """Add points to the lots of (customer index, local month earned), setting each new lot's
        expiry day from the program's ``[expiry]``."""
        expires_on = month_first_day(self.current_program().program.expiry.gone_from_month(months))
        self._add_lots(connection, customers, months, points, expires_on)
        self._settle_debts(connection, customers)

    @staticmethod
    def _add_lots(connection: sqlite3.Connection, customers, months, points, expires_on) -> None:
        connection.executemany(
            "INSERT INTO lots (customer_index, earned_month, points_earned, points_remaining, expires_on) "
            "VALUES (?1, ?2, ?3, ?3, ?4) "
            "ON CONFLICT(customer_index, earned_month) DO UPDATE SET "
            "points_earned = points_earned + excluded.points_earned, "
            "points_remaining = points_remaining + excluded.points_remaining",
            zip(np.asarray(customers).tolist(), np.asarray(months).tolist(), np.asarray(points).tolist(),
                expires_on.tolist()),
        )

    def stored_receipts(self, customers: range | np.ndarray | None = None) -> list[tuple]:
        """(receipt id, customer id, store id, instant, lines, points, original receipt id) in
        processing order.

        ``customers``: only the receipts of those customer indices (a range or an array; no
        anonymous receipts then).
        """
        where, parameters = "", ()
        if isinstance(customers, range):
            where, parameters = "WHERE r.customer_index >= ? AND r.customer_index < ? ", (customers.start, customers.stop)
        elif customers is not None:
            where = "WHERE r.customer_index IN (SELECT value FROM json_each(?)) "
            parameters = (json.dumps(np.asarray(customers).tolist()),)
        return self.db.execute(
            "SELECT r.receipt_id, c.customer_id, r.store_id, r.instant_us, r.lines, r.points, r.original_receipt_id "
            f"FROM receipts r LEFT JOIN customers c USING (customer_index) {where}"
            "ORDER BY r.instant_us, r.receipt_id", parameters
        ).fetchall()

    def category_names(self) -> list[str]:
        """Category names by ledger category id (position 0 unused)."""
        categories = dict(self.db.execute("SELECT category_id, name FROM categories").fetchall())
        return [categories.get(i, "") for i in range(max(categories, default=0) + 1)]

    # ---- invariants --------------------------------------------------------------------
    def balance_mismatches(self) -> list[tuple[str, int, int]]:
        """(customer id, Σ journal, Σ points left in lots − debt) wherever the two differ."""
        return self.db.execute(
            "WITH j AS (SELECT customer_index, SUM(points) AS points FROM journal GROUP BY customer_index), "
            "l AS (SELECT customer_index, SUM(points_remaining) AS points FROM lots GROUP BY customer_index) "
            "SELECT c.customer_id, COALESCE(j.points, 0), COALESCE(l.points, 0) - COALESCE(d.points, 0) "
            "FROM customers c LEFT JOIN j USING (customer_index) LEFT JOIN l USING (customer_index) "
            "LEFT JOIN debts d USING (customer_index) "
            "WHERE COALESCE(j.points, 0) != COALESCE(l.points, 0) - COALESCE(d.points, 0)"
        ).fetchall()

    def debts_with_points_held(self) -> list[tuple[str, int, int]]:
        """(customer id, debt, points in lots) of customers who owe points yet hold some."""
        return self.db.execute(
            "SELECT c.customer_id, d.points, SUM(l.points_remaining) FROM debts d JOIN customers c "
            "USING (customer_index) JOIN lots l USING (customer_index) GROUP BY d.customer_index "
            "HAVING SUM(l.points_remaining) > 0").fetchall()

    def anonymous_receipts_with_points(self) -> list[tuple[str, int]]:
        """(receipt id, points) of anonymous receipts stored with points, which they never earn."""
        return self.db.execute(
            "SELECT receipt_id, points FROM receipts WHERE customer_index IS NULL AND points != 0 LIMIT 20"
        ).fetchall()

    def earn_mismatches(self) -> list[tuple[str, int, int]]:
        """(receipt id, its points less what it could not take back, its journal entries' points)
        wherever the two differ: a sale's ``earn`` entries, a return's ``reverse`` entries."""
        return self.db.execute(
            "WITH e AS (SELECT reference, SUM(points) AS points FROM journal WHERE kind = 'earn' OR kind = 'reverse' "
            "GROUP BY reference) "
            "SELECT r.receipt_id, r.points + r.unrecovered_points, COALESCE(e.points, 0) FROM receipts r "
            "LEFT JOIN e ON e.reference = r.receipt_id "
            "WHERE r.customer_index IS NOT NULL AND r.points + r.unrecovered_points != COALESCE(e.points, 0)"
        ).fetchall()

    # ---- reports -----------------------------------------------------------------------
    def receipts_by_tier(self) -> dict[int, int]:
        return dict(self.db.execute(
            "SELECT tier, COUNT(*) FROM receipts WHERE tier IS NOT NULL GROUP BY tier").fetchall())

    def points_by_rule(self) -> dict[str, int]:
        names = ("rate_points", "basket_points", "visit_points", "welcome_points", "cap_points")
        sums = self.db.execute(f"SELECT {', '.join(f'SUM({name})' for name in names)} FROM receipts").fetchone()
        return {name: value or 0 for name, value in zip(names, sums)}

    def top_customer(self) -> str | None:
        """The customer with the largest balance."""
        row = self.db.execute(
            "SELECT c.customer_id FROM journal j JOIN customers c USING (customer_index) "
            "GROUP BY j.customer_index ORDER BY SUM(j.points) DESC LIMIT 1").fetchone()
        return row[0] if row else None

    # ---- redemptions and adjustments ------------------------------------------------------
    def redeem(self, customer_id: str, points: int, reference: str, *, instant_us: int | None = None) -> Redemption:
        """Spend ``points`` of a customer's balance, oldest lots first, exactly once per ``reference``.

        One ``BEGIN IMMEDIATE`` transaction reads the balance and writes the entry and the lots,
        so concurrent redemptions queue and never overdraw. The same reference again gives the
        first result (``existing``); the same reference with other points or another customer
        is an :class:`IdempotencyConflict`. Oldest lots are also the first to expire under
        every expiry rule Fidelis has, so this order never loses a customer points.
        """
        rules = self.current_program().program.redemption
        if not reference:
            raise RedemptionError("a redemption needs a reference (its idempotency key)")
        if points < rules.min_points or points % rules.multiple_of:
            raise RedemptionError(f"{points} points cannot be redeemed: the program redeems at least "
                                  f"{rules.min_points} points, in multiples of {rules.multiple_of}")
        index = self.customer_index(customer_id)
        instant_us = _now_us() if instant_us is None else instant_us
        with self.write() as connection:
            done = connection.execute(
                "SELECT entry_id, customer_index, -points FROM journal WHERE kind = 'redeem' AND reference = ?",
                (reference,)).fetchone()
            if done is not None:
                if (done[1], done[2]) != (index, points):
                    made_for = self.db.execute("SELECT customer_id FROM customers WHERE customer_index = ?",
                                               (done[1],)).fetchone()[0]
                    raise IdempotencyConflict(
                        f"redemption {reference!r} was already made for {done[2]} points of customer {made_for!r}; "
                        "use a new reference for a new redemption")
                # the first result again: the balance right after it, not today's
                after = connection.execute("SELECT COALESCE(SUM(points), 0) FROM journal WHERE customer_index = ? "
                                           "AND entry_id <= ?", (index, done[0])).fetchone()[0]
                return Redemption(customer_id, points, reference, done[0], after, True)
            balance = self._balance(connection, index)
            if balance < points:
                raise InsufficientPoints(customer_id, points, balance)
            self._take_from_lots(connection, index, points)
            entry_id = connection.execute(
                "INSERT INTO journal (customer_index, kind, points, instant_us, reference) VALUES (?, 'redeem', ?, ?, ?)",
                (index, -points, instant_us, reference)).lastrowid
            return Redemption(customer_id, points, reference, entry_id, balance - points, False)

    def adjust(self, customer_id: str, points: int, reason: str, *, instant_us: int | None = None) -> int:
        """A manual correction (goodwill, a fixed error): a journal ``adjust`` entry; the new balance.

        Points added go to the lot of the current month; points taken come from the oldest
        lots, and never below zero.
        """
        if points == 0 or not reason.strip():
            raise LedgerError("an adjustment needs points other than 0 and a reason")
        index = self.customer_index(customer_id)
        instant_us = _now_us() if instant_us is None else instant_us
        program = self.current_program().program
        with self.write() as connection:
            if points < 0:
                balance = self._balance(connection, index)
                if balance < -points:
                    raise LedgerError(f"customer {customer_id!r} has {balance} points; an adjustment cannot take "
                                      f"{-points}")
                self._take_from_lots(connection, index, -points)
            else:
                month = instant_month(instant_us, program.info.zone())
                self.add_to_lots(connection, np.array([index]), np.array([month]), np.array([points]))
            connection.execute(
                "INSERT INTO journal (customer_index, kind, points, instant_us, reference, note) "
                "VALUES (?, 'adjust', ?, ?, ?, ?)", (index, points, instant_us, f"adjust-{instant_us}", reason))
            return self._balance(connection, index)

    @staticmethod
    def _balance(connection: sqlite3.Connection, index: int) -> int:
        return connection.execute(
            "SELECT COALESCE(SUM(points), 0) FROM journal WHERE customer_index = ?", (index,)).fetchone()[0]

    @staticmethod
    def _take_from_lots(connection: sqlite3.Connection, index: int, points: int) -> None:
        """Consume ``points`` from the customer's lots, oldest first (the caller checked the balance)."""
        left = points
        for month, remaining in connection.execute(
                "SELECT earned_month, points_remaining FROM lots WHERE customer_index = ? AND points_remaining > 0 "
                "ORDER BY earned_month", (index,)).fetchall():
            taken = min(left, remaining)
            connection.execute("UPDATE lots SET points_remaining = points_remaining - ? "
                               "WHERE customer_index = ? AND earned_month = ?", (taken, index, month))
            left -= taken
            if not left:
                return
        raise LedgerError("the customer's lots hold fewer points than their journal; run `fidelis check`")

    # ---- month-end ---------------------------------------------------------------------
    def next_month_to_close(self) -> int | None:
        """The month after the last close, or the month of the first receipt; None if no receipts."""
        last = self.last_closed_month()
        if last is not None:
            return last + 1

        def first_month() -> int | None:  # reads every receipt: remembered until the ledger changes
            first = self.db.execute("SELECT MIN(instant_us) FROM receipts").fetchone()[0]
            return None if first is None else instant_month(first, self.current_program().program.info.zone())

        return self._remembered("first_month", first_month)

    def last_closed_month(self) -> int | None:
        return self._remembered("last_closed", lambda: self.db.execute(
            "SELECT MAX(month) FROM month_closes").fetchone()[0])

    @staticmethod
    def month_closed(connection: sqlite3.Connection, month: int) -> bool:
        return connection.execute("SELECT 1 FROM month_closes WHERE month = ?", (month,)).fetchone() is not None

    def close_record(self, month: int) -> tuple[int, int] | None:
        """(run id, last journal entry before it) of a month's close, or None if not closed."""
        return self.db.execute("SELECT run_id, journal_before FROM month_closes WHERE month = ?",
                               (month,)).fetchone()

    def journal_entries(self, through_entry: int) -> list[tuple]:
        """(customer index, kind, points, instant, entry id) up to an entry, by customer then entry."""
        return self.db.execute(
            "SELECT customer_index, kind, points, instant_us, entry_id FROM journal WHERE entry_id <= ? "
            "ORDER BY customer_index, entry_id", (through_entry,)).fetchall()

    def expired_by_close(self, run_id: int) -> dict[int, int]:
        """Points each customer's ``expire`` entry of one close took (positive)."""
        return dict(self.db.execute("SELECT customer_index, -points FROM journal WHERE kind = 'expire' "
                                    "AND run_id = ?", (run_id,)).fetchall())

    def movements_of(self, month: int) -> dict[int, tuple[int, int]]:
        """Customer index -> (from tier, to tier) recorded by a month's close."""
        return {customer: (before, after) for customer, before, after in self.db.execute(
            "SELECT customer_index, from_tier, to_tier FROM tier_movements WHERE month = ?", (month,))}

    def closes(self) -> list[tuple]:
        """(month, expired points, customers expired, movements) of every close, in order."""
        return self.db.execute("SELECT month, expired_points, customers_expired, movements FROM month_closes "
                               "ORDER BY month").fetchall()

    @staticmethod
    def due_lots(connection: sqlite3.Connection, month: int, gone_day: int, inactive_before_us: int | None,
                 at_us: int, customer: int | None = None) -> list[tuple[int, int, int]]:
        """(customer index, earned month, points) of the lots the close of ``month`` expires
        (see :meth:`expire_lots`); only one customer's with ``customer``."""
        if customer is None:
            due = connection.execute(
                "SELECT customer_index, earned_month, points_remaining FROM lots WHERE expires_on IS NOT NULL "
                "AND expires_on <= ? AND points_remaining > 0 AND earned_month <= ?", (gone_day, month)).fetchall()
        else:
            due = connection.execute(
                "SELECT customer_index, earned_month, points_remaining FROM lots WHERE customer_index = ? "
                "AND earned_month <= ? AND points_remaining > 0 AND expires_on <= ?",
                (customer, month, gone_day)).fetchall()
        if inactive_before_us is not None:
            only = "" if customer is None else "AND l.customer_index = ? "
            due += connection.execute(
                "SELECT l.customer_index, l.earned_month, l.points_remaining FROM lots l "
                "WHERE l.points_remaining > 0 AND l.earned_month <= ? AND (l.expires_on IS NULL OR l.expires_on > ?) "
                f"{only}AND NOT EXISTS (SELECT 1 FROM journal j WHERE j.customer_index = l.customer_index "
                "AND (j.kind = 'earn' OR j.kind = 'redeem') AND j.instant_us >= ? AND j.instant_us <= ?)",
                (month, gone_day, *(() if customer is None else (customer,)), inactive_before_us, at_us)).fetchall()
        return due

    def customer_ids(self, indices: list[int]) -> list[str]:
        """External ids of customer indices, in the same order."""
        found = dict(self.db.execute(
            "SELECT customer_index, customer_id FROM customers WHERE customer_index IN (SELECT value FROM json_each(?))",
            (json.dumps(indices),)).fetchall())
        return [found[index] for index in indices]

    @staticmethod
    def expire_lots(connection: sqlite3.Connection, month: int, gone_day: int, inactive_before_us: int | None,
                    at_us: int, reference: str, run_id: int) -> dict[int, int]:
        """Expire, at the close of ``month``, due lots and all lots of inactive customers.

        Due: the lot's expiry day is ``gone_day`` or earlier. Inactive: no earn or redemption
        from ``inactive_before_us`` to the month's end ``at_us``. Only lots earned by the end
        of ``month`` count, whenever the close runs. One ``expire`` entry per customer, at
        ``at_us``; returns the points taken per customer.
        """
        due = Ledger.due_lots(connection, month, gone_day, inactive_before_us, at_us)
        connection.executemany("UPDATE lots SET points_remaining = 0 WHERE customer_index = ? AND earned_month = ?",
                               [(customer, month) for customer, month, _ in due])
        expired: dict[int, int] = {}
        for customer, _, points in due:
            expired[customer] = expired.get(customer, 0) + points
        connection.executemany(
            "INSERT INTO journal (customer_index, kind, points, instant_us, reference, run_id) "
            f"VALUES (?, 'expire', ?, {int(at_us)}, ?, {int(run_id)})",
            [(customer, -points, reference) for customer, points in sorted(expired.items())])
        return expired

    @staticmethod
    def record_status(connection: sqlite3.Connection, month: int, tiers: np.ndarray) -> int:
        """Store each customer's status after ``month``'s close and the moves since the last one."""
        previous = np.zeros(len(tiers), dtype=np.int64)
        for customer, tier in connection.execute("SELECT customer_index, tier FROM customer_status"):
            if customer < len(previous):
                previous[customer] = tier
        moved = np.flatnonzero(previous != tiers)
        rows = list(zip(moved.tolist(), previous[moved].tolist(), tiers[moved].astype(np.int64).tolist()))
        connection.executemany(
            f"INSERT INTO tier_movements (month, customer_index, from_tier, to_tier) VALUES ({int(month)}, ?, ?, ?)",
            rows)
        connection.executemany(
            "INSERT INTO customer_status (customer_index, tier) VALUES (?1, ?3) "
            "ON CONFLICT(customer_index) DO UPDATE SET tier = excluded.tier", rows)
        return len(rows)

    @staticmethod
    def journal_end(connection: sqlite3.Connection) -> int:
        """The id of the last journal entry (0 when empty)."""
        return connection.execute("SELECT COALESCE(MAX(entry_id), 0) FROM journal").fetchone()[0]

    @staticmethod
    def record_close(connection: sqlite3.Connection, close, run_id: int, journal_before: int) -> None:
        connection.execute(
            "INSERT INTO month_closes (month, run_id, closed_at, expired_points, customers_expired, movements, "
            "journal_before) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (close.month, run_id, _now(), close.expired_points, close.customers_expired, close.movements,
             journal_before))
        connection.execute("UPDATE runs SET status = 'done', ended_at = datetime('now') WHERE run_id = ?",
                           (run_id,))

    # ---- report figures ----------------------------------------------------------------
    def journal_flows(self, start_us: int | None, end_us: int) -> dict[str, int]:
        """Points of the journal entries dated in [start, end), by kind (from the start when None)."""
        return dict(self.db.execute(
            "SELECT kind, SUM(points) FROM journal WHERE instant_us >= ? AND instant_us < ? GROUP BY kind",
            (-(2**63) if start_us is None else start_us, end_us)).fetchall())

    def outstanding_points(self, end_us: int) -> tuple[int, int]:
        """(points the program owes, points customers owe) at an instant: the positive balances
        summed, and the negative ones (returns of spent points, ``negative_balance = "allow"``)."""
        owed, owing = self.db.execute(
            "SELECT COALESCE(SUM(MAX(balance, 0)), 0), COALESCE(-SUM(MIN(balance, 0)), 0) FROM "
            "(SELECT SUM(points) AS balance FROM journal WHERE instant_us < ? GROUP BY customer_index)",
            (end_us,)).fetchone()
        return owed, owing

    def unrecovered_points(self, start_us: int, end_us: int) -> int:
        """Points returns dated in [start, end) could not take back (``negative_balance = "floor_zero"``)."""
        return self.db.execute("SELECT COALESCE(SUM(unrecovered_points), 0) FROM receipts WHERE instant_us >= ? "
                               "AND instant_us < ?", (start_us, end_us)).fetchone()[0]

    def customer_activity(self, start_us: int, end_us: int, look_back_us: int, recent_us: int) -> dict[str, int]:
        """Active (a purchase in [start, end)), new (first purchase in it) and lapsed customers
        (last purchase before ``end`` in [look_back, recent)); returns are not purchases."""
        purchases = "FROM receipts WHERE customer_index IS NOT NULL AND original_receipt_id IS NULL"
        active = self.db.execute(
            f"SELECT COUNT(DISTINCT customer_index) {purchases} AND instant_us >= ? AND instant_us < ?",
            (start_us, end_us)).fetchone()[0]
        new = self.db.execute(
            f"SELECT COUNT(*) FROM (SELECT MIN(instant_us) AS first {purchases} GROUP BY customer_index) "
            "WHERE first >= ? AND first < ?", (start_us, end_us)).fetchone()[0]
        lapsed = self.db.execute(
            f"SELECT COUNT(*) FROM (SELECT MAX(instant_us) AS last {purchases} AND instant_us < ? "
            "GROUP BY customer_index) WHERE last >= ? AND last < ?",
            (end_us, look_back_us, recent_us)).fetchone()[0]
        return {"active": active, "new": new, "lapsed": lapsed}

    def sales_split(self, start_us: int, end_us: int) -> tuple[int, int]:
        """(sales on receipts with a customer, all sales) in [start, end), minor units; returns
        count against them (their amounts are negative)."""
        identified, total = self.db.execute(
            "SELECT COALESCE(SUM(CASE WHEN customer_index IS NOT NULL THEN amount_minor END), 0), "
            "COALESCE(SUM(amount_minor), 0) FROM receipts WHERE instant_us >= ? AND instant_us < ?",
            (start_us, end_us)).fetchone()
        return identified, total

    # ---- queries -----------------------------------------------------------------------
    def customer_index(self, customer_id: str) -> int:
        row = self.db.execute("SELECT customer_index FROM customers WHERE customer_id = ?", (customer_id,)).fetchone()
        if row is None:
            raise UnknownCustomer(f"unknown customer {customer_id!r}")
        return row[0]

    def balance(self, customer_id: str) -> int:
        """Points available: the sum of the customer's journal, by definition."""
        index = self.customer_index(customer_id)
        return self.db.execute(
            "SELECT COALESCE(SUM(points), 0) FROM journal WHERE customer_index = ?", (index,)
        ).fetchone()[0]

    def standing(self, customer_id: str, as_of: dt.date | None = None) -> Standing:
        """Balance, status and progress to the next tier for a receipt on ``as_of``.

        ``as_of`` defaults to today in the chain's time zone (or the customer's last receipt's
        month, if the ledger holds receipts dated later than today).
        """
        from ..engine import kernel

        program, compiled = self.compiled_program()
        # the customer, their state and their balance in one query, the state as 1-row arrays
        # straight from the stored bytes (a balance lookup's hot path)
        found = self.db.conn.execute(
            "SELECT c.customer_index, s.record, s.rolling_totals, s.tier_reached_month, "
            "(SELECT COALESCE(SUM(j.points), 0) FROM journal j WHERE j.customer_index = c.customer_index) "
            "FROM customers c LEFT JOIN customer_state s USING (customer_index) WHERE c.customer_id = ?",
            (customer_id,)).fetchone()
        if found is None:
            raise UnknownCustomer(f"unknown customer {customer_id!r}")
        index, balance, row = found[0], found[4], found[1:4] if found[1] is not None else None
        empty = CustomerState.for_program(compiled, capacity=1)
        records, rolling, reached = empty.records[:1], empty.rolling_totals[:1], empty.tier_reached_month[:1]
        if row is not None:
            records = np.frombuffer(row[0], dtype=CUSTOMER_STATE_DTYPE)
            if empty.rolling_months:
                rolling = np.frombuffer(row[1], dtype=np.int64).reshape(1, 12)
            if empty.reached_tiers:
                reached = np.frombuffer(row[2], dtype=np.int32).reshape(1, empty.tier_count)
        last_month = int(records["last_visit_month"][0])
        if as_of is None:
            today = dt.datetime.now(program.info.zone()).date()
            month = max((today.year - 1970) * 12 + today.month - 1, last_month)
        else:
            month = (as_of.year - 1970) * 12 + as_of.month - 1
            if month < max(last_month, 0):
                raise LedgerError(f"customer {customer_id!r} has receipts after {as_of}; status can be asked for "
                                  "the month of their last receipt or later")
        tiers, totals = kernel.standing_of(compiled, records, rolling, reached, month)
        tier, total = int(tiers[0]), int(totals[0])
        following = tier + 1 if tier + 1 < len(program.tiers) else None
        return Standing(
            customer_id=customer_id,
            points=balance,
            tier=program.tiers[tier].name,
            qualifying_total=total,
            next_tier=None if following is None else program.tiers[following].name,
            to_next_tier=None if following is None
            else max(0, int(compiled.tier_threshold[following]) - total),
            customer_index=index,
        )

    def history(self, customer_id: str, limit: int = 20, before_entry: int | None = None) -> list[dict]:
        """The customer's journal entries, newest first, times in the chain's zone.

        ``before_entry`` pages backwards (the last page's smallest ``entry_id``).
        """
        index = self.customer_index(customer_id)
        zone = self.current_program().program.info.zone()
        rows = self.db.execute(
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

    def balances(self) -> Iterator[tuple[str, int]]:
        """(customer id, balance) of every customer, balance = Σ journal."""
        yield from self.db.execute(
            "SELECT c.customer_id, COALESCE(SUM(j.points), 0) FROM customers c "
            "LEFT JOIN journal j USING (customer_index) GROUP BY c.customer_index ORDER BY c.customer_index"
        )

    # ---- API keys ----------------------------------------------------------------------
    def create_api_key(self, role: str, name: str | None = None) -> str:
        """A new API key; the whole key is returned once and only a hash of its secret is kept."""
        if role not in API_ROLES:
            raise LedgerError(f"role must be one of {', '.join(API_ROLES)}, not {role!r}")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        with self.write() as connection:
            connection.execute(
                "INSERT INTO api_keys (key_id, secret_sha256, role, name, created_at) VALUES (?, ?, ?, ?, ?)",
                (key_id, hashlib.sha256(secret.encode()).hexdigest(), role, name, _now()))
        return f"{API_KEY_PREFIX}_{key_id}_{secret}"

    def api_key_role(self, key: str) -> str | None:
        """The role of a valid, unrevoked key; None otherwise. The secret's hash is compared in
        constant time, and an unknown key id costs the same comparison."""
        known = self._memo.get("api_keys")
        if known is not None and key in known and self._remembered("api_keys", dict) is known:
            return known[key]  # verified before, and nothing changed in the ledger since
        prefix, _, rest = key.partition("_")
        key_id, _, secret = rest.partition("_")
        row = self.db.execute("SELECT secret_sha256, role FROM api_keys WHERE key_id = ? AND revoked_at IS NULL",
                              (key_id,)).fetchone() if prefix == API_KEY_PREFIX else None
        presented = hashlib.sha256(secret.encode()).hexdigest()
        matches = hmac.compare_digest(presented, row[0] if row else "0" * 64)
        if not (row and matches):
            return None
        self._remembered("api_keys", dict)[key] = row[1]
        return row[1]

    def revoke_api_key(self, key_id: str) -> None:
        with self.write() as connection:
            if not connection.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                                      (_now(), key_id)).rowcount:
                raise LedgerError(f"no active API key {key_id!r}")

    def api_keys(self) -> list[tuple]:
        """(key id, role, name, created at, revoked at) of every key; never a secret."""
        return self.db.execute("SELECT key_id, role, name, created_at, revoked_at FROM api_keys "
                               "ORDER BY created_at").fetchall()

    def counts(self) -> dict[str, int]:
        return {
            table: self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("customers", "receipts", "journal", "lots", "runs")
        }
