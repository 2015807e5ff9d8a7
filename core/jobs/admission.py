"""What the ledger may take: the one admission rule of loads, real-time accrual and returns.

A receipt (a sale or a return) is, in this order:

- a **duplicate** when its id is already stored with the same content: skipped and counted
  (receipt ids are idempotency keys);
- a **conflict** when its id is already stored with other content: refused;
- **from the future** when it is dated more than :data:`FUTURE_TOLERANCE_US` ahead of now
  (tills' clocks drift, a mistyped year does not): refused, because once stored it would
  make every real receipt of its customer late;
- **late** when it comes before its customer's last scored receipt in processing order —
  an earlier instant, or the same instant and a smaller receipt id: refused, history is
  never rescored;
- **in a closed month** (its local month is closed): refused, the month's expiry, statuses
  and movements are recorded.

Everything else is admitted. Writers evaluate the rule inside the write transaction that
stores the receipts, so nothing another writer commits meanwhile (a close, a till's
receipt, another load) can slip between the verdict and the write; a load also evaluates
it when it validates its files, to report every refusal before it writes anything.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..batch import ReceiptBatch
from ..ledger.clock import now_us
from ..ledger.closes import last_closed_month
from ..ledger.handle import Ledger
from ..ledger.receipts import existing_receipts, last_receipt_at
from ..localtime import month_label
from ..state import CustomerState

#: How far ahead of this machine's clock a receipt may be dated: tills' clocks drift, and a
#: receipt dated later than this is a typing or clock error.
FUTURE_TOLERANCE_US = 24 * 3600 * 1_000_000

#: Refusal kinds, as counted in a load's summary.
CONFLICT, FUTURE, LATE, CLOSED = "conflict", "future", "late", "closed"


@dataclass(frozen=True)
class Refusal:
    """Why one receipt is not admitted: its kind, the input column at fault, its value there
    (the receipt id, or the instant in UTC) and the reason."""

    kind: str
    column: str
    value: str
    reason: str


@dataclass
class Admission:
    """The verdict on each receipt of a batch."""

    #: already stored with the same content (skipped, not refused)
    duplicate: np.ndarray
    #: position -> why it is refused, in position order
    refused: dict[int, Refusal] = field(default_factory=dict)

    @property
    def admitted(self) -> np.ndarray:
        admitted = ~self.duplicate
        admitted[list(self.refused)] = False
        return admitted

    def count(self, *kinds: str) -> int:
        return sum(refusal.kind in kinds for refusal in self.refused.values())


def admit(ledger: Ledger, batch: ReceiptBatch, fingerprints: np.ndarray, state: CustomerState, *,
          among: np.ndarray | None = None, stored_index: np.ndarray | None = None, look_up_stored: bool = True,
          future_tolerance_us: int | None = FUTURE_TOLERANCE_US, at_us: int | None = None,
          customer_index: np.ndarray | None = None) -> Admission:
    """The admission rule (module docstring) for ``batch``, against the ledger and ``state``.

    ``state`` holds each known customer's last scored receipt; ``stored_index`` maps its
    customer indices to the ledger's when it holds only some customers. ``among`` limits
    the verdicts to some receipts (the others count as neither). ``look_up_stored=False``
    skips the lookup of stored ids, for a writer that knows no one stored receipts since it
    last looked (its state generation has not moved). ``future_tolerance_us=None`` admits
    receipts dated any time ahead (synthetic data); ``at_us`` is now (default: the clock).
    ``customer_index``: each receipt's customer in ``state`` (-1 anonymous), when the caller
    has it already (a prepared batch), to save looking the ids up again.
    """
    count = len(batch)
    open_ = np.ones(count, dtype=bool) if among is None else among.copy()
    receipt_ids = batch.receipt_id.to_pylist()
    duplicate = np.zeros(count, dtype=bool)
    refused: dict[int, Refusal] = {}

    def refuse(positions, kind: str, column: str, reason) -> None:
        for position in np.flatnonzero(positions):
            value = receipt_ids[position] if column == "receipt_id" else utc_text(batch.instant_us[position])
            refused[int(position)] = Refusal(kind, column, value, reason(int(position)))
            open_[position] = False

    if look_up_stored and open_.any():
        stored_duplicate, conflict = stored_verdicts(existing_receipts(ledger, receipt_ids), receipt_ids, fingerprints)
        duplicate = open_ & stored_duplicate
        open_ &= ~duplicate
        refuse(open_ & conflict, CONFLICT, "receipt_id", lambda p: f"receipt {receipt_ids[p]!r}: a different receipt "
               "with this id is already in the ledger (conflict)")
    if future_tolerance_us is not None:
        now = now_us() if at_us is None else at_us
        refuse(open_ & ahead_of_now(batch.instant_us, future_tolerance_us, now), FUTURE, "ts", lambda p: (
            f"receipt {receipt_ids[p]!r} is dated {utc_text(batch.instant_us[p])}, more than "
            f"{future_tolerance_us // 3_600_000_000} hours ahead of now ({utc_text(now)}); stored, it would make every "
            "later real receipt of its customer late — correct its date"))
    if customer_index is None:
        customer_index = state.known_indices(batch.customer_id)
    late, last_instant = _before_last_scored(ledger, state, customer_index, batch.instant_us, open_, stored_index,
                                             receipt_ids)
    horizon = now_us() + FUTURE_TOLERANCE_US
    refuse(late, LATE, "ts", lambda p: (
        f"receipt {receipt_ids[p]!r} ({utc_text(batch.instant_us[p])}) comes before customer "
        f"{batch.customer_id[p].as_py()}'s last loaded receipt ({utc_text(last_instant[p])}); history is not rescored"
        + ("" if last_instant[p] <= horizon else "; that receipt is dated ahead of now: `fidelis void` takes it out "
           "(README, \"Repairing a future-dated receipt\")")))
    closed = last_closed_month(ledger)
    if closed is not None:
        refuse(open_ & (batch.local_month <= closed), CLOSED, "ts", lambda p: (
            f"receipt {receipt_ids[p]!r} ({utc_text(batch.instant_us[p])}) is in a month already closed (months up to "
            f"{month_label(closed)} are); history is not rescored"))
    return Admission(duplicate, dict(sorted(refused.items())))


def _before_last_scored(ledger: Ledger, state: CustomerState, customer_index: np.ndarray, instant_us: np.ndarray,
                        among: np.ndarray, stored_index: np.ndarray | None, receipt_ids: list[str]
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Which receipts come before their customer's last scored receipt in processing order
    (instant, then receipt id); and each receipt's customer's last instant."""
    known = customer_index >= 0
    last_instant = np.full(len(instant_us), np.iinfo(np.int64).min, dtype=np.int64)
    last_instant[known] = state.records["last_instant_us"][customer_index[known]]
    late = among & known & (instant_us < last_instant)
    for position in np.flatnonzero(among & known & (instant_us == last_instant)):
        index = int(customer_index[position] if stored_index is None else stored_index[customer_index[position]])
        last_id = last_receipt_at(ledger, index, int(last_instant[position]))
        late[position] = last_id is not None and receipt_ids[position] < last_id
    return late, last_instant


