"""The rejects file of a load: every rejected input row as it came, and why."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputProblem
from ..ingest.columns import InputSegment, identifier_column
from ..ingest.files import TableWriter
from ..ingest.receipts import CheckedReceipts


class Rejects:
    """The rejects file, written part by part: every rejected input row as it came, and why.

    Rows with a bad value carry that value's reasons; the other rows of their receipt carry
    "another row of this receipt is bad"; every row of a receipt the ledger refused (a
    conflict, a late receipt) carries that reason. Without a file, nothing is kept.
    """

    def __init__(self, path: str | Path | None, column_names: list[str]):
        schema = pa.schema([("file", pa.string()), ("row", pa.int64()), ("reason", pa.string())]
                           + [(name, pa.string()) for name in column_names if name not in ("file", "row", "reason")])
        self._writer = None if path is None else TableWriter(path, schema)

    def write(self, checked: CheckedReceipts, problems: list[InputProblem], refused_receipts: dict[str, str]) -> None:
        """The rows a part's check rejected, and every row of the receipts refused by the ledger."""
        if self._writer is None:
            return
        reasons: dict[tuple[str, int], list[str]] = {}
        for problem in problems:
            if problem.row is not None and problem.value not in refused_receipts:
                reasons.setdefault((problem.file, problem.row), []).append(
                    f"{problem.column}: {problem.reason}" if problem.column else problem.reason)
        self.write_refused(checked.segments, refused_receipts, checked.rejected, reasons)

    def write_refused(self, segments: list[InputSegment], refused_receipts: dict[str, str],
                      rejected: np.ndarray | None = None, reasons: dict[tuple[str, int], list[str]] | None = None,
                      ) -> None:
        """Every row of ``segments`` that is ``rejected`` or of a refused receipt, as it came."""
        if self._writer is None:
            return
        refused_ids = pa.array(list(refused_receipts), pa.string())
        for segment in segments:
            end = segment.start + segment.table.num_rows
            mask = np.zeros(segment.table.num_rows, dtype=bool) if rejected is None else rejected[segment.start:end].copy()
            receipt_column = staged_receipt_ids(segment)
            if len(refused_ids):
                mask |= pc.is_in(receipt_column, value_set=refused_ids).fill_null(False).to_numpy(zero_copy_only=False)
            positions = np.flatnonzero(mask)
            if not len(positions):
                continue
            rows = segment.table.take(pa.array(positions))
            row_numbers = segment.source_rows(positions).tolist()
            row_receipts = receipt_column.take(pa.array(positions)).to_pylist()
            self._writer.write(pa.table({
                "file": pa.array([segment.source] * len(positions), pa.string()),
                "row": pa.array(row_numbers, pa.int64()),
                "reason": pa.array([
                    refused_receipts.get(receipt) or "; ".join(
                        (reasons or {}).get((segment.source, row), ["another row of this receipt is bad"]))
                    for row, receipt in zip(row_numbers, row_receipts)
                ], pa.string()),
                **{name: rows.column(name).cast(pa.string()) for name in rows.column_names},
            }))

    def write_unusable(self, problems: list[InputProblem]) -> None:
        """Files left out whole: one entry per problem, without a row unless it names one."""
        if self._writer is not None and problems:
            self._writer.write(pa.table({
                "file": pa.array([problem.file for problem in problems], pa.string()),
                "row": pa.array([problem.row for problem in problems], pa.int64()),
                "reason": pa.array([f"the file was not loaded: {problem}" for problem in problems], pa.string()),
            }))

    def __enter__(self) -> "Rejects":
        return self

    def __exit__(self, *exc) -> None:
        if self._writer is not None:
            self._writer.close()




def staged_receipt_ids(segment: InputSegment) -> pa.ChunkedArray:
    """A segment's receipt ids as the readers give them to the batch (text, spaces trimmed),
    to find the rows of receipts named by id."""
    ids, _ = identifier_column(segment.table.column("receipt_id"), allow_integers=True)
    return segment.table.column("receipt_id").cast(pa.string()) if ids is None else ids


def input_location(checked: CheckedReceipts, input_row: int) -> tuple[str, int]:
    """(file, 1-based row) of a row numbered among all input rows of a check."""
    for segment in checked.segments:
        if segment.start <= input_row < segment.start + segment.table.num_rows:
            return segment.source, int(segment.source_rows(np.array([input_row - segment.start]))[0])
    raise IndexError(input_row)
