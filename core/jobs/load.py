"""Batch jobs on a ledger: bulk loading receipt history, exactly once.

A load reads and validates every file, sets aside what cannot be loaded (bad rows, receipts
already in the ledger, receipts older than their customer's history), scores the rest with
the kernel from the customer state stored in the ledger, and commits chunk by chunk: each
chunk's receipts, journal entries, lots and customer state in one transaction. Receipt ids
are idempotency keys, so running the same load again (after a crash, or by mistake) loads
only what is missing and ends with the ledger an uninterrupted load would have produced.

Memory is bounded whatever the input's size. Input larger than one part
(:data:`~fidelis.core.ingest.staging.PART_ROWS` rows) is split by receipt id into parts that are
validated one at a time (:mod:`~fidelis.core.ingest.staging`); the receipts each part accepts are
set aside by customer partition (:mod:`~fidelis.core.engine.partition`), and each partition is
then put in processing order, scored and committed. A customer's receipts are all in one
partition, and scoring depends only on
each customer's own history, so every receipt scores exactly as in one pass over all input.
Everything is validated before the first write.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import pickle
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from ..batch import ReceiptBatch
from ..engine import kernel
from ..engine.partition import customer_partition
from ..errors import InputError, InputProblem
from ..ingest.customers import read_customers
from ..ingest.files import TableWriter
from ..ingest.fingerprints import receipt_fingerprints
from ..ingest.receipts import CheckedReceipts, check_segments
from ..ingest.return_rows import originals_outside, resolve_returns, with_returns
from ..ingest.staging import (
    PART_ROWS,
    StagedInput,
    remove_stale_scratch,
    scratch_folder,
    stage_receipts,
)
from ..ledger.customers import (
    add_customers,
    advance_state_generation,
    current_state_generation,
    load_state,
    reload_state,
    state_generation,
)
from ..ledger.handle import Ledger
from ..ledger.chunk_files import remove_uncommitted
from ..ledger.journal import finish_run, start_run
from ..ledger.receipts import stored_originals, vocabulary_ids
from ..program.tables import ProgramTables, compile_program
from ..returns import original_positions
from ..scores import Scores
from ..state import CustomerState
from .admission import (
    CLOSED,
    CONFLICT,
    FUTURE,
    FUTURE_TOLERANCE_US,
    LATE,
    Admission,
    Refusal,
    admit,
    receipts_over,
)
from .commit import append_chunk, sku_ids_of
from .rejects import Rejects, input_location, staged_receipt_ids

#: Receipts committed per transaction: bounds what a crash can cost and the memory of a chunk.
CHUNK_RECEIPTS = 200_000
#: Problems a load keeps to report (all are counted, and all go to the rejects file).
PROBLEMS_KEPT = 1_000


@dataclass
class LoadSummary:
    """What a load did, for the closing summary and the run record."""

    receipts_loaded: int = 0
    new_customers: int = 0
    points: int = 0
    rejected_rows: int = 0
    #: files left out whole (unreadable, missing columns, no rows), with --skip-bad
    rejected_files: int = 0
    duplicates_skipped: int = 0
    conflicts: int = 0
    #: before their customer's last receipt, or in a closed month
    late_receipts: int = 0
    #: dated further ahead of now than the tolerance (admission.FUTURE_TOLERANCE_US)
    future_receipts: int = 0
    returns_loaded: int = 0
    returns_refused: int = 0
    #: points returns took back, and (``negative_balance = "floor_zero"``) could not
    points_taken_back: int = 0
    points_unrecovered: int = 0
    seconds: float = 0.0
    #: where the time went: reading (and splitting) the files, validating, scoring, writing
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("reading", "validating", "scoring", "writing"), 0.0))
    #: the first PROBLEMS_KEPT problems, in the order found; ``problem_count`` counts them all
    problems: list[InputProblem] = field(default_factory=list)
    problem_count: int = 0

    def count_refusals(self, admission: Admission) -> None:
        self.conflicts += admission.count(CONFLICT)
        self.late_receipts += admission.count(LATE, CLOSED)
        self.future_receipts += admission.count(FUTURE)

    def add_problems(self, problems: list[InputProblem]) -> None:
        self.problems += problems[:max(PROBLEMS_KEPT - len(self.problems), 0)]
        self.problem_count += len(problems)

    def as_counts(self) -> dict[str, int]:
        return {
            "receipts_loaded": self.receipts_loaded, "new_customers": self.new_customers,
            "points": self.points, "rejected_rows": self.rejected_rows, "rejected_files": self.rejected_files,
            "duplicates_skipped": self.duplicates_skipped, "conflicts": self.conflicts,
            "late_receipts": self.late_receipts, "future_receipts": self.future_receipts,
            "returns_loaded": self.returns_loaded,
            "returns_refused": self.returns_refused, "points_taken_back": self.points_taken_back,
            "points_unrecovered": self.points_unrecovered,
        }


def load_files(
    ledger: Ledger,
    receipt_files: Sequence[str | Path],
    *,
    customers_file: str | Path | None = None,
    skip_bad: bool = False,
    rejects_file: str | Path | None = None,
    chunk_receipts: int = CHUNK_RECEIPTS,
    part_rows: int = PART_ROWS,
    allow_future: bool = False,
    progress: bool = False,
) -> LoadSummary:
    """Load receipt files into ``ledger`` exactly once; see the module docstring.

    Without ``skip_bad`` any bad row, conflicting receipt id or late receipt stops the load
    before anything is written (InputError listing the first problems and the total). With
    it, those rows go to ``rejects_file`` with reasons and the rest is loaded. ``part_rows``
    bounds how many input rows are validated at once, and so the load's memory.
    ``allow_future`` admits receipts dated any time ahead of now (synthetic data only).
    """
    started = time.perf_counter()
    if rejects_file is not None:
        TableWriter.check(rejects_file, [*receipt_files, *([customers_file] if customers_file else []), ledger.path])
    program = ledger.current_program()
    compiled = compile_program(program.program)
    info = program.program.info
    paths = [Path(path) for path in receipt_files]

    state = kernel.CustomerState.for_program(compiled)
    generation = state_generation(ledger)
    load_state(ledger, state)
    stored_customers = len(state)
    customers = read_customers(Path(customers_file)) if customers_file is not None else None
    if customers is not None:
        state.register_customers(customers)

    summary = LoadSummary()
    remove_stale_scratch(ledger.path.parent)
    with tqdm(desc="reading", unit=" rows", unit_scale=True, disable=not progress) as reading, \
            _timed(summary, "reading"):
        staged = stage_receipts(paths, timezone=info.timezone, minor_units=info.minor_units, part_rows=part_rows,
                                scratch=ledger.path.parent, skip_unusable=skip_bad,
                                progress=lambda source, rows: reading.update(rows))
    with staged, _Partitions(staged.part_count, ledger.path.parent) as partitions, \
            Rejects(rejects_file, staged.column_names) as rejects:
        summary.rejected_files = len({problem.file for problem in staged.unusable})
        summary.add_problems(staged.unusable)
        rejects.write_unusable(staged.unusable)
        # names get ledger ids up front, in input order, so that a rerun numbers them as an
        # uninterrupted load does whichever partitions it finds already loaded
        vocabulary: dict[str, dict[str, None]] = {"categories": {}, "skus": {}}
        for part in tqdm(range(staged.part_count), desc="checking", unit=" parts",
                         disable=not progress or staged.part_count == 1):
            segments = staged.segments(part)
            if not segments:  # no receipt id of this load hashes to this part
                continue
            with _timed(summary, "validating"):
                accepted = _check_part(ledger, segments, compiled, state, summary, rejects,
                                       None if allow_future else FUTURE_TOLERANCE_US)
            partitions.add(accepted, state.index_of(accepted.customer_id))
            vocabulary["categories"].update(dict.fromkeys(accepted.category_names))
            if accepted.line_sku is not None:
                vocabulary["skus"].update(dict.fromkeys(pc.unique(accepted.line_sku).drop_null().to_pylist()))
        if summary.problem_count and not skip_bad:
            raise InputError(summary.problems + [InputProblem(
                "<load>", None, None, None, "nothing was written; --skip-bad --rejects FILE loads the rest")],
                total=summary.problem_count + 1)
        summary.new_customers = len(state) - stored_customers
        arguments = {"files": [str(p) for p in paths], "customers": str(customers_file) if customers_file else None,
                     "skip_bad": skip_bad}
        with ledger.write() as connection:
            current = current_state_generation(connection)
            if current != generation:
                # another writer (a till through the API, another load) changed customers or
                # their state while this load read its files: start from the ledger as it is now
                state, stored_customers = _restate(ledger, compiled, state, stored_customers, customers)
            generation = advance_state_generation(ledger, connection, current, np.zeros(0, np.int32))
            run_id = start_run(connection, "load", arguments, {str(p): _file_sha256(p) for p in paths})
            remove_uncommitted(ledger)  # the files of killed loads, now settled as failed
            add_customers(connection, state, stored_customers, customers)
            for table, names in vocabulary.items():
                vocabulary_ids(connection, table, list(names))
        try:
            writer = _ChunkWriter(ledger, compiled, state, program.version, run_id, generation, chunk_receipts,
                                  summary)
            with tqdm(total=partitions.receipt_count, unit=" receipts", unit_scale=True, desc="loading",
                      disable=not progress) as loading:
                for batch in partitions:
                    for loaded, points in writer.load(batch):
                        summary.receipts_loaded += loaded
                        summary.points += points
                        loading.update(loaded)
            if writer.refused:
                _set_aside_refused(staged, writer.refused, summary, rejects)
        except BaseException:
            finish_run(ledger, run_id, "failed", summary.as_counts())
            raise
    summary.seconds = time.perf_counter() - started
    finish_run(ledger, run_id, "done", summary.as_counts())
    return summary


def _restate(ledger: Ledger, compiled: ProgramTables, stale: CustomerState, stored_customers: int,
             customers) -> tuple[CustomerState, int]:
    """The stored state as it is now, with the customers this load met for the first time
    registered after the ledger's (inside the caller's write transaction)."""
    state = kernel.CustomerState.for_program(compiled)
    load_state(ledger, state)
    now_stored = len(state)
    state.index_of(stale.customer_ids[stored_customers:])
    if customers is not None:
        state.register_customers(customers)
    return state, now_stored


@contextmanager
def _timed(summary: LoadSummary, stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        summary.stage_seconds[stage] += time.perf_counter() - started


def _check_part(ledger: Ledger, segments, compiled: ProgramTables, state: CustomerState, summary: LoadSummary,
                rejects: "Rejects", future_tolerance_us: int | None) -> ReceiptBatch:
    """Validate one part of the input and refuse what the ledger cannot take.

    Returns the receipts to load, in processing order, their content fingerprints in the
    metadata (``content_fingerprint``).
    """
    info = ledger.current_program().program.info
    checked = check_segments(segments, timezone=info.timezone, minor_units=info.minor_units)
    batch = checked.batch
    problems = list(checked.problems)
    summary.rejected_rows += int(checked.rejected.sum())
    refused_receipts: dict[str, str] = {}
    if checked.returns:
        batch = _with_returns(ledger, checked, batch, problems, refused_receipts, summary, info.timezone)

    fingerprints = batch.metadata["content_fingerprint"] = receipt_fingerprints(batch)
    receipt_ids = batch.receipt_id.to_pylist()
    keep = np.ones(len(batch), dtype=bool)

    def refuse(position: int, column: str, reason: str, value: str | None = None) -> None:
        keep[position] = False
        refused_receipts[receipt_ids[position]] = reason
        source, row = input_location(checked, int(batch.metadata["first_input_row"][position]))
        problems.append(InputProblem(source, row, column, receipt_ids[position] if value is None else value, reason))

    # A receipt's lines come from one file: the same id in two files of one load is two
    # exports of it (overlapping files), and merging them would double its lines.
    for position, files in _ids_in_several_files(checked, receipt_ids).items():
        summary.conflicts += 1
        refuse(position, "receipt_id",
               f"receipt {receipt_ids[position]!r} is in more than one file of this load ({', '.join(files)}); "
               "load overlapping files one at a time (receipts already loaded are skipped)")

    # beyond the engine's exact bounds: refused before anything is written
    amount_bound = compiled.amount_bound_minor
    for position in np.flatnonzero(keep & receipts_over(batch, amount_bound)):
        refuse(position, "amount", f"receipt {receipt_ids[position]!r} is larger than the engine's exact-arithmetic "
                                   f"bound of {amount_bound} minor units")

    # exactly once, in order, never from the future or into a closed month (the rule is
    # evaluated again inside each chunk's write)
    admission = admit(ledger, batch, fingerprints, state, among=keep, future_tolerance_us=future_tolerance_us)
    summary.duplicates_skipped += int(admission.duplicate.sum())
    summary.count_refusals(admission)
    for position, refusal in admission.refused.items():
        refuse(position, refusal.column, refusal.reason, refusal.value)
    keep &= ~admission.duplicate
    # a return whose original this load refuses is refused with it
    originals = original_positions(batch)
    for position in np.flatnonzero(keep & (originals >= 0)):
        if not keep[originals[position]]:
            summary.returns_refused += 1
            refuse(position, "original_receipt_id",
                   _original_not_loaded(receipt_ids[originals[position]]))

    summary.add_problems(problems)
    rejects.write(checked, problems, refused_receipts)
    return batch if keep.all() else batch.take(np.flatnonzero(keep))




def _with_returns(ledger: Ledger, checked: CheckedReceipts, batch: ReceiptBatch, problems: list[InputProblem],
                  refused_receipts: dict[str, str], summary: LoadSummary, timezone: str) -> ReceiptBatch:
    """The part's sales with its valid return rows resolved into return receipts; returns
    that cannot be resolved are refused (their rows to the rejects, with the reason)."""
    return_of_row = {(line.source, line.row): line.return_id for line in checked.returns}
    returned, refused = resolve_returns(checked.returns, batch, functools.partial(stored_originals, ledger), timezone)
    problems += refused
    summary.rejected_rows += len(refused)
    for problem in refused:
        refused_receipts[return_of_row[(problem.file, problem.row)]] = f"{problem.column}: {problem.reason}"
    summary.returns_refused += len({return_of_row[(problem.file, problem.row)] for problem in refused})
    return with_returns(batch, returned)


class _Partitions:
    """Accepted receipts set aside by customer, then handed out partition by partition in processing order.

    With one partition they stay in memory as they are; with more, each part's receipts are
    appended to one scratch file per partition and a partition is read back whole, so memory
    holds one part or one partition at a time.
    """

    def __init__(self, partition_count: int, scratch: Path):
        self.partition_count = partition_count
        self.receipt_count = 0
        self._kept: list[ReceiptBatch] = []
        self._folder = None if partition_count == 1 else scratch_folder("partitions", scratch)

    def add(self, batch: ReceiptBatch, customer_index: np.ndarray) -> None:
        self.receipt_count += len(batch)
        if self._folder is None:
            self._kept.append(batch)
            return
        # customers by engine partition; anonymous receipts touch no state, so they spread evenly
        number_of = np.where(customer_index < 0, np.arange(len(batch)) % self.partition_count,
                             customer_partition(customer_index, self.partition_count))
        for number in np.unique(number_of):
            with (self._folder / f"partition{number}.pickle").open("ab") as handle:
                pickle.dump(batch.take(np.flatnonzero(number_of == number)), handle,
                            protocol=pickle.HIGHEST_PROTOCOL)

    def __iter__(self) -> Iterator[ReceiptBatch]:
        if self._folder is None:
            yield from self._kept
            return
        for number in range(self.partition_count):
            path = self._folder / f"partition{number}.pickle"
            if not path.exists():
                continue
            pieces = []
            with path.open("rb") as handle:
                while True:
                    try:
                        pieces.append(pickle.load(handle))
                    except EOFError:
                        break
            path.unlink()
            yield ReceiptBatch.concat(pieces)

    def __enter__(self) -> "_Partitions":
        return self

    def __exit__(self, *exc) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


class _ChunkWriter:
    """Scores batches and commits them chunk by chunk, each under the admission rule.

    Each chunk is admitted, scored and written inside one write transaction, so whatever
    another writer committed before it — tills accruing through the API while an export
    loads, another load, a month-end closing a month — is seen: receipts it stored are
    duplicates or conflicts, receipts it made late or closed are refused, counted and named.
    Once another writer is seen (the state generation moved), every chunk's customers are
    read back from the ledger before it is scored, so the load builds on what the others
    wrote instead of overwriting it.
    """

    def __init__(self, ledger: Ledger, compiled: ProgramTables, state: CustomerState, program_version: int,
                 run_id: int, generation: int, chunk_receipts: int, summary: LoadSummary):
        self.ledger, self.compiled, self.state, self.summary = ledger, compiled, state, summary
        self.program_version, self.run_id, self.generation = program_version, run_id, generation
        self.chunk_receipts = chunk_receipts
        self.out = Scores.empty(1)
        #: once another writer is seen, each chunk's customers are read back from the ledger
        self.resync = False
        #: receipts refused at write time (another writer came in), by receipt id
        self.refused: dict[str, Refusal] = {}

    def load(self, batch: ReceiptBatch) -> Iterator[tuple[int, int]]:
        """Commit ``batch`` (in processing order); yields (receipts, points) per committed chunk."""
        if len(self.out) < min(self.chunk_receipts, len(batch)):
            self.out = Scores.empty(min(self.chunk_receipts, len(batch)))
        prepared = _by_customer(kernel.prepare(batch, self.compiled, self.state))
        batch = prepared.batch
        with self.ledger.write() as connection:
            category_ids = vocabulary_ids(connection, "categories", batch.category_names)
            sku_ids = sku_ids_of(self.ledger, connection, batch)
        for chunk, prints, skus in self._chunks(prepared, batch.metadata["content_fingerprint"], sku_ids):
            started, scoring = time.perf_counter(), 0.0
            with self.ledger.write() as connection:
                current = current_state_generation(connection)
                if current != self.generation:
                    self.resync = True  # another writer wrote meanwhile: from now on, trust the ledger
                if self.resync:
                    reload_state(self.ledger, self.state, np.unique(chunk.customer_index[chunk.customer_index >= 0]))
                # no one else stored receipts since the last chunk unless the generation moved
                admission = admit(self.ledger, chunk.batch, prints, self.state, look_up_stored=self.resync,
                                  future_tolerance_us=None,  # (the clock only moves on since validation)
                                  customer_index=chunk.customer_index)
                keep = self._admitted(chunk, admission)
                if not keep.all():
                    chunk, prints, skus = _kept(chunk, keep, prints, skus)
                scored = time.perf_counter()
                scores = kernel.score(chunk, self.compiled, self.state, out=self.out,
                                      originals=self._stored_originals(chunk.batch))
                scoring = time.perf_counter() - scored
                self.generation = advance_state_generation(self.ledger, connection, current, chunk.batch.local_month)
                unrecovered = append_chunk(connection, self.ledger, chunk, scores, prints, category_ids,
                                           skus, self.program_version, self.run_id, self.state, to_file=True)
            self.summary.stage_seconds["scoring"] += scoring
            self.summary.stage_seconds["writing"] += time.perf_counter() - started - scoring
            returns = chunk.batch.is_return
            self.summary.returns_loaded += int(returns.sum())
            self.summary.points_taken_back += -int(scores.points[returns].sum())
            self.summary.points_unrecovered += unrecovered
            yield len(chunk.batch), int(scores.points[:len(chunk.batch)][~returns].sum())

    def _chunks(self, prepared: kernel.PreparedBatch, prints: np.ndarray, sku_ids: np.ndarray | None
                ) -> Iterator[tuple[kernel.PreparedBatch, np.ndarray, np.ndarray | None]]:
        """The prepared batch ``chunk_receipts`` at a time, with each chunk's fingerprints and sku ids."""
        batch = prepared.batch
        for start in range(0, len(batch), self.chunk_receipts):
            stop = min(start + self.chunk_receipts, len(batch))
            chunk = dataclasses.replace(prepared, batch=batch.slice(start, stop),
                                        customer_index=prepared.customer_index[start:stop])
            skus = None if sku_ids is None else sku_ids[batch.line_offsets[start]:batch.line_offsets[stop]]
            yield chunk, prints[start:stop], skus

    def _admitted(self, chunk: kernel.PreparedBatch, admission: Admission) -> np.ndarray:
        """Which receipts of the chunk go in; the others another writer made duplicates,
        conflicts, late or closed while this load ran: counted and named, not loaded."""
        self.summary.duplicates_skipped += int(admission.duplicate.sum())
        self.summary.count_refusals(admission)
        admitted = admission.admitted
        receipt_ids = chunk.batch.receipt_id
        for position, refusal in admission.refused.items():
            self.refused[receipt_ids[position].as_py()] = refusal
        originals = chunk.batch.original_receipt_id
        if self.refused and originals is not None:  # a return whose original was refused goes with it
            for position in np.flatnonzero(chunk.batch.is_return & admitted).tolist():
                original = originals[position].as_py()
                if original in self.refused:
                    admitted[position] = False
                    self.summary.returns_refused += 1
                    receipt_id = receipt_ids[position].as_py()
                    self.refused[receipt_id] = Refusal("original", "original_receipt_id", receipt_id,
                                                       _original_not_loaded(original))
        return admitted

    def _stored_originals(self, chunk: ReceiptBatch) -> dict:
        """Originals of the chunk's returns that are not in the chunk: loaded before, or in an
        earlier chunk of this load (committed by now)."""
        return stored_originals(self.ledger, originals_outside(chunk))


