"""Fidelis core: program files, exact scoring engines, receipt I/O, customer state.

The names below are the public API the CLI, the batch scripts and the server build on.
"""
from .batch import CustomerTable, ReceiptBatch
from .compiled import CompiledProgram, compile_program
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
from .program import Program, load_program, parse_program
from .scores import Scores
from .scoring import ENGINES, ScoreResult, score_batch, score_files
from .state import CustomerState

__all__ = [
    "CompiledProgram",
    "CustomerState",
    "CustomerTable",
    "ENGINES",
    "ExtensionNotBuiltError",
    "FidelisError",
    "InputError",
    "InputProblem",
    "OutputError",
    "Program",
    "ProgramError",
    "ProgramIssue",
    "ReceiptBatch",
    "ScoreResult",
    "Scores",
    "ScoringError",
    "UnsupportedFileError",
    "compile_program",
    "load_program",
    "parse_program",
    "score_batch",
    "score_files",
]
