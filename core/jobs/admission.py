"""What the ledger may take: one home for the rules loads and real-time accrual share.

A receipt is refused when it is beyond the engine's exact bounds, when its id is already
stored (a duplicate if the same content, a conflict if not), or when it is late: before its
customer's last scored receipt, or in a closed month (history is never rescored).
"""
from __future__ import annotations

import numpy as np

from ..batch import ReceiptBatch
from ..ledger.closes import last_closed_month
from ..ledger.handle import Ledger
from ..ledger.receipts import last_receipt_at
from ..localtime import month_label
from ..state import CustomerState


def stored_verdicts(stored: dict[str, int], receipt_ids: list[str], fingerprints: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(duplicate, conflict) per receipt, given the fingerprints ``stored`` under ids already
    in the ledger: the same content again is a duplicate (skipped, counted), other content
    under a used id a conflict (refused). Receipt ids are idempotency keys."""
    duplicate = np.zeros(len(receipt_ids), dtype=bool)
    conflict = np.zeros(len(receipt_ids), dtype=bool)
    for position, (receipt_id, fingerprint) in enumerate(zip(receipt_ids, np.asarray(fingerprints).tolist())):
        if receipt_id in stored:
            duplicate[position] = stored[receipt_id] == fingerprint
            conflict[position] = not duplicate[position]
    return duplicate, conflict


def before_last_scored(state: CustomerState, customer_index: np.ndarray, instant_us: np.ndarray) -> np.ndarray:
    """Which receipts come before their customer's last scored receipt in ``state``.

    The second of the two "late" rules, kept beside the first (:func:`late_reasons`) until
    they are one: a load's chunk re-checked after another writer came in between compares
    instants only, where :func:`late_reasons` also orders receipts of the same instant by id
    and refuses closed months.
    """
    last = np.full(len(customer_index), np.iinfo(np.int64).min, dtype=np.int64)
    known = customer_index >= 0
    last[known] = state.records["last_instant_us"][customer_index[known]]
    return instant_us < last


def late_reasons(ledger: Ledger, batch: ReceiptBatch, state: CustomerState, among: np.ndarray | None = None,
                 stored_index: np.ndarray | None = None) -> dict[int, str]:
    """Why receipts of ``batch`` cannot be scored now, by position: history is never rescored.

    Late: before its customer's last scored receipt (at the same instant, receipt id order
    holds across loads too). In a closed month: its expiry, statuses and movements are
    recorded. ``among`` limits the check to some receipts; ``stored_index`` maps ``state``'s
    customer indices to the ledger's for a state that holds only some customers.
    """
    among = np.ones(len(batch), dtype=bool) if among is None else among
    receipt_ids = batch.receipt_id.to_pylist()
    customer_index = state.known_indices(batch.customer_id)
    known = customer_index >= 0
    last_instant = np.full(len(batch), np.iinfo(np.int64).min, dtype=np.int64)
    last_instant[known] = state.records["last_instant_us"][customer_index[known]]
    late = among & known & (batch.instant_us < last_instant)
    for position in np.flatnonzero(among & known & (batch.instant_us == last_instant)):
        index = int(customer_index[position] if stored_index is None else stored_index[customer_index[position]])
        last_id = last_receipt_at(ledger, index, int(last_instant[position]))
        late[position] = last_id is not None and receipt_ids[position] < last_id
    reasons = {int(position): f"receipt {receipt_ids[position]!r} ({_utc(batch.instant_us[position])}) comes before "
                              f"customer {batch.customer_id[position].as_py()}'s last loaded receipt "
                              f"({_utc(last_instant[position])}); history is not rescored"
               for position in np.flatnonzero(late)}
    closed = last_closed_month(ledger)
    if closed is not None:
        for position in np.flatnonzero(among & ~late & (batch.local_month <= closed)):
            reasons[int(position)] = (f"receipt {receipt_ids[position]!r} ({_utc(batch.instant_us[position])}) is in "
                                      f"a month already closed (months up to {month_label(closed)} are); history "
                                      "is not rescored")
    return dict(sorted(reasons.items()))




def receipts_over(batch: ReceiptBatch, amount_bound: int) -> np.ndarray:
    """Receipts with a line, or lines in all, beyond the amount bound (a conservative check)."""
    if not batch.line_count:
        return np.zeros(len(batch), dtype=bool)
    capped = np.minimum(batch.line_amount_minor, amount_bound + 1)
    totals = np.add.reduceat(capped, batch.line_offsets[:-1])
    totals[np.diff(batch.line_offsets) == 0] = 0
    return totals > amount_bound


def _utc(instant_us: int) -> str:
    return str(np.datetime64(int(instant_us) // 1_000_000, "s")) + "Z"
