"""Exceptions a user can act on.

Every error Fidelis raises on purpose is a :class:`FidelisError`. Each subclass names the
condition and carries the context needed to fix it (file, row, field, value, reason). The
CLI and the HTTP layer translate them in one place each, so a user never sees a traceback.

Names: a class ending in ``Error`` is a kind of failure that callers catch as a group
(:class:`InputError`, :class:`LedgerError`); a specific refusal inside one is named for what
happened, without the suffix (:class:`InsufficientPoints`, :class:`LateReceipt`,
:class:`LedgerBusy`), so that ``except LedgerError`` reads as a category and
``except LateReceipt`` as a case.
"""
from __future__ import annotations

from dataclasses import dataclass


class FidelisError(Exception):
    """Base of every error Fidelis raises on purpose."""


@dataclass(frozen=True)
class ProgramIssue:
    """One problem in a program file, located by its path (``tiers[2].threshold``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ProgramError(FidelisError):
    """A program file is unreadable or breaks the rules of PROGRAM.md.

    Carries every issue found, not just the first, so one edit fixes them all.
    """

    def __init__(self, source: str, issues: list[ProgramIssue]):
        self.source = source
        self.issues = list(issues)
        count = len(self.issues)
        lines = [f"{source}: {count} error{'s' if count != 1 else ''} in the program"]
        lines += [f"  {issue}" for issue in self.issues]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class InputProblem:
    """One bad value in an input file. ``row`` is 1-based over data rows (the header is row 0)."""

    file: str
    row: int | None
    column: str | None
    value: str | None
    reason: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column:
            where += f", column {self.column!r}"
        shown = "" if self.value is None else f" (value {self.value!r})"
        return f"{where}: {self.reason}{shown}"


class InputError(FidelisError):
    """Input files hold rows that cannot be scored; lists the first problems and the total."""

    MAX_LISTED = 20

    def __init__(self, problems: list[InputProblem], total: int | None = None):
        self.problems = list(problems)
        self.total = len(self.problems) if total is None else total
        shown = self.problems[: self.MAX_LISTED]
        lines = [f"{self.total} problem{'s' if self.total != 1 else ''} in the input:"]
        lines += [f"  {problem}" for problem in shown]
        if self.total > len(shown):
            lines.append(f"  … and {self.total - len(shown)} more")
        super().__init__("\n".join(lines))


class UnsupportedFileError(FidelisError):
    """A file whose type Fidelis cannot read (by its extension)."""


class OutputError(FidelisError):
    """An output file cannot be written where it was asked for."""


class ScoringError(FidelisError):
    """The kernel stopped on a receipt rather than produce a wrong number.

    Raised for amounts or points beyond the engine's exact-arithmetic bound and for a
    receipt older than what the customer's history already holds.
    """

    def __init__(self, reason: str, receipt_id: str | None = None):
        self.reason = reason
        self.receipt_id = receipt_id
        where = f"receipt {receipt_id!r}: " if receipt_id is not None else ""
        super().__init__(where + reason)


class ExtensionNotBuiltError(FidelisError, ImportError):
    """The compiled kernel is missing: the package was not built or installed."""


class IncompatibleStateError(FidelisError, ValueError):
    """A state, prepared batch and compiled program that do not belong together."""


class LedgerError(FidelisError):
    """The ledger cannot do what was asked (missing, wrong program, inconsistent)."""


class MonthError(LedgerError):
    """A month given as text that is not ``YYYY-MM`` within the supported years."""


class RedemptionError(LedgerError):
    """A redemption the program's rules or the customer's balance do not allow."""


class InsufficientPoints(RedemptionError):
    """The customer has fewer points than the redemption asks for."""

    def __init__(self, customer_id: str, requested: int, balance: int):
        self.customer_id, self.requested, self.balance = customer_id, requested, balance
        super().__init__(f"customer {customer_id!r} has {balance} points; {requested} cannot be redeemed")


class IdempotencyConflict(LedgerError):
    """A request reuses an idempotency key with different content."""


class UnknownCustomer(LedgerError):
    """No customer with this id in the ledger."""


class CorruptReceiptLines(LedgerError):
    """Stored receipt lines that are not whole line records (``check`` names the receipts)."""


class LedgerFull(LedgerError):
    """The disk (or the ledger's size limit) is full: the write was rolled back whole."""


class LedgerBusy(LedgerError):
    """Another process holds the ledger's write lock for longer than the busy timeout."""


class UnknownReceipt(LedgerError):
    """No receipt with this id in the ledger."""


class ReceiptConflict(LedgerError):
    """A receipt id already in the ledger for a receipt with other content."""


class LateReceipt(LedgerError):
    """A receipt before its customer's last one, or in a closed month: history is not rescored."""