def _original_not_loaded(original_id: str) -> str:
    """Why a return goes with its refused original, at validation or at write time."""
    return f"its original receipt {original_id!r} was not loaded"


def _set_aside_refused(staged: StagedInput, refused: dict[str, Refusal], summary: LoadSummary,
                       rejects: Rejects) -> None:
    """Name the receipts refused at write time by file and row, and put their rows in the
    rejects file, as for those refused at validation: they are found again in the staged input."""
    reasons = {receipt_id: f"{refusal.reason} (another writer came in while this load ran); not loaded"
               for receipt_id, refusal in refused.items()}
    wanted = pa.array(list(refused), pa.string())
    located = []
    for part in range(staged.part_count):
        segments = staged.segments(part)
        for segment in segments:
            receipt_column = staged_receipt_ids(segment)
            positions = np.flatnonzero(
                pc.is_in(receipt_column, value_set=wanted).fill_null(False).to_numpy(zero_copy_only=False))
            summary.rejected_rows += len(positions)
            first_rows: dict[str, int] = {}
            for receipt_id, row in zip(receipt_column.take(pa.array(positions)).to_pylist(),
                                       segment.source_rows(positions).tolist()):
                first_rows.setdefault(receipt_id, row)
            for receipt_id, row in first_rows.items():
                refusal = refused[receipt_id]
                located.append(InputProblem(segment.source, row, refusal.column, refusal.value, reasons[receipt_id]))
        rejects.write_refused(segments, reasons)
    summary.add_problems(sorted(located, key=lambda problem: (problem.file, problem.row)))


