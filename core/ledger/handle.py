"""The ledger's handle: one open SQLite file, its write lock, read snapshots, the program.

The ledger is a chain's loyalty history in SQLite (the embedded default). What it holds:

- ``program_versions``: every program that scored a receipt, with its text and hash, so a
  receipt's points can always be traced to the rules that gave them. Versions carry an
  ``effective_from`` date for the day programs change mid-history.
- ``customers``: external id (card number, often with leading zeros) ↔ the dense
  ``customer_index`` the kernel's state arrays use, plus birth date and attributes.
- ``customer_state``: each customer's scoring state as the bytes of their state arrays, so
  a later load continues each customer's history exactly where the last one stopped.
- ``receipts``: one row per scored receipt in arrival order — its facts, the points of
  each rule, the context a return needs to be re-scored; the lines of receipts accrued one
  by one as fixed-width records (:data:`~fidelis.core.ledger.receipts.LINE_DTYPE`).
- ``chunk_files``: the Parquet files beside the ledger (``<ledger>.receipts/``) holding
  each bulk-written chunk's receipts with their lines (:mod:`.chunk_files`); a ledger is
  its file and that directory, backed up together.
- ``journal``: every change to a balance (earn, redeem, expire, reverse, adjust). A
  customer's balance is the sum of their journal, always.
- ``lots``: points earned by a customer in one local month, consumed oldest first;
  ``debts``: points taken back beyond what a customer still had.
- ``runs``: each batch job execution, for idempotency, resume and audit.

The queries over these tables are functions of this handle (reads) or of its write
connection (writes inside the caller's transaction), one module per table group beside
this one. Writers take ``BEGIN IMMEDIATE`` so concurrent writers queue instead of failing
half-way; readers never block writers (WAL).
"""
from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import sqlite_utils

from ..errors import LedgerBusy, LedgerError, LedgerFull
from ..program.model import Program, parse_program
from .chunk_files import directory_of
from .clock import now_text
from .schema import migrations

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None

if TYPE_CHECKING:
    from ..program.tables import ProgramTables

BUSY_TIMEOUT_MS = 10_000
#: Page cache per connection: bulk loads insert into large B-trees in key order of receipt ids,
#: which is not time order; the default 2 MB cache makes every insert a disk read.
CACHE_KIB = 256 * 1024


@dataclass(frozen=True)
class ProgramVersion:
    """A program as the ledger stores it: its version number and the parsed program."""

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
            #: the run real-time accruals through this handle are recorded under
            #: (:func:`~fidelis.core.ledger.journal.realtime_run`)
            self.realtime_run_id: int | None = None
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
        files = directory_of(path)
        if files.exists():
            raise LedgerError(f"{files}: the receipt files of another ledger are here; move them away, or choose "
                              "another path")
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
                connection.execute("COMMIT")
            except BaseException as error:
                if connection.in_transaction:  # (SQLite may have rolled back already)
                    connection.execute("ROLLBACK")
                self._memo.clear()
                if isinstance(error, sqlite3.OperationalError) and error.sqlite_errorcode == sqlite3.SQLITE_FULL:
                    raise LedgerFull(f"{self.path}: the disk holding the ledger is full; this step was rolled back "
                                     "whole and the ledger is as before it — free space and run the command again "
                                     "(what is already done is skipped)") from None
                raise
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

    def remembered(self, name: str, compute):
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

    def ping(self) -> None:
        """A trivial read: raises if the file cannot be read now (a health check)."""
        self.db.execute("SELECT 1").fetchone()

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

    def current_program(self) -> ProgramVersion:
        """The program receipts are scored with; parsed once per version per handle."""
        row = self.remembered("program", lambda: self.db.execute(
            "SELECT version, sha256 FROM program_versions ORDER BY version DESC LIMIT 1").fetchone())
        if row is None:
            raise LedgerError(f"{self.path}: the ledger has no program")
        cached = getattr(self, "_program", None)
        if cached is None or (cached.version, cached.program.sha256) != row:
            source, text = self.db.execute(
                "SELECT source, text FROM program_versions WHERE version = ?", (row[0],)).fetchone()
            self._program = ProgramVersion(row[0], parse_program(text, source=source))
        return self._program

    def compiled_program(self) -> tuple[Program, "ProgramTables"]:
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
                (program.sha256, program.info.name, program.source, program.text, now_text()),
            )
            return cursor.lastrowid
