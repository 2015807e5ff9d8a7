"""One entry point over both engines, so callers and tests choose an engine by name."""
from __future__ import annotations

from typing import Literal

from .batch import CustomerTable, ReceiptBatch
from .program import Program
from .scores import Scores

Engine = Literal["compiled", "reference"]
ENGINES: tuple[Engine, ...] = ("compiled", "reference")


def score_batch(
    program: Program,
    batch: ReceiptBatch,
    customers: CustomerTable | None = None,
    *,
    engine: Engine = "compiled",
) -> Scores:
    """Score a whole history from scratch with the chosen engine."""
    if engine == "reference":
        from . import reference

        return reference.score_batch(program, batch, customers)
    if engine == "compiled":
        from . import kernel

        return kernel.score_history(program, batch, customers)
    raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
