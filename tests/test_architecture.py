"""The walls of ARCHITECTURE.md: import-linter contracts (pyproject.toml) and the public API."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fidelis.core

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold(tmp_path):
    # The source folders install under one namespace through package-dir; the contracts are
    # checked against the source tree laid out as it installs.
    if shutil.which("lint-imports") is None:
        pytest.fail("import-linter is not installed: pip install -e '.[test]'")
    package = tmp_path / "fidelis"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "core").symlink_to(ROOT / "core")
    (package / "server").symlink_to(ROOT / "server")
    result = subprocess.run(["lint-imports", "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                            cwd=ROOT, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin:" + str(Path(sys.executable).parent)},
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_importing_the_core_does_not_load_the_compiled_kernel():
    # the reference engine and the messages about a missing build need the core without it
    loaded = subprocess.run([sys.executable, "-c", "import sys, fidelis.core, fidelis.core.program, "
                             "fidelis.core.ledger; print(any(name.endswith('_kernel') for name in sys.modules))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "False"


def test_every_public_name_resolves():
    for name in fidelis.core.__all__:
        assert getattr(fidelis.core, name) is not None, name


@pytest.mark.parametrize("script", sorted((ROOT / "scripts").glob("*.py")), ids=lambda path: path.name)
def test_scripts_use_only_the_public_names(script):
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fidelis"):
            assert node.module == "fidelis.core", f"{script.name} imports {node.module}"
            assert {alias.name for alias in node.names} <= set(fidelis.core.__all__)


def test_no_module_imports_another_modules_private_names():
    # what a module shares is public; a leading underscore means "only this module uses it"
    borrowed = []
    for path in sorted((ROOT / "core").rglob("*.py")) + sorted((ROOT / "server").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("fidelis")):
                borrowed += [f"{path.relative_to(ROOT)}: {alias.name} from {node.module}"
                             for alias in node.names if alias.name.startswith("_") and alias.name != "_kernel"]
    assert borrowed == []
