"""The cron entry points: thin, with exit codes a scheduler can act on."""
import subprocess
import sys
from pathlib import Path

from fidelis.core.ledger import Ledger


SCRIPTS = Path(__file__).parent.parent / "scripts"


def run(script: str, *arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS / script), *map(str, arguments)],
                          capture_output=True, text=True, timeout=120)


def test_bulk_load_exit_codes(tmp_path, verde_club):
    receipts = tmp_path / "r.csv"
    receipts.write_text("receipt_id,customer_id,store_id,ts,category,qty,amount\n"
                        "R1,C1,S1,2025-06-07T10:00,grocery,1,10.00\n")
    Ledger.create(tmp_path / "chain.db", verde_club).close()
    loaded = run("bulk_load.py", tmp_path / "chain.db", receipts, "-q")
    assert loaded.returncode == 0 and "Loaded 1 receipts" in loaded.stdout
    missing = run("bulk_load.py", tmp_path / "other.db", receipts)
    assert missing.returncode == 1 and "no ledger here" in missing.stderr
    assert run("bulk_load.py").returncode == 2
