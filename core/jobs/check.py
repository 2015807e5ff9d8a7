"""Checking a ledger: every invariant, and a replay of every stored receipt through the kernel."""
from __future__ import annotations

import json
import sqlite3

import numpy as np
from tqdm import tqdm

from ..engine import kernel
from ..errors import CorruptReceiptLines
from ..ledger.closes import months_written_after_close, receipts_after_close, void_takebacks
from ..ledger.customers import customer_ids_of
from ..ledger.customers import load_state
from ..ledger.figures import (
    anonymous_receipts_with_points,
    balance_mismatches,
    debts_with_points_held,
    earn_mismatches,
    journal_block,
    lots_block,
    receipts_ahead_of,
)
from ..ledger.chunk_files import directory_of, unnamed_files
from ..ledger.clock import now_us
from ..ledger.handle import Ledger
from ..ledger.receipts import corrupt_lines
from ..localtime import local_months, month_label
from ..points.lots import lots_from_journal
from ..points.replay import replay
from .admission import FUTURE_TOLERANCE_US, utc_text

#: Customers replayed at once by ``check``: bounds its memory whatever the ledger's size.
CHECK_BLOCK_CUSTOMERS = 50_000



def check_ledger(ledger: Ledger, *, block_customers: int = CHECK_BLOCK_CUSTOMERS, allow_future: bool = False,
                 progress: bool = False) -> list[str]:
    """Every broken invariant, as a sentence naming what is wrong (empty when all hold).

    - a customer's balance (Σ journal) equals the points left in their lots less their debt,
      and no one owes points while holding some; each lot holds what the customer's journal,
      replayed by the lot rules, leaves in it (points moved between lots are found);
    - each receipt's points equal its journal entries (a return's: less what it could not
      take back), and anonymous receipts earn nothing;
    - replaying every stored receipt through the kernel from an empty state, in arrival order
      (:func:`~fidelis.core.points.replay.replay`), gives each receipt's stored points and
      every customer's stored state;
    - no receipt dated in a closed month was written after its close (its expiry, statuses
      and movements were recorded without it);
    - no receipt is dated beyond the admission rule's tolerance ahead of now (it would make
      every real receipt of its customer late; ``fidelis void`` repairs it), unless
      ``allow_future`` (a ledger of synthetic data loaded with it).

    Receipts are replayed a block at a time and lots rebuilt ``block_customers`` at a time,
    so memory stays bounded whatever the ledger's size (beyond every customer's state).
    """
    problems = []
    for customer_id, journal, lots in balance_mismatches(ledger):
        problems.append(f"customer {customer_id!r}: balance (Σ journal) {journal} != points in lots {lots}")
    for receipt_id, points, earned in earn_mismatches(ledger):
        problems.append(f"receipt {receipt_id!r}: {points} points but {earned} in its journal entries")
    for customer_id, debt, held in debts_with_points_held(ledger):
        problems.append(f"customer {customer_id!r}: owes {debt} points yet holds {held} in lots")
    problems += _lots_against_journal(ledger, block_customers)

    late = receipts_after_close(ledger)
    problems += _first_few([f"receipt {receipt_id!r}: dated in {month_label(month)}, but written after that month's "
                            "close" for receipt_id, month in late], "receipts written after their month's close")
    named = {month for _, month in late}
    for month in months_written_after_close(ledger):
        if month not in named:
            problems.append(f"receipts dated in {month_label(month)} were written after that month's close")

    ahead = [] if allow_future else receipts_ahead_of(ledger, now_us() + FUTURE_TOLERANCE_US)
    problems += _first_few([
        f"receipt {receipt_id!r} ({'anonymous' if customer_id is None else f'of customer {customer_id!r}'}) is dated "
        f"{utc_text(instant_us)}, ahead of now, so its customer's real receipts are refused as late; "
        f"`fidelis void LEDGER {receipt_id} --reason …` takes it out" for receipt_id, customer_id, instant_us in ahead],
        "receipts dated ahead of now")

    stored = kernel.CustomerState.for_program(ledger.compiled_program()[1])
    load_state(ledger, stored)
    count = len(stored)
    replayed = replay(ledger)
    wrong_points: list[tuple] = []
    store = _StoreCheck(ledger)
    try:
        for block in tqdm(replayed, desc="replaying", unit=" blocks", disable=not progress):
            stored_points, found = store.block(block)
            wrong = np.flatnonzero(found & (block.scores.points != stored_points) & (block.customer_index >= 0))
            wrong_points += [(block.batch.receipt_id[i].as_py(), stored_points[i], block.scores.points[i])
                             for i in wrong[:20 - len(wrong_points)]]
        store.tail()
    except (CorruptReceiptLines, sqlite3.OperationalError) as error:
        # the replay cannot go on: say which receipts (one scan, only now)
        corrupt = corrupt_lines(ledger.db.conn)
        if not corrupt:
            if isinstance(error, CorruptReceiptLines):
                return problems + [str(error)]
            raise error
        return problems + _first_few([
            f"receipt {receipt_id!r}: its stored lines are corrupt ({size} bytes, not whole line records)"
            for receipt_id, size in corrupt], "receipts with corrupt lines")
    problems += _first_few(store.problems, "receipts whose chunk files and the ledger disagree",
                           total=store.count)
    problems += [f"{directory_of(ledger.path).name}/{name}: a chunk file no commit names (left by a load that "
                 "did not finish; the next load removes it)" for name in unnamed_files(ledger)]
    replay_state = replayed.state
    for receipt_id, stored_points, replayed in wrong_points:
        problems.append(f"receipt {receipt_id!r}: stored {stored_points} points, its replay gives {replayed}")
    for receipt_id, points in anonymous_receipts_with_points(ledger):
        problems.append(f"receipt {receipt_id!r}: anonymous, but stored with {points} points")
    differing = np.flatnonzero(
        (stored.records[:count] != replay_state.records[:count])
        | (stored.rolling_totals[:count] != replay_state.rolling_totals[:count]).any(axis=1)
        | (stored.tier_reached_month[:count] != replay_state.tier_reached_month[:count]).any(axis=1)
    )
    problems += _first_few([f"customer {stored.customer_ids[index]!r}: stored scoring state differs from the replay "
                            "of their receipts" for index in differing[:21]], "customers whose stored state differs",
                           total=len(differing))
    return problems


