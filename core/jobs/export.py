"""Exports: every customer's balance to a file."""

from __future__ import annotations

import itertools
from pathlib import Path

import pyarrow as pa

from ..ingest.files import TableWriter
from ..ledger.handle import Ledger
from ..ledger.journal import balances


def export_balances(ledger: Ledger, path: str | Path, *, batch_customers: int = 100_000) -> int:
    """Every customer's balance (Σ journal) to a CSV or Parquet file, in batches; the count."""
    TableWriter.check(path)
    rows = balances(ledger)
    written = 0
    with TableWriter(path, pa.schema([("customer_id", pa.string()), ("points", pa.int64())])) as writer:
        while batch := list(itertools.islice(rows, batch_customers)):
            customer_ids, points = zip(*batch)
            writer.write(pa.table({"customer_id": pa.array(customer_ids, pa.string()),
                                   "points": pa.array(points, pa.int64())}))
            written += len(batch)
    return written
