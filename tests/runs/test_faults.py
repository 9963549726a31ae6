"""Fault injection: every file of a run folder damaged in every way, kills at random moments, full disks.

Each case runs the real script entry point (`run_script`, in this process) on a copy of a tiny run
folder, after one file was deleted, cut to half, filled with zeros or had one byte flipped.  The run
must then either finish with exactly the numbers of the undamaged run (summary.json, the spike
counts, the readout weights) or stop with exit status 2 and a message naming the file, and never
print a traceback.  Runs: a finished and a half-finished run of a static model (LSM, stopped in the
readout) and of a plastic one (NALSM, stopped in the spike counts).

Figures are not rendered here (`unrendered_figures`: a figure's file holds a few bytes instead of a
PNG), which makes each case about four times faster; everything else, including which figures are
drawn again and how they are recorded, is the real code.  Rendering itself is tested in test_plots.py.

Run alone with `python -m pytest -m faults`.
"""
import io
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lsm_core import storage
from lsm_core.analysis import plots
from lsm_core.cli.scripts import run_script
from lsm_core.runs import folder as runfolder
from lsm_core.runs.folder import RunFolder
from lsm_core.runs.lock import LOCK_NAME
from tests.damage import DAMAGES, damage

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[2]
VERSION = 7
MODELS = {"LSM": "3.0", "NALSM": "0.015"}        # the model's scalar answer
OPTIONS = ["--train-samples", "40", "--valid-samples", "20", "--test-samples", "20", "--init-samples", "20",
           "--readout-epochs", "60", "--duration-ms", "40", "--dims", "3x3x3", "--seed", "5"]


def unrendered_figures(monkeypatch) -> None:
    """Figures are built but saved as a few bytes, without rendering (the slow part of plotting)."""
    monkeypatch.setattr(plots, "atomic_savefig", lambda fig, path, **kwargs: storage.atomic_write_bytes(
        path, f"figure with {len(fig.axes)} axes".encode()))


@pytest.fixture(autouse=True)
def _unrendered(monkeypatch):
    unrendered_figures(monkeypatch)


def answers(model: str) -> str:
    return f"cpu\n{VERSION}\n1\n10\n2\n{MODELS[model]}\n"


def run_in_process(model: str, root: Path, monkeypatch, capsys=None, *extra: str) -> tuple:
    """(exit status, stderr) of the model's MNIST script run in this process on the run under `root`."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(answers(model)))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")     # "cpu" then changes nothing, TensorFlow imported or not
    status = run_script(model, "mnist", [*OPTIONS, "--output-root", str(root / "train_data"),
                                         "--networks-dir", str(root / "networks"), *extra])
    return status, capsys.readouterr().err if capsys is not None else ""


def error_paragraph(err: str) -> str:
    """The "error: ..." paragraph of a script's stderr, on one line (progress bars share stderr)."""
    assert "error:" in err, err
    return " ".join(err[err.index("error:"):].split())


def folder_of(root: Path) -> Path:
    return root / "train_data" / f"ver_{VERSION}"


def results(root: Path) -> dict:
    """The numbers a run produced: summary.json without times, the counts, the readout weights."""
    folder = folder_of(root)
    summary = json.loads((folder / "summary.json").read_text())
    summary.pop("timings_s")
    for entry in summary.get("readouts", []):
        entry.pop("seconds")                      # a time, too
    out = {"summary": summary}
    for name in ("counts_valid.npz", "counts_test.npz", "counts_train.npz", "readout.npz", "W_INI.npz"):
        out.update({f"{name}:{key}": value for key, value in storage.load_npz(folder / name).items()})
    return out


def assert_same_results(got: dict, expected: dict) -> None:
    assert got["summary"] == expected["summary"]
    assert set(got) == set(expected)
    for key, value in expected.items():
        if key != "summary":
            np.testing.assert_array_equal(got[key], value, err_msg=key)


