"""The charts of the analytics reports (matplotlib with the Agg backend, imported when drawn)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .month_report import MonthReport


def plot_month(report: MonthReport, path: Path) -> Path:
    """The month's chart as a PNG at ``path`` (matplotlib, Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (flows, people, moves) = plt.subplots(1, 3, figsize=(15, 4.5))
    kinds = list(report.points)
    flows.bar(kinds, [report.points[kind] for kind in kinds], color=["#2a9d8f", "#e9c46a", "#e76f51", "#8d99ae",
                                                                     "#264653"])
    flows.set_title(f"Points in {report.label}")
    flows.ticklabel_format(axis="y", style="plain")
    people.bar(list(report.customers), list(report.customers.values()), color="#457b9d")
    people.set_title("Customers")
    if report.moves is not None:
        shown = moves.imshow(report.moves, cmap="Blues")
        moves.set_xticks(range(len(report.tier_names)), report.tier_names)
        moves.set_yticks(range(len(report.tier_names)), report.tier_names)
        moves.set_xlabel("to")
        moves.set_ylabel("from")
        for (source, target), count in np.ndenumerate(report.moves):
            dark = count > report.moves.max() / 2
            moves.text(target, source, f"{count:,}", ha="center", va="center", fontsize=8,
                       color="white" if dark else "black")
        figure.colorbar(shown, ax=moves)
    moves.set_title("Tier movements at the close" if report.moves is not None else "Month not closed yet")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