def stored_verdicts(stored: dict[str, int], receipt_ids: list[str], fingerprints: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(duplicate, conflict) per receipt, given the fingerprints ``stored`` under ids already
    in the ledger: the same content again is a duplicate, other content a conflict."""
    duplicate = np.zeros(len(receipt_ids), dtype=bool)
    conflict = np.zeros(len(receipt_ids), dtype=bool)
    for position, (receipt_id, fingerprint) in enumerate(zip(receipt_ids, np.asarray(fingerprints).tolist())):
        if receipt_id in stored:
            duplicate[position] = stored[receipt_id] == fingerprint
            conflict[position] = not duplicate[position]
    return duplicate, conflict


def ahead_of_now(instant_us: np.ndarray, future_tolerance_us: int = FUTURE_TOLERANCE_US,
                 at_us: int | None = None) -> np.ndarray:
    """Which instants are further ahead of now than the tolerance (the future rule alone, for
    callers that report it by input row before resolving returns)."""
    return np.asarray(instant_us) > (now_us() if at_us is None else at_us) + future_tolerance_us


def receipts_over(batch: ReceiptBatch, amount_bound: int) -> np.ndarray:
    """Receipts with a line, or lines in all, beyond the amount bound (a conservative check)."""
    if not batch.line_count:
        return np.zeros(len(batch), dtype=bool)
    capped = np.minimum(batch.line_amount_minor, amount_bound + 1)
    totals = np.add.reduceat(capped, batch.line_offsets[:-1])
    totals[np.diff(batch.line_offsets) == 0] = 0
    return totals > amount_bound


def utc_text(instant_us: int) -> str:
    """An instant as ISO UTC text to the second, as refusals quote it."""
    return str(np.datetime64(int(instant_us) // 1_000_000, "s")) + "Z"
