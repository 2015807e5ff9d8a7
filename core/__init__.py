"""Fidelis core: program files, exact scoring engines, receipt I/O, customer state.

The names below are the public API the CLI, the batch scripts and the server build on.
Importing this package does not load the compiled kernel; ``fidelis.core.kernel`` and the
batch jobs in ``fidelis.core.jobs`` do, when they are imported.
"""
from .batch import CustomerTable, ReceiptBatch
from .program.tables import CompiledProgram, compile_program
from .errors import (
    ExtensionNotBuiltError,
    FidelisError,
    InputError,
    InputProblem,
    OutputError,
    ProgramError,
    ProgramIssue,
    ScoringError,
    UnsupportedFileError,
)
from .errors import IdempotencyConflict, InsufficientPoints, LedgerError, LedgerBusy, RedemptionError, UnknownCustomer
from .ledger.handle import Ledger, Redemption, Standing
from .program.model import Program, load_program, parse_program
from .scores import Scores
from .engine.engines import ENGINES, ScoreResult, score_batch, score_files
from .state import CustomerState

__all__ = [
    "CompiledProgram",
    "CustomerState",
    "CustomerTable",
    "ENGINES",
    "ExtensionNotBuiltError",
    "FidelisError",
    "IdempotencyConflict",
    "InsufficientPoints",
    "InputError",
    "InputProblem",
    "Ledger",
    "LedgerBusy",
    "LedgerError",
    "UnknownCustomer",
    "OutputError",
    "Program",
    "ProgramError",
    "ProgramIssue",
    "ReceiptBatch",
    "Redemption",
    "RedemptionError",
    "ScoreResult",
    "Scores",
    "ScoringError",
    "Standing",
    "UnsupportedFileError",
    "compile_program",
    "load_program",
    "parse_program",
    "score_batch",
    "score_files",
]
