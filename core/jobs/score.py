"""Scoring files without a ledger (``fidelis score``): one row of points per receipt out."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from ..engine.engines import Engine, score_batch
from ..ingest.customers import read_customers
from ..ingest.receipts import read_receipts
from ..program.model import load_program
from ..scores import Scores


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