def _ids_in_several_files(checked: CheckedReceipts, receipt_ids: list[str]) -> dict[int, list[str]]:
    """Positions (in the batch) of receipts whose id appears in more than one input file."""
    if len({segment.source for segment in checked.segments}) < 2:
        return {}
    sources: dict[str, list[str]] = {}
    for segment in checked.segments:
        for receipt_id in pc.unique(segment.table.column("receipt_id").cast(pa.string())).to_pylist():
            sources.setdefault(receipt_id, []).append(segment.source)
    return {position: sources[receipt_id] for position, receipt_id in enumerate(receipt_ids)
            if len(sources.get(receipt_id, ())) > 1}


def _by_customer(prepared: kernel.PreparedBatch) -> kernel.PreparedBatch:
    """A partition's receipts customer by customer, each customer's in processing order (a
    stable sort), the order they are scored and written in.

    The indexes by customer (receipts, journal) then fill page after page instead of at random
    places: writing a 2 M-receipt CSV took 40–46 s instead of 47–49 s. The order
    depends on the partition alone, not on where chunks end, so a resumed load writes what an
    uninterrupted one does.
    """
    order = np.argsort(prepared.customer_index, kind="stable")
    if len(order) < 2 or (np.diff(order) == 1).all():
        return prepared
    return dataclasses.replace(prepared, batch=prepared.batch.take(order), customer_index=prepared.customer_index[order])


def _kept(chunk: kernel.PreparedBatch, keep: np.ndarray, prints: np.ndarray, skus: np.ndarray | None):
    """A prepared chunk, its fingerprints and its lines' sku ids, without the receipts not kept."""
    positions = np.flatnonzero(keep)
    if skus is not None:
        skus = skus[np.repeat(keep, np.diff(chunk.batch.line_offsets))]
    return dataclasses.replace(chunk, batch=chunk.batch.take(positions),
                               customer_index=chunk.customer_index[positions]), prints[positions], skus



def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
