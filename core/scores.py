"""Scores: what an engine says each receipt earned, rule by rule."""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa

#: Output columns in the order ``fidelis score`` writes them (after receipt and customer id).
POINT_COLUMNS = ("rate_points", "basket_points", "visit_points", "welcome_points", "cap_points", "points")
NO_TIER = -1


@dataclass
class Scores:
    """Per-receipt results, aligned with the scored batch (same length, same order).

    ``tier`` is the index of the status tier at the receipt (``NO_TIER`` for anonymous
    receipts); every points column is int64 points. ``points = rate + basket + visit +
    cap + welcome`` with ``cap_points ≤ 0``. A return's points are what it takes back (≤ 0).

    The context columns are what a later return needs to re-score the receipt as it was
    scored: its rank among the customer's sale receipts of its local month, the points the
    customer earned earlier that local day (after caps, without welcome points), and whether
    the birthday multiplier applied (on a return: its original's).
    """

    tier: np.ndarray
    rate_points: np.ndarray
    basket_points: np.ndarray
    visit_points: np.ndarray
    welcome_points: np.ndarray
    cap_points: np.ndarray
    points: np.ndarray
    visit_rank: np.ndarray
    earned_before_today: np.ndarray
    birthday: np.ndarray

    @classmethod
    def empty(cls, receipt_count: int) -> "Scores":
        """Preallocated outputs; the compiled kernel fills them in place."""
        return cls(
            tier=np.full(receipt_count, NO_TIER, dtype=np.int8),
            **{name: np.zeros(receipt_count, dtype=np.int64) for name in POINT_COLUMNS},
            visit_rank=np.zeros(receipt_count, dtype=np.int32),
            earned_before_today=np.zeros(receipt_count, dtype=np.int64),
            birthday=np.zeros(receipt_count, dtype=np.int8),
        )

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, key) -> "Scores":
        return Scores(**{f.name: getattr(self, f.name)[key] for f in fields(self)})

    @classmethod
    def concatenate(cls, parts: list["Scores"]) -> "Scores":
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def equals(self, other: "Scores") -> bool:
        return all(np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    def to_table(self, receipt_id: pa.Array, customer_id: pa.Array, tier_names: list[str]) -> pa.Table:
        """The ``fidelis score`` output: one row per receipt, tier by name (empty if anonymous)."""
        names = pa.array(["", *tier_names], type=pa.string())
        return pa.table(
            {
                "receipt_id": receipt_id,
                "customer_id": customer_id,
                "tier": names.take(pa.array(self.tier.astype(np.int32) + 1)),
                **{name: pa.array(getattr(self, name)) for name in POINT_COLUMNS},
            }
        )