def run_files(folder: Path) -> list:
    """Every file of a run folder (relative), the lock's files left out (runlock's own tests cover them)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and not p.name.startswith(LOCK_NAME))


class StopAfter:
    """Patches RunFolder.write_bytes to raise KeyboardInterrupt right after the `times`-th write of `name`."""

    def __init__(self, monkeypatch, name: str, times: int):
        self.seen, original = 0, RunFolder.write_bytes

        def write_bytes(folder, written, data):
            path = original(folder, written, data)
            if written == name:
                self.seen += 1
                if self.seen == times:
                    raise KeyboardInterrupt
            return path
        monkeypatch.setattr(RunFolder, "write_bytes", write_bytes)


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """{(model, "finished" | "half"): a root holding that run's folder} and {model: its results}."""
    roots, expected = {}, {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        unrendered_figures(monkeypatch)
        for model in MODELS:
            root = tmp_path_factory.mktemp(f"{model}_finished")
            assert run_in_process(model, root, monkeypatch)[0] == 0
            roots[model, "finished"], expected[model] = root, results(root)
            half = tmp_path_factory.mktemp(f"{model}_half")
            shutil.copytree(root / "networks", half / "networks")
            with pytest.MonkeyPatch.context() as stop:
                if model == "LSM":      # in the readout, after its second checkpoint (epoch 50 of 60)
                    StopAfter(stop, "readout_state.npz", 2)
                else:                   # in the spike counts, after the first of the two training blocks
                    StopAfter(stop, "blocks/train_block_00000.npz", 1)
                assert run_in_process(model, half, stop)[0] == 130
            roots[model, "half"] = half
    return roots, expected


def test_the_half_finished_runs_hold_what_the_cases_need(templates):
    roots, _ = templates
    lsm = run_files(folder_of(roots["LSM", "half"]))
    assert "readout_state_previous.npz" in lsm and "summary.json" not in lsm
    nalsm = run_files(folder_of(roots["NALSM", "half"]))
    assert "blocks/train_block_00000.npz" in nalsm and "counts_train.npz" not in nalsm
    assert "init_state.npz" in nalsm and "blocks/valid_block_00000.npz" in nalsm


UNDERIVABLE = {"params.json"}       # what this run is: a damaged one stops the run (exit 2, naming it)


@pytest.mark.parametrize("model,stage", [("LSM", "finished"), ("LSM", "half"), ("NALSM", "finished"),
                                         ("NALSM", "half")])
def test_every_file_damaged_every_way_gives_the_same_numbers_or_names_the_file(
        templates, model, stage, tmp_path, monkeypatch, capsys):
    roots, expected = templates
    template = roots[model, stage]
    names = run_files(folder_of(template))
    assert len(names) >= 9
    outcomes = {}
    for name in names:
        for how in DAMAGES:
            case = tmp_path / f"{name.replace('/', '_')}_{how}"
            shutil.copytree(template, case)
            damage(folder_of(case) / name, how)
            status, err = run_in_process(model, case, monkeypatch, capsys)
            assert "Traceback" not in err, (name, how, err)
            if status == 0:
                assert_same_results(results(case), expected[model])
                outcomes[name, how] = "same numbers"
            else:
                assert status == 2 and name in error_paragraph(err), (name, how, status, err)
                outcomes[name, how] = "exit 2"
            shutil.rmtree(case)
    stopped = {name for (name, _), outcome in outcomes.items() if outcome == "exit 2"}
    assert stopped == UNDERIVABLE, outcomes            # everything else is derived again


def test_a_recovery_says_in_one_log_line_what_was_derived_again_and_why(templates, tmp_path, monkeypatch,
                                                                        capsys):
    roots, expected = templates
    shutil.copytree(roots["NALSM", "finished"], tmp_path / "run")
    folder = folder_of(tmp_path / "run")
    damage(folder / "counts_test.npz", "flip")
    damage(folder / "rasters.npz", "half")
    damage(folder / "readout_state.npz", "zeros")
    before = (folder / "run.log").read_text()
    assert run_in_process("NALSM", tmp_path / "run", monkeypatch, capsys)[0] == 0
    log = (folder / "run.log").read_text()[len(before):]
    assert "counts_test.npz is damaged (its SHA-256 differs from the one in manifest.json" in log
    assert "simulating the test split again" in log
    assert "rasters.npz is damaged (it has" in log and "simulating again the" in log
    assert "readout_state.npz is damaged" in log
    assert "continuing the readout from the checkpoint before it (epoch 50)" in log
    assert_same_results(results(tmp_path / "run"), expected["NALSM"])


def test_a_damaged_params_json_stops_with_one_paragraph_and_the_fix(templates, tmp_path, monkeypatch, capsys):
    roots, _ = templates
    shutil.copytree(roots["LSM", "finished"], tmp_path / "run")
    damage(folder_of(tmp_path / "run") / "params.json", "flip")
    status, err = run_in_process("LSM", tmp_path / "run", monkeypatch, capsys)
    assert status == 2
    flat = error_paragraph(err)
    assert f"ver_{VERSION}/params.json is damaged: its SHA-256 differs from the one in manifest.json" in flat
    assert "cannot be derived again" in flat and "--overwrite" in flat


def test_a_replaced_liquid_stops_the_run_naming_the_file(templates, tmp_path, monkeypatch, capsys):
    roots, _ = templates
    shutil.copytree(roots["LSM", "finished"], tmp_path / "run")
    network = tmp_path / "run" / "networks" / "Network_1.npz"
    arrays = storage.load_npz(network)
    storage.atomic_save_npz(network, compressed=False, **arrays)      # same liquid, other bytes
    status, err = run_in_process("LSM", tmp_path / "run", monkeypatch, capsys)
    flat = error_paragraph(err)
    assert status == 2 and "Network_1.npz is not the one this run was made with" in flat
    assert "--overwrite" in flat and "Traceback" not in err


def test_a_folder_without_params_json_but_with_results_is_not_reused(templates, tmp_path, monkeypatch, capsys):
    roots, _ = templates
    shutil.copytree(roots["LSM", "finished"], tmp_path / "run")
    (folder_of(tmp_path / "run") / "params.json").unlink()
    (folder_of(tmp_path / "run") / "manifest.json").unlink()
    status, err = run_in_process("LSM", tmp_path / "run", monkeypatch, capsys)
    assert status == 2 and "params.json is damaged: it is missing, but the folder holds files of a run" in \
        error_paragraph(err)
    assert run_in_process("LSM", tmp_path / "run", monkeypatch, capsys, "--overwrite")[0] == 0   # as it says


def test_a_run_made_before_manifests_is_checked_by_format_and_gets_a_manifest(templates, tmp_path, monkeypatch,
                                                                             capsys):
    roots, expected = templates
    shutil.copytree(roots["NALSM", "half"], tmp_path / "run")
    folder = folder_of(tmp_path / "run")
    (folder / "manifest.json").unlink()
    assert run_in_process("NALSM", tmp_path / "run", monkeypatch, capsys)[0] == 0
    assert "manifest.json is missing: the run's files are checked by their format alone" in \
        (folder / "run.log").read_text()
    assert_same_results(results(tmp_path / "run"), expected["NALSM"])
    recorded = set(json.loads((folder / "manifest.json").read_text())["files"])
    assert recorded <= set(run_files(folder))
    assert set(run_files(folder)) - recorded == {"run.log", "manifest.json", "init_state.npz"}   # not read


# ----------------------------------------------------------------------------------------------
# Full disks and refused writes
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("error", ["ENOSPC", "EACCES"])
def test_a_refused_write_exits_2_naming_the_file_and_the_folder_resumes(templates, tmp_path, monkeypatch,
                                                                        capsys, error):
    roots, expected = templates
    shutil.copytree(roots["NALSM", "half"], tmp_path / "run")
    original, calls = storage._write_then_rename, []
    number = getattr(__import__("errno"), error)

    def refusing(path, data):
        calls.append(path)
        if len(calls) == 3:                 # a few writes in: the block about to be simulated, its manifest...
            raise OSError(number, os.strerror(number), str(path))
        return original(path, data)

    monkeypatch.setattr(storage, "_write_then_rename", refusing)
    status, err = run_in_process("NALSM", tmp_path / "run", monkeypatch, capsys)
    flat = error_paragraph(err)
    assert status == 2 and "Traceback" not in err
    assert f"cannot write {calls[2]}" in flat
    assert ("disk or your quota is full" if error == "ENOSPC" else "no permission to write there") in flat
    assert not list(folder_of(tmp_path / "run").rglob("*.tmp"))            # no half-written leftovers
    monkeypatch.setattr(storage, "_write_then_rename", original)
    assert run_in_process("NALSM", tmp_path / "run", monkeypatch, capsys)[0] == 0
    assert_same_results(results(tmp_path / "run"), expected["NALSM"])


# ----------------------------------------------------------------------------------------------
# SIGKILL at random moments
# ----------------------------------------------------------------------------------------------

KILLER = textwrap.dedent("""
    # One interpreter imports the toolkit (TensorFlow included) once, then forks one child per kill point,
    # before any TensorFlow or numba thread exists (importing them starts none; running does).  Each child runs the script on its own run folder and
    # SIGKILLs itself at its write (before or after it); the parent reports how each child ended.
    import io, json, os, signal, sys
    from lsm_core import storage
    from lsm_core.engines import event_driven
    from lsm_core.runs import pipeline
    from lsm_core.analysis import plots
    from lsm_core.analysis import readout
    from lsm_core.runs import folder as runfolder
    from lsm_core.engines import simulator
    from lsm_core.cli.scripts import run_script
    plots.atomic_savefig = lambda fig, path, **kwargs: storage.atomic_write_bytes(path, b"figure")
    cases, answers, options = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:]
    original = runfolder.atomic_write_bytes

    def child(kill_at, stage, root):
        count = [0]

        def write(path, data):          # every file write of the run, manifest writes included
            count[0] += 1
            if count[0] == kill_at and stage == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = original(path, data)
            if count[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        runfolder.atomic_write_bytes = write
        sys.stdin = io.StringIO(answers)
        sys.stdout = sys.stderr = open(os.devnull, "w")
        run_script("NALSM", "mnist", [*options, "--output-root", root + "/train_data", "--networks-dir",
                                      root + "/networks"])
        os._exit(0)                     # not killed: the parent reports it

    for kill_at, stage, root in cases:
        pid = os.fork()
        if pid == 0:
            child(kill_at, stage, root)
        _, status = os.waitpid(pid, 0)
        print(json.dumps([kill_at, stage, os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL]),
              flush=True)
""")


def roots_of(templates) -> dict:
    return templates[0]


def count_writes(root: Path, monkeypatch, capsys) -> list:
    """The file names written, in order, by an uninterrupted NALSM run under `root`."""
    written, original = [], runfolder.atomic_write_bytes

    def write(path, data):
        written.append(Path(path).name)
        return original(path, data)
    monkeypatch.setattr(runfolder, "atomic_write_bytes", write)
    assert run_in_process("NALSM", root, monkeypatch, capsys)[0] == 0
    monkeypatch.setattr(runfolder, "atomic_write_bytes", original)
    return written


def test_sigkill_at_random_moments_then_resuming_gives_the_numbers_of_an_uninterrupted_run(
        templates, tmp_path, monkeypatch, capsys):
    _, expected = templates
    shutil.copytree(roots_of(templates)["NALSM", "finished"] / "networks", tmp_path / "count" / "networks")
    written = count_writes(tmp_path / "count", monkeypatch, capsys)
    phases = {"init": [], "counts": [], "readout": []}
    phase = "init"
    for number, name in enumerate(written, 1):
        if name.startswith(("counts_", "train_block", "valid_block", "test_block")):
            phase = "counts"
        elif name.startswith("readout_state"):
            phase = "readout"
        phases[phase].append(number)
    rng = random.Random(20261201)           # seeded: a failure names a kill point that reproduces
    points = [(n, rng.choice(("before", "after"))) for p in phases.values() for n in sorted(rng.sample(p, 4))]
    roots = [tmp_path / f"kill_{kill_at}_{stage}" for kill_at, stage in points]
    for root in roots:
        shutil.copytree(roots_of(templates)["NALSM", "finished"] / "networks", root / "networks")
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, json.dumps([[n, stage, str(root)] for (n, stage), root in zip(points, roots)]),
         answers("NALSM"), *OPTIONS], capture_output=True, text=True, cwd=REPO, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    reports = [json.loads(line) for line in killed.stdout.splitlines()]
    assert killed.returncode == 0 and reports == [[n, stage, True] for n, stage in points], killed.stderr[-3000:]
    for (kill_at, stage), root in zip(points, roots):
        status, err = run_in_process("NALSM", root, monkeypatch, capsys)
        assert status == 0 and "Traceback" not in err, (kill_at, stage, err)
        assert_same_results(results(root), expected["NALSM"])
