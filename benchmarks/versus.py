"""Kernel and load throughput of this tree against another revision, interleaved in one run.

Usage (from the repository root, with the package installed)::

    python benchmarks/versus.py 23bcbb8                 # 100 k receipts, 5 rounds
    python benchmarks/versus.py v0.1.0 --receipts 500000 --rounds 3

The other revision is checked out in a temporary git worktree and its kernel built there
with its own ``setup.py``; each tree runs in its own process on the same generated chain, the
trees taking turns round after round, so both see the same machine state. Each round scores
the chain with the compiled kernel (one thread; median of 5 calls, state reset outside
timing) and loads it into a new ledger (``load_files``, whole job). The table gives medians
over rounds and the ratio this tree / the other: within 10 % is noise on a shared machine.

The worker imports names that both layouts have (the old flat ``fidelis.core.kernel`` and
``fidelis.core.io``, the present ``engine/`` and ``ingest/``), so it compares any revision
since the package became ``fidelis.core``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r'''
import importlib, json, os, statistics, sys, tempfile, time
from pathlib import Path
if os.environ.get("FIDELIS_VERSUS_OTHER"):  # the installed (editable) tree must not answer imports
    sys.meta_path[:] = [finder for finder in sys.meta_path if "__editable__" not in repr(finder)]
import fidelis.core as core
from fidelis.core.jobs import load_files

def first(*names):
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            pass
    raise ImportError(names)

kernel = first("fidelis.core.engine.kernel", "fidelis.core.kernel")
read_receipts = first("fidelis.core.ingest.receipts", "fidelis.core.io").read_receipts
chain = json.loads(sys.argv[1])
program = core.load_program(chain["program"])
compiled = core.compile_program(program)
batch = read_receipts([chain["receipts"]], timezone=program.info.timezone, minor_units=program.info.minor_units)
seconds = []
for _ in range(5):
    state = kernel.new_state(compiled)
    started = time.perf_counter()
    kernel.score(batch, compiled, state)
    seconds.append(time.perf_counter() - started)
with tempfile.TemporaryDirectory() as folder:
    with core.Ledger.create(Path(folder) / "chain.db", program) as ledger:
        started = time.perf_counter()
        load_files(ledger, [chain["receipts"]])
        load_seconds = time.perf_counter() - started
print(json.dumps({"receipts": len(batch), "kernel": len(batch) / statistics.median(seconds),
                  "load": len(batch) / load_seconds}))
'''


def build_revision(revision: str, folder: Path) -> Path:
    """Check ``revision`` out under ``folder``, build its kernel, return an import root for it."""
    tree = folder / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision],
                   check=True, capture_output=True)
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tree, check=True,
                   capture_output=True)
    # the source folders install as fidelis.core and fidelis.server (package-dir): lay them out so
    # (a wheel's metadata is not needed: the worker imports nothing through it)
    root = folder / "root" / "fidelis"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    for name in ("core", "server"):
        (root / name).symlink_to(tree / name)
    return root.parent


def run_worker(import_root: Path | None, chain: dict) -> dict:
    env = dict(os.environ)
    if import_root is not None:
        env["PYTHONPATH"] = str(import_root)
        env["FIDELIS_VERSUS_OTHER"] = "1"
    done = subprocess.run([sys.executable, "-c", WORKER, json.dumps(chain)], env=env, capture_output=True,
                          text=True, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        sys.exit(f"the benchmark failed in {import_root or 'this tree'}:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revision", help="the git revision to compare with (a commit, tag or branch)")
    parser.add_argument("--receipts", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()

    from fidelis.core.synthetic import generate_chain, write_chain

    folder = Path(tempfile.mkdtemp(prefix="fidelis-versus-"))
    try:
        print(f"building {options.revision} …", file=sys.stderr)
        other = build_revision(options.revision, folder)
        paths = write_chain(generate_chain(options.receipts, seed=7), folder / "chain", receipts_format="parquet")
        chain = {name: str(path) for name, path in paths.items()}
        results: dict[str, list[dict]] = {"this tree": [], options.revision: []}
        for round_number in range(options.rounds):
            print(f"round {round_number + 1}/{options.rounds} …", file=sys.stderr)
            results["this tree"].append(run_worker(None, chain))
            results[options.revision].append(run_worker(other, chain))
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder / "tree")],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)

    receipts = results["this tree"][0]["receipts"]
    print(f"{receipts:,} receipts, {options.rounds} rounds each, trees taking turns; medians over rounds\n")
    print(f"| measure | this tree | {options.revision} | this / other |")
    print("|---|---:|---:|---:|")
    for measure, unit, scale in (("kernel", "M receipts/s", 1e6), ("load", "k receipts/s", 1e3)):
        mine = statistics.median(run[measure] for run in results["this tree"])
        theirs = statistics.median(run[measure] for run in results[options.revision])
        print(f"| {measure} ({unit}) | {mine / scale:,.2f} | {theirs / scale:,.2f} | {mine / theirs:.2f} |")


if __name__ == "__main__":
    main()
