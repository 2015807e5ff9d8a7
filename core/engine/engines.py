"""Scoring without a ledger: files or batches in, one row of points per receipt out.

One entry point over both engines, so the CLI and the tests choose an engine by name and
everything else (reading, ordering, output columns) is shared.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from ..batch import CustomerTable, ReceiptBatch
from ..program.model import Program, load_program
from ..scores import Scores

Engine = Literal["compiled", "reference"]
ENGINES: tuple[Engine, ...] = ("compiled", "reference")
#: Receipts per step of the progress bar; chunking never changes a result.
PROGRESS_CHUNK_RECEIPTS = 250_000
_PROGRESS_MIN_RECEIPTS = 200_000


@dataclass
class ScoreResult:
    """The ``fidelis score`` output table and what a summary needs."""

    table: pa.Table
    scores: Scores
    tier_names: list[str]

    @cached_property
    def customer_count(self) -> int:
        """Distinct customers on the scored receipts (counted only when a summary asks)."""
        return pc.count_distinct(self.table.column("customer_id"), mode="only_valid").as_py()


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
            from . import kernel
            from ..program.tables import compile_program

            compiled = compile_program(program)
            state = kernel.new_state(compiled, customers)
            return kernel.score(batch, compiled, state, threads=threads,
                                chunk_receipts=PROGRESS_CHUNK_RECEIPTS, on_progress=bar.update)
    raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")


def score_files(
    program_file: str | Path,
    receipt_files: Sequence[str | Path],
    customers_file: str | Path | None = None,
    *,
    engine: Engine = "compiled",
    threads: int = 1,
    progress: bool = False,
) -> ScoreResult:
    """Read a program, receipts and customers; score them; build the output table."""
    from ..ingest.customers import read_customers
    from ..ingest.receipts import read_receipts

    program = load_program(program_file)
    paths = [Path(path) for path in receipt_files]
    with tqdm(total=len(paths), unit=" files", desc="reading", disable=not progress) as bar:
        rows_read = 0

        def file_read(name: str, rows: int) -> None:
            nonlocal rows_read
            rows_read += rows
            bar.set_postfix_str(f"{rows_read:,} rows")
            bar.update(1)

        batch = read_receipts(
            paths, timezone=program.info.timezone, minor_units=program.info.minor_units, progress=file_read
        )
    customers = read_customers(Path(customers_file)) if customers_file else None
    scores = score_batch(program, batch, customers, engine=engine, threads=threads, progress=progress)
    tier_names = [tier.name for tier in program.tiers]
    table = scores.to_table(batch.receipt_id, batch.customer_id, tier_names)
    return ScoreResult(table=table, scores=scores, tier_names=tier_names)
