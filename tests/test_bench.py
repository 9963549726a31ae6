"""`python -m lsm_core bench` prints the JSON record of SPEC 6 (a tiny liquid: this is no timing test)."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_json_record():
    result = subprocess.run([sys.executable, "-m", "lsm_core", "bench", "--dims", "3x3x3", "--batch", "4",
                             "--steps", "20", "--repeats", "1", "--json"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("rule", "phase", "dims", "batch", "steps", "n_syn", "compile_s", "wall_s", "sample_ms_per_s",
                "device"):
        assert key in record
    assert record["dims"] == "3x3x3" and record["batch"] == 4 and record["steps"] == 20
    assert record["sample_ms_per_s"] > 0 and record["device"] == "CPU"


def test_bench_plastic_rule_in_the_init_phase():
    from lsm_core.bench import run_bench

    record = run_bench("nalsm", "init", (3, 3, 3), batch=3, steps=10, repeats=1)
    assert record["phase"] == "init" and record["weight_scale"] == 3.0 and record["sample_ms_per_s"] > 0


def test_unknown_command_and_impossible_bench_are_clear_errors():
    result = subprocess.run([sys.executable, "-m", "lsm_core", "nonsense"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "unknown command" in result.stderr
    result = subprocess.run([sys.executable, "-m", "lsm_core", "bench", "--rule", "static", "--phase", "init"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "no init phase" in result.stderr and "Traceback" not in result.stderr
