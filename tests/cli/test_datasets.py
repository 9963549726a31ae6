"""`python -m lsm_core datasets ...`: usage and errors as a user sees them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lsm_core.cli.datasets import datasets_command

REPO = Path(__file__).resolve().parents[2]


def test_datasets_verify_on_a_damaged_file_is_one_line_on_stderr_and_exit_status_2(tmp_path):
    path = tmp_path / "mnist.npz"
    path.write_bytes(bytes(1000))
    result = subprocess.run([sys.executable, "-m", "lsm_core", "datasets", "verify", "mnist", "--data-dir",
                             str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and str(path) in result.stderr and "datasets fetch mnist" in result.stderr


def test_command_line_usage():
    assert datasets_command(["--help"]) == 0
    assert datasets_command(["bogus"]) == 2
    assert datasets_command([]) == 2
