"""Print a benchmark run as Markdown: medians, receipts/s and ratios, and the project's targets.

Usage (from the repository root)::

    python -m pytest benchmarks/ --benchmark-json=bench.json
    python benchmarks/report.py bench.json

Ratios are computed from the medians of one run, so every contender saw the same machine
state. Standard library only, so it runs wherever the JSON is.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

#: (description, test name, peer test names, minimum ratio peer median / test median)
RATIO_TARGETS = (
    ("kernel 1 thread ≥ 20× the fastest peer", "test_fidelis_kernel_1_thread",
     ("test_numpy", "test_polars", "test_duckdb"), 20.0),
    ("kernel 2 threads (customers partitioned) ≥ 1.7× 1 thread", "test_kernel_2_customer_partitions",
     ("test_kernel_threads[1]",), 1.7),
    ("CSV → scores ≥ 1.2× polars end to end", "test_fidelis_score_files", ("test_polars_pipeline",), 1.2),
    ("load ≥ 80 % of raw executemany of the same rows", "test_fidelis_load",
     ("test_raw_executemany_of_the_same_rows",), 0.8),
)
#: (description, test name, minimum receipts/s)
THROUGHPUT_TARGETS = (("kernel 1 thread ≥ 25 M receipts/s", "test_fidelis_kernel_1_thread", 25e6),)


def load_medians(path: Path) -> tuple[dict[str, list[dict]], dict]:
    """Benchmarks by group (in run order) and the machine info of the run."""
    data = json.loads(path.read_text(encoding="utf-8"))
    groups: dict[str, list[dict]] = defaultdict(list)
    for bench in data["benchmarks"]:
        groups[bench["group"] or "(no group)"].append(bench)
    return groups, data.get("machine_info", {})


def receipts_per_s(bench: dict) -> float | None:
    receipts = bench.get("extra_info", {}).get("receipts")
    return receipts / bench["stats"]["median"] if receipts else None


def group_table(benches: list[dict]) -> list[str]:
    fastest = min(bench["stats"]["median"] for bench in benches)
    rows = [
        "| benchmark | median (s) | receipts/s | × fastest's time | rounds |",
        "|---|---:|---:|---:|---:|",
    ]
    for bench in sorted(benches, key=lambda b: b["stats"]["median"]):
        rate = receipts_per_s(bench)
        rows.append(
            f"| {bench['name']} | {bench['stats']['median']:.4f} | "
            f"{'' if rate is None else f'{rate / 1e6:,.2f} M'} | "
            f"{bench['stats']['median'] / fastest:.2f} | {bench['stats']['rounds']} |"
        )
    return rows


def target_rows(groups: dict[str, list[dict]]) -> list[str]:
    medians = {bench["name"]: bench["stats"]["median"] for benches in groups.values() for bench in benches}
    by_name = {bench["name"]: bench for benches in groups.values() for bench in benches}
    rows = ["| target | measured | met |", "|---|---:|:-:|"]
    for description, name, minimum in THROUGHPUT_TARGETS:
        if name in by_name:
            rate = receipts_per_s(by_name[name])
            rows.append(f"| {description} | {rate / 1e6:.1f} M/s | {'yes' if rate >= minimum else 'no'} |")
    for description, name, peers, minimum in RATIO_TARGETS:
        present = [peer for peer in peers if peer in medians]
        if name in medians and present:
            fastest_peer = min(present, key=medians.get)
            ratio = medians[fastest_peer] / medians[name]
            rows.append(
                f"| {description} | {ratio:.2f}× (vs {fastest_peer}) | {'yes' if ratio >= minimum else 'no'} |"
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="the file written by pytest --benchmark-json")
    arguments = parser.parse_args(argv)
    groups, machine = load_medians(arguments.json)
    cpu = machine.get("cpu", {})
    print(f"Machine: {cpu.get('brand_raw', '?')}, {cpu.get('count', '?')} cores; "
          f"Python {machine.get('python_version', '?')}\n")
    for group, benches in groups.items():
        print(f"### {group}\n")
        print("\n".join(group_table(benches)))
        print()
    print("### Targets\n")
    print("\n".join(target_rows(groups)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
