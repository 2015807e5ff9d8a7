"""The month-end report: what the program issued, what it owes, how customers moved.

Finance reads the points figures and the liability; the loyalty team the movements and the
customer counts. Every figure comes from the ledger's own tables (the journal for points,
receipts for customers and sales, the month's close for tier movements), so the report
agrees with balances and with ``fidelis check``. Written as CSV files and PNG plots, with a
short summary for the terminal.

Definitions:

- *issued*, *redeemed*, *expired*, *reversed*, *adjusted*: the journal entries of each kind
  dated in the month (points, expiries as positive numbers); *unrecovered*: what the month's
  returns could not take back because it was spent (``negative_balance = "floor_zero"``);
- *outstanding*: the sum of every positive balance at the month's end, in points and, with
  ``[redemption] point_value``, in currency; *owed by customers*: the negative balances
  (returns of spent points under ``negative_balance = "allow"``), which later earnings pay;
- *breakage rate*: points expired so far ÷ points issued so far (through the month's end);
- *active*: customers with a receipt in the month; *new*: whose first receipt is in it;
  *lapsed*: who bought in the twelve months before the last three but not in those three
  (the month included);
- *identified share*: the share of the month's sales (all lines, in minor units) on
  receipts with a customer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import LedgerError
from ..ingest.files import write_table
from ..ledger.closes import close_record, movements_of
from ..ledger.figures import (
    customer_activity,
    journal_flows,
    outstanding_points,
    sales_split,
    unrecovered_points,
)
from ..ledger.handle import Ledger
from ..localtime import month_label, month_start_us
from .plots import plot_month

#: Months without a purchase after which a customer counts as lapsed, and the look-back before them.
LAPSED_AFTER_MONTHS = 3
LOOK_BACK_MONTHS = 12


@dataclass
class MonthReport:
    month: int
    currency: str
    points: dict[str, int]
    outstanding_points: int
    owed_by_customers: int
    #: None when the program gives no point value
    outstanding_value: Decimal | None
    breakage_rate: float | None
    customers: dict[str, int]
    identified_share: float | None
    tier_names: list[str]
    #: moves[from][to] = customers; None when the month is not closed yet
    moves: np.ndarray | None = field(default=None)

    @property
    def label(self) -> str:
        return month_label(self.month)

    def summary(self) -> str:
        """The report as a person reads it in a terminal."""
        points = self.points
        lines = [f"Month-end report {self.label}",
                 "  points: " + ", ".join(f"{kind} {value:,}" for kind, value in points.items())]
        value = "" if self.outstanding_value is None else f" ({self.outstanding_value:,} {self.currency})"
        lines.append(f"  outstanding: {self.outstanding_points:,} points{value}")
        if self.owed_by_customers:
            lines.append(f"  owed by customers (returns of spent points): {self.owed_by_customers:,} points")
        if self.breakage_rate is not None:
            lines.append(f"  breakage rate to date: {self.breakage_rate:.1%}")
        lines.append("  customers: " + ", ".join(f"{kind} {count:,}" for kind, count in self.customers.items()))
        if self.identified_share is not None:
            lines.append(f"  sales by identified customers: {self.identified_share:.1%}")
        if self.moves is None:
            lines.append("  tier movements: the month is not closed yet (fidelis month-end)")
        else:
            moved = int(self.moves.sum())
            lines.append(f"  tier movements: {moved:,} customers moved")
            for source, row in enumerate(self.moves):
                for target, count in enumerate(row):
                    if count:
                        lines.append(f"    {self.tier_names[source]} → {self.tier_names[target]}: {int(count):,}")
        return "\n".join(lines)


def month_report(ledger: Ledger, month: int) -> MonthReport:
    """Every figure of the report for one local month (see the module docstring)."""
    program = ledger.current_program().program
    timezone = program.info.timezone
    start_us, end_us = month_start_us(month, timezone), month_start_us(month + 1, timezone)
    flows = journal_flows(ledger, start_us, end_us)
    points = {"issued": flows.get("earn", 0), "redeemed": -flows.get("redeem", 0),
              "expired": -flows.get("expire", 0), "reversed": -flows.get("reverse", 0),
              "adjusted": flows.get("adjust", 0), "unrecovered": unrecovered_points(ledger, start_us, end_us)}
    outstanding, owed_by_customers = outstanding_points(ledger, end_us)
    value = None
    if program.redemption.point_value is not None:
        value = (outstanding * program.redemption.point_value).quantize(Decimal(1).scaleb(-program.info.minor_units))
    to_date = journal_flows(ledger, None, end_us)
    issued_to_date = to_date.get("earn", 0)
    breakage = -to_date.get("expire", 0) / issued_to_date if issued_to_date else None
    look_back = month_start_us(month - LAPSED_AFTER_MONTHS - LOOK_BACK_MONTHS + 1, timezone)
    recent = month_start_us(month - LAPSED_AFTER_MONTHS + 1, timezone)
    customers = customer_activity(ledger, start_us, end_us, look_back, recent)
    identified, total = sales_split(ledger, start_us, end_us)
    tier_names = [tier.name for tier in program.tiers]
    moves = None
    if close_record(ledger, month) is not None:
        moves = np.zeros((len(tier_names), len(tier_names)), dtype=np.int64)
        for source, target in movements_of(ledger, month).values():
            moves[source, target] += 1
    return MonthReport(month, program.info.currency, points, outstanding, owed_by_customers, value, breakage, customers,
                       identified / total if total else None, tier_names, moves)


def write_report(report: MonthReport, folder: str | Path) -> list[Path]:
    """The report as CSV files and PNG plots in ``folder``; the paths written."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LedgerError(f"{folder}: the folder does not exist")
    written = []
    figures = {**{f"points_{kind}": value for kind, value in report.points.items()},
               "outstanding_points": report.outstanding_points,
               "owed_by_customers": report.owed_by_customers,
               "outstanding_value": None if report.outstanding_value is None else str(report.outstanding_value),
               "breakage_rate": report.breakage_rate,
               **{f"customers_{kind}": count for kind, count in report.customers.items()},
               "identified_share": report.identified_share}
    summary = folder / f"report-{report.label}.csv"
    write_table(pa.table({"figure": list(figures), "value": [None if v is None else str(v) for v in figures.values()]}),
                summary)
    written.append(summary)
    if report.moves is not None:
        movements = folder / f"tier-movements-{report.label}.csv"
        write_table(pa.table({"from": report.tier_names, **{name: report.moves[:, index].tolist()
                                                            for index, name in enumerate(report.tier_names)}}),
                    movements)
        written.append(movements)
    written.append(plot_month(report, folder / f"report-{report.label}.png"))
    return written
