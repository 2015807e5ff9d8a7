"""The ledger's schema: numbered migrations, applied in order when a ledger is opened.

Each migration is a function named ``mNNN_…``; sqlite-utils records the names applied, so
a migration is never renamed or edited once released — a change is a new migration. A
ledger written by any earlier release opens and is brought up to date.
"""
from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

from .journal import JOURNAL_KINDS

migrations = Migrations("fidelis")


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


@migrations()
def m009_month_writes(db: sqlite_utils.Database) -> None:
    """Which local months each write of receipts touched, and the state generation of each close.

    A month-end computes statuses from the receipts as they were when it started; at each
    close it must know whether receipts dated in the months it closes were written since
    (then it recomputes under the write lock), and ``check`` whether any were written
    after a month's close. Receipts dated in other months (tills accruing today) do not
    concern a close.
    """
    db.execute("""
        CREATE TABLE month_writes (
            month INTEGER PRIMARY KEY,          -- local month of receipts written
            generation INTEGER NOT NULL         -- the state generation of the last write into it
        ) WITHOUT ROWID""")
    db.execute("ALTER TABLE month_closes ADD COLUMN generation INTEGER")  # NULL: closed before m009


@migrations()
def m010_voided_receipts(db: sqlite_utils.Database) -> None:
    """Receipts voided by an operator (a mistyped year, a test receipt sent to production):
    out of the customer's history, kept here for the audit trail with the reason."""
    db.execute("""
        CREATE TABLE voided_receipts (
            receipt_id TEXT NOT NULL,
            customer_index INTEGER,
            store_id TEXT NOT NULL,
            instant_us INTEGER NOT NULL,
            amount_minor INTEGER NOT NULL,
            points INTEGER NOT NULL,          -- what it had earned
            points_unrecovered INTEGER NOT NULL,  -- of those, already spent and not taken back
            content_hash INTEGER NOT NULL,
            lines BLOB NOT NULL,
            run_id INTEGER NOT NULL REFERENCES runs(run_id),       -- the run that stored it
            void_run_id INTEGER NOT NULL REFERENCES runs(run_id),  -- the run that voided it
            reason TEXT NOT NULL,
            PRIMARY KEY (receipt_id, void_run_id)
        ) WITHOUT ROWID""")


@migrations()
def m011_run_process(db: sqlite_utils.Database) -> None:
    """The process running each run (``host:pid``), so that a run whose process was killed is
    recorded as failed by the next one instead of staying ``running`` for ever."""
    db.execute("ALTER TABLE runs ADD COLUMN process TEXT")


#: The receipts table's columns after m007, in order (m012 copies them).
_RECEIPT_COLUMNS = (
    "receipt_id, customer_index, store_id, instant_us, local_day, amount_minor, tier, rate_points, basket_points, "
    "visit_points, welcome_points, cap_points, points, content_hash, lines, program_version, run_id, "
    "original_receipt_id, visit_rank, earned_before_today, birthday, unrecovered_points"
)


@migrations()
def m012_receipts_in_arrival_order(db: sqlite_utils.Database) -> None:
    """Receipts in arrival order (``receipt_row``), found by id through a unique index.

    Keyed by their id, receipts were a B-tree whose every insert landed on a random page of a
    table holding the lines: a load slowed as the ledger grew (25 k receipts/s at first,
    8 k by 10 M). Appended in arrival order, the table's pages are written once and only the
    narrow indexes take random inserts. Receipts stored before are numbered in processing
    order, which is each customer's write order (a receipt before its customer's last is
    refused as late) — not by run, since real-time accruals share one run across loads — so
    each customer's receipts stay in the order a replay in arrival order needs.

    Bulk writes keep their lines in chunk files beside the ledger
    (:mod:`~fidelis.core.ledger.chunk_files`, named in ``chunk_files``): their ``lines`` is
    NULL, and ``receipts_held`` indexes the receipts whose lines SQLite holds. A voided
    receipt keeps its row number, since its file still holds it.
    """
    statements = f"""
        CREATE TABLE receipts_new (
            receipt_row INTEGER PRIMARY KEY,  -- arrival order
            receipt_id TEXT NOT NULL,
            customer_index INTEGER,           -- NULL = anonymous
            store_id TEXT NOT NULL,
            instant_us INTEGER NOT NULL,
            local_day INTEGER NOT NULL,
            amount_minor INTEGER NOT NULL,    -- all lines
            tier INTEGER,                     -- status tier at the receipt (NULL: anonymous)
            rate_points INTEGER NOT NULL,
            basket_points INTEGER NOT NULL,
            visit_points INTEGER NOT NULL,
            welcome_points INTEGER NOT NULL,
            cap_points INTEGER NOT NULL,
            points INTEGER NOT NULL,
            content_hash INTEGER NOT NULL,    -- 64-bit fingerprint of the receipt's content
            lines BLOB,                       -- LINE_DTYPE records, NULL: in a chunk file
            program_version INTEGER NOT NULL REFERENCES program_versions(version),
            run_id INTEGER NOT NULL REFERENCES runs(run_id),
            original_receipt_id TEXT,         -- a return: the receipt it returns
            visit_rank INTEGER NOT NULL DEFAULT 0,
            earned_before_today INTEGER NOT NULL DEFAULT 0,
            birthday INTEGER NOT NULL DEFAULT 0,
            unrecovered_points INTEGER NOT NULL DEFAULT 0
        );
        INSERT INTO receipts_new ({_RECEIPT_COLUMNS}) SELECT {_RECEIPT_COLUMNS} FROM receipts
            ORDER BY instant_us, receipt_id;
        DROP TABLE receipts;
        ALTER TABLE receipts_new RENAME TO receipts;
        CREATE UNIQUE INDEX receipts_by_id ON receipts(receipt_id);
        CREATE INDEX receipts_by_customer ON receipts(customer_index, instant_us);
        CREATE INDEX receipts_returns ON receipts(original_receipt_id) WHERE original_receipt_id IS NOT NULL;
        CREATE INDEX receipts_held ON receipts(receipt_row) WHERE lines IS NOT NULL;
        CREATE TABLE chunk_files (
            name TEXT PRIMARY KEY,            -- in <ledger>.receipts/
            first_row INTEGER NOT NULL,
            last_row INTEGER NOT NULL,
            receipts INTEGER NOT NULL,
            run_id INTEGER NOT NULL REFERENCES runs(run_id)
        );
        ALTER TABLE voided_receipts ADD COLUMN receipt_row INTEGER
        """
    for statement in statements.split(";"):  # one by one: executescript would commit first
        db.execute(statement)
