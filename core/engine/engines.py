"""The engines by name: a whole history scored from scratch by the compiled kernel or the reference.

One entry point over both engines, so the CLI and the tests choose an engine by name and
everything else (reading, ordering, output columns) is shared. The reference engine needs
no compiled code: it is imported, and the kernel, only when chosen.
"""
from __future__ import annotations

from typing import Literal

from tqdm import tqdm

from ..batch import CustomerTable, ReceiptBatch
from ..program.model import Program
from ..scores import Scores

Engine = Literal["compiled", "reference"]
ENGINES: tuple[Engine, ...] = ("compiled", "reference")
#: Receipts per step of the progress bar; chunking never changes a result.
PROGRESS_CHUNK_RECEIPTS = 250_000
_PROGRESS_MIN_RECEIPTS = 200_000


def score_batch(
    program: Program,
    batch: ReceiptBatch,
    customers: CustomerTable | None = None,
    *,
    engine: Engine = "compiled",
    threads: int = 1,
    progress: bool = False,
) -> Scores:
    """Score a whole history from scratch with the chosen engine."""
    bar = tqdm(total=len(batch), unit=" receipts", unit_scale=True, desc=f"scoring ({engine})",
               disable=not progress or len(batch) < _PROGRESS_MIN_RECEIPTS)
    with bar:
        if engine == "reference":
            from . import reference

            history = reference.ReferenceHistory()
            parts = []
            for start in range(0, len(batch), PROGRESS_CHUNK_RECEIPTS):
                chunk = batch.slice(start, start + PROGRESS_CHUNK_RECEIPTS)
                parts.append(reference.score_batch(program, chunk, customers, history))
                bar.update(len(chunk))
            return Scores.concatenate(parts) if parts else Scores.empty(0)
        if engine == "compiled":
            from ..program.tables import compile_program
            from . import kernel

            compiled = compile_program(program)
            state = kernel.new_state(compiled, customers)
            return kernel.score(batch, compiled, state, threads=threads,
                                chunk_receipts=PROGRESS_CHUNK_RECEIPTS, on_progress=bar.update)
    raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
