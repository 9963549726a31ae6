"""Running sweeps: local jobs, cooperating workers and submitit's executor give identical runs; a killed
worker's run is finished by another; a dead machine's lock is taken over after the stale timeout."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lsm_core.runs.lock import LOCK_NAME
from lsm_core.runs.sweep import SweepPaths, load_sweep

REPO = Path(__file__).resolve().parents[2]

SMALL = """\
name = "small"
first_version = 40

[grid]
model = ["LSM", "NALSM"]
dataset = "mnist"
net_num = 1
INTIAL_ABS_W_SCLR = [2.0, 3.0]
ASTRO_W_SCALING = [0.01, 0.03]

[answers]
batch_size = 10
batches_per_block = 1

[options]
train-samples = 20
valid-samples = 10
test-samples = 10
init-samples = 20
readout-epochs = 5
duration-ms = 30
dims = "3x3x3"
"""

LSM_ONLY = SMALL.replace('model = ["LSM", "NALSM"]', 'model = "LSM"').replace("ASTRO_W_SCALING = [0.01, 0.03]\n", "")

NUMBERS = ("best_epoch", "best_valid_acc", "test_acc_at_best", "final_train_acc", "mean_rate_hz")


def sweep_command(sweep_file, root, nets, *options, wait=True):
    args = [sys.executable, "-m", "lsm_core", "sweep", str(sweep_file), "--output-root", str(root),
            "--networks-dir", str(nets), *options]
    if not wait:
        return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)


def numbers(root, versions):
    out = {}
    for version in versions:
        summary = json.loads((Path(root) / f"ver_{version}" / "summary.json").read_text())
        out[version] = {key: summary[key] for key in NUMBERS}
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    path = tmp / "small.toml"
    path.write_text(SMALL)
    return path, tmp / "nets"


@pytest.fixture(scope="module")
def by_jobs(small, tmp_path_factory):
    path, nets = small
    root = tmp_path_factory.mktemp("jobs")
    started = time.perf_counter()
    result = sweep_command(path, root, nets, "--jobs", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    return root, time.perf_counter() - started, result


def test_jobs_run_every_run_of_the_sweep_once(small, by_jobs):
    path, nets = small
    root, _, result = by_jobs
    assert "all 4 runs complete" in result.stdout
    manifest = json.loads((root / "sweeps" / "small.json").read_text())
    assert [run["version"] for run in manifest["runs"]] == list(range(40, 44))
    for k in range(2):                                        # both workers ran runs, each to its own log
        log = (root / "sweeps" / "small" / "logs" / f"worker-{k}.log").read_text()
        assert "[worker %d] ver_4" % k in log
    assert not list(root.glob(f"ver_*/{LOCK_NAME}"))          # every lock given back
    # re-running the finished sweep does nothing
    again = sweep_command(path, root, nets, "--jobs", "2")
    assert again.returncode == 0 and "0 to do" in again.stderr


def test_two_workers_and_submitit_give_the_numbers_of_local_jobs(small, by_jobs, tmp_path):
    path, nets = small
    reference = numbers(by_jobs[0], range(40, 44))
    workers = [sweep_command(path, tmp_path / "workers", nets, "--worker", "--threads", "1", wait=False)
               for _ in range(2)]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert all("4 of 4 runs complete" in out for out in outputs)
    assert numbers(tmp_path / "workers", range(40, 44)) == reference

    pytest.importorskip("submitit")
    result = sweep_command(path, tmp_path / "slurm", nets, "--backend", "slurm", "--cluster", "local", "--tasks", "2",
                           "--cpus-per-task", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "submitted 2 worker tasks" in result.stderr
    assert numbers(tmp_path / "slurm", range(40, 44)) == reference


def test_a_killed_worker_leaves_its_run_to_the_next_worker(tmp_path, small):
    _, nets = small
    path = tmp_path / "one.toml"
    path.write_text(LSM_ONLY.replace("INTIAL_ABS_W_SCLR = [2.0, 3.0]", "INTIAL_ABS_W_SCLR = 2.0")
                    .replace("train-samples = 20", "train-samples = 60")
                    .replace("duration-ms = 30", "duration-ms = 120").replace('"3x3x3"', '"4x4x4"'))
    root = tmp_path / "runs"
    blocks = root / "ver_40" / "blocks"
    first = sweep_command(path, root, nets, "--worker", wait=False)
    deadline = time.time() + 240
    while not (blocks.exists() and len(list(blocks.glob("*.npz"))) >= 2) and time.time() < deadline:
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    assert (root / "ver_40" / LOCK_NAME).exists()                  # a dead worker's lock is left behind
    status = subprocess.run([sys.executable, "-m", "lsm_core", "report", "40", "--output-root", str(root)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert "running (" not in status.stdout and "spike counts" in status.stdout

    second = sweep_command(path, root, nets, "--worker")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "taking over from" in second.stdout and "already done" in second.stdout
    assert not (root / "ver_40" / LOCK_NAME).exists()

    from lsm_core.runs import pipeline
    clean = SweepPaths(output_root=str(tmp_path / "clean"), networks_dir=str(nets))
    pipeline.run(load_sweep(path, clean).runs[0].config(clean), log=lambda message: None)
    for name in ("counts_valid.npz", "counts_test.npz", "counts_train.npz", "readout.npz"):
        a, b = np.load(root / "ver_40" / name), np.load(tmp_path / "clean" / "ver_40" / name)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


def test_a_worker_waits_for_another_machines_run_and_takes_it_over_once_stale(tmp_path, small):
    _, nets = small
    path = tmp_path / "two.toml"
    path.write_text(LSM_ONLY)
    root = tmp_path / "runs"
    (root / "ver_40").mkdir(parents=True)
    (root / "ver_40" / LOCK_NAME).write_text(json.dumps({"host": "node-lost", "pid": 99, "token": "t"}))
    report = subprocess.run([sys.executable, "-m", "lsm_core", "report", "40", "--output-root", str(root)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert "running (node-lost, 99)" in report.stdout
    leaving = sweep_command(path, root, nets, "--worker", "--no-wait")
    assert leaving.returncode == 0 and "held by other workers" in leaving.stdout
    assert (root / "ver_41" / "summary.json").exists() and not (root / "ver_40" / "summary.json").exists()
    waiting = sweep_command(path, root, nets, "--worker", "--stale-after", "3")
    assert waiting.returncode == 0, waiting.stdout + waiting.stderr
    assert "taking over from host node-lost, PID 99" in waiting.stdout
    assert json.loads((root / "ver_40" / "summary.json").read_text())["complete"]


def test_missing_submitit_is_a_clear_message(tmp_path, small):
    path, nets = small
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "submitit.py").write_text("raise ImportError('no submitit here')\n")
    env = dict(os.environ, PYTHONPATH=f"{blocker}{os.pathsep}{REPO}")
    result = subprocess.run([sys.executable, "-m", "lsm_core", "sweep", str(path), "--backend", "slurm",
                             "--output-root", str(tmp_path / "r"), "--networks-dir", str(nets)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "pip install submitit" in result.stderr and "Traceback" not in result.stderr


def test_a_failing_run_is_reported_and_the_other_runs_still_finish(tmp_path, small):
    _, nets = small
    path = tmp_path / "failing.toml"
    path.write_text(SMALL.replace("INTIAL_ABS_W_SCLR = [2.0, 3.0]", "INTIAL_ABS_W_SCLR = 2.0")
                    .replace("ASTRO_W_SCALING = [0.01, 0.03]", "ASTRO_W_SCALING = 0.01")
                    .replace("init-samples = 20", "init-samples = 60000"))      # more than MNIST has: NALSM fails
    root = tmp_path / "runs"
    result = sweep_command(path, root, nets, "--jobs", "1")
    assert result.returncode == 1
    assert "1 of 2 runs complete" in result.stderr and "ver_41 NALSM" in result.stderr
    log = (root / "sweeps" / "small" / "logs" / "worker-0.log").read_text()
    assert "FAILED ver_41" in log and "--init-samples 60000 is more than" in " ".join(log.split())
    assert json.loads((root / "ver_40" / "summary.json").read_text())["complete"]
    assert not (root / "ver_41").exists()                  # refused before anything was written


def test_report_of_a_sweep_by_its_name(small, by_jobs, capsys):
    from lsm_core.__main__ import main

    root = by_jobs[0]
    assert main(["report", "--sweep", "small", "--output-root", str(root), "--group-by", "model", "--format",
                 "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("model,") and [line.split(",")[0] for line in lines[1:]] == ["LSM", "NALSM"]
    assert main(["report", "--sweep", "other", "--output-root", str(root)]) == 2
    assert "no readable manifest of a sweep 'other'" in " ".join(capsys.readouterr().err.split())


def test_gpus_give_each_worker_its_own_device(tmp_path, small):
    """--gpus 0,1 on a machine without GPUs: each worker asks for its own GPU (and warns that it is missing)."""
    _, nets = small
    path = tmp_path / "gpus.toml"
    path.write_text(LSM_ONLY)
    root = tmp_path / "runs"
    result = sweep_command(path, root, nets, "--gpus", "0,1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 workers on GPU 0, 1" in result.stderr
    for version in (40, 41):
        params = json.loads((root / f"ver_{version}" / "params.json").read_text())
        assert params["run"]["config"]["gpu"] in ("0", "1")
    for k in range(2):
        log = (root / "sweeps" / "small" / "logs" / f"worker-{k}.log").read_text()
        if "starting" in log:
            assert f"GPU {k} asked for" in log


def test_a_complete_run_with_a_recorded_file_deleted_or_cut_is_run_again(small, by_jobs, tmp_path):
    """A sweep re-runs a complete run whose files were damaged (the run then repairs them), so that `report`'s
    `damaged:` never stays behind a sweep that says everything is complete."""
    import shutil

    from lsm_core.runs.workers import run_is_complete

    path, nets = small
    root = tmp_path / "root"
    shutil.copytree(by_jobs[0], root)
    paths = SweepPaths(output_root=str(root), networks_dir=str(nets))
    run = load_sweep(path, paths).runs[0]
    folder = root / f"ver_{run.version}"
    assert run_is_complete(run, paths, 5)
    counts = folder / "counts_train.npz"
    counts.write_bytes(counts.read_bytes()[:100])
    assert not run_is_complete(run, paths, 5)
    result = sweep_command(path, root, nets, "--jobs", "1")
    assert result.returncode == 0 and "1 to do" in result.stderr
    assert run_is_complete(run, paths, 5)
    assert numbers(root, [run.version]) == numbers(by_jobs[0], [run.version])