class _StoreCheck:
    """Each replayed receipt against its row in SQLite, whose points are the ledger's word:
    every SQLite receipt must be met once by the replay (its lines are in a chunk file or in
    SQLite), and a chunk file must say what SQLite says of it."""

    def __init__(self, ledger: Ledger):
        self.ledger, self.after, self.problems, self.count = ledger, 0, [], 0

    def block(self, block) -> tuple[np.ndarray, np.ndarray]:
        """The SQLite points of the block's receipts, and which of them SQLite has."""
        rows = block.receipt_row
        stored = self._rows(self.after, int(rows[-1]))
        self.after = int(rows[-1])
        at = np.searchsorted(rows, stored[:, 0])
        met = np.zeros(len(stored), dtype=bool)
        inside = at < len(rows)
        met[inside] = rows[at[inside]] == stored[inside, 0]
        self._missing(stored[~met, 0])
        found = np.zeros(len(rows), dtype=bool)
        found[at[met]] = True
        points = np.zeros(len(rows), dtype=np.int64)
        points[at[met]] = stored[met, 1]
        for i in np.flatnonzero(~found):
            self._say(f"receipt {block.batch.receipt_id[i].as_py()!r} (row {rows[i]}): in a chunk file, but not "
                      "in the ledger's receipts")
        for i in np.flatnonzero(found & (points != block.stored_points)):
            self._say(f"receipt {block.batch.receipt_id[i].as_py()!r}: its chunk file says {block.stored_points[i]} "
                      f"points, the ledger {points[i]}")
        return points, found

    def tail(self) -> None:
        """SQLite receipts after the replay's last: none should be."""
        self._missing(self._rows(self.after, None)[:, 0])

    def _rows(self, after: int, upto: int | None) -> np.ndarray:
        query = "SELECT receipt_row, points FROM receipts WHERE receipt_row > ?" + (
            " AND receipt_row <= ?" if upto is not None else "")
        found = self.ledger.db.execute(query, (after,) if upto is None else (after, upto)).fetchall()
        return np.array(found, dtype=np.int64).reshape(-1, 2)

    def _missing(self, rows: np.ndarray) -> None:
        if not len(rows):
            return
        self.count += len(rows)
        room = NAMED_PROBLEMS - len(self.problems)
        self.problems += [f"receipt {receipt_id!r}: its lines are in no chunk file and not in the ledger"
                          for (receipt_id,) in self.ledger.db.execute(
                              "SELECT receipt_id FROM receipts WHERE receipt_row IN (SELECT value FROM json_each(?)) "
                              "ORDER BY receipt_row", (json.dumps(rows[:max(room, 0)].tolist()),))]

    def _say(self, problem: str) -> None:
        self.count += 1
        if len(self.problems) < NAMED_PROBLEMS:
            self.problems.append(problem)


#: Problems of one kind ``check`` names; the rest are counted.
NAMED_PROBLEMS = 20


def _first_few(problems: list[str], what: str, total: int | None = None) -> list[str]:
    """The first :data:`NAMED_PROBLEMS` problems of one kind, then how many more there are."""
    total = len(problems) if total is None else total
    more = [f"… and {total - NAMED_PROBLEMS} more {what}"] if total > NAMED_PROBLEMS else []
    return problems[:NAMED_PROBLEMS] + more


def _lots_against_journal(ledger: Ledger, block_customers: int) -> list[str]:
    """Each customer's lots and debt rebuilt from their journal (:func:`lots_from_journal`)
    against the stored ones, a block of customers at a time."""
    timezone = ledger.current_program().program.info.timezone
    voided = void_takebacks(ledger)
    count = ledger.db.execute("SELECT COALESCE(MAX(customer_index) + 1, 0) FROM customers").fetchone()[0]
    problems: list[str] = []
    for first in range(0, count, block_customers):
        stop = min(first + block_customers, count)
        entries = journal_block(ledger, first, stop)
        stored_lots, stored_debts = lots_block(ledger, first, stop)
        if not entries:
            continue
        customers, points, instants, entry_ids = (np.array(column) for column in zip(*entries))
        months = local_months(instants, timezone).tolist()
        points, own = points.tolist(), [voided.get(entry) for entry in entry_ids.tolist()] if voided else None
        starts = np.flatnonzero(np.r_[True, customers[1:] != customers[:-1]]).tolist()
        for begin, end in zip(starts, starts[1:] + [len(customers)]):
            customer = int(customers[begin])
            lots, debt = lots_from_journal(points[begin:end], months[begin:end],
                                           own[begin:end] if own else [None] * (end - begin))
            held = stored_lots.get(customer, {})
            if lots != held or debt != stored_debts.get(customer, 0):
                [name] = customer_ids_of(ledger, [customer])
                problems.append(f"customer {name!r}: lots hold {_lots_text(held)}, owing "
                                f"{stored_debts.get(customer, 0)}; the journal leaves {_lots_text(lots)}, owing {debt}")
                if len(problems) >= NAMED_PROBLEMS:
                    return problems
    return problems


def _lots_text(lots: dict[int, int]) -> str:
    return "{" + ", ".join(f"{month_label(month)}: {points}" for month, points in sorted(lots.items())) + "}"
