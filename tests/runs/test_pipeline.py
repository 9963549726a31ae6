"""The run protocol on tiny liquids: outputs, resume after interruption, identity checks, errors."""
import json
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lsm_core.config import RunConfig
from lsm_core.engines.xla import LiquidSimulator
from lsm_core.errors import UserError
from lsm_core.runs import pipeline
from lsm_core.runs.folder import RunFolder
from tests.spies import count_simulated_batches

REPO = Path(__file__).resolve().parents[2]


def tiny_config(tmp_path, **changes) -> RunConfig:
    config = RunConfig(model="LSM", dataset="mnist", gpu="cpu", version=3, net_num=5, batch_size=10,
                       batches_per_block=2, scalars={"INTIAL_ABS_W_SCLR": 3.0}, train_samples=40,
                       valid_samples=20, test_samples=20, readout_epochs=30, duration_ms=40, seed=123,
                       dims=(3, 3, 3), output_root=str(tmp_path / "train_data"),
                       networks_dir=str(tmp_path / "networks"))
    return replace(config, **changes)


def quiet(message):
    pass


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    config = tiny_config(tmp)
    summary = pipeline.run(config, log=quiet)
    return config, RunFolder(config).path, summary


def test_a_run_writes_every_file(finished_run):
    _, folder, summary = finished_run
    for name in ("params.json", "W_INI.npz", "counts_valid.npz", "counts_test.npz", "counts_train.npz",
                 "rasters.npz", "history.csv", "readout.npz", "summary.json", "accuracy.png", "raster.png",
                 "timings.json"):
        assert (folder / name).stat().st_size > 0, name
    assert not list((folder / "blocks").iterdir())          # blocks are joined and removed
    counts = np.load(folder / "counts_train.npz")
    assert counts["counts"].shape == (40, 27) and counts["counts"].dtype == np.int32
    np.testing.assert_array_equal(counts["index"], np.arange(40))
    rasters = np.load(folder / "rasters.npz")
    assert rasters["valid_spikes"].shape == (10, 40, 27 + 784)      # batch 10 <= 20: every row kept
    np.testing.assert_array_equal(rasters["valid_index"], np.arange(10))
    # a raster's reservoir spikes add up to that sample's counts
    valid = np.load(folder / "counts_valid.npz")
    np.testing.assert_array_equal(rasters["valid_spikes"][:, :, :27].sum(axis=1), valid["counts"][:10])
    stored = json.loads((folder / "summary.json").read_text())
    assert stored["complete"] and stored["test_acc_at_best"] == summary["test_acc_at_best"]
    assert 1 <= stored["best_epoch"] <= 30
    history = (folder / "history.csv").read_text().splitlines()
    assert history[0].split(",") == ["epoch", "train_loss", "valid_loss", "train_acc", "valid_acc", "test_acc"]
    assert len(history) == 31
    params = json.loads((folder / "params.json").read_text())
    assert params["seed"] == 123 and params["identity"]["scalars"] == {"INTIAL_ABS_W_SCLR": 3.0}
    w_ini = np.load(folder / "W_INI.npz")
    assert set(np.abs(w_ini["weights"])) == {3.0}


def test_rerunning_a_finished_run_recomputes_nothing(finished_run, monkeypatch):
    config, _, summary = finished_run
    calls = count_simulated_batches(monkeypatch)
    again = pipeline.run(config, log=quiet)
    assert calls == [] and again["test_acc_at_best"] == summary["test_acc_at_best"]
    # --dims only sizes a liquid generated on the spot: without it the same run resumes
    assert pipeline.run(replace(config, dims=(10, 10, 10)), log=quiet)["n_res"] == 27


def test_interrupted_run_resumes_without_recomputing_and_gives_the_same_result(tmp_path, monkeypatch,
                                                                             finished_run):
    _, reference_folder, reference = finished_run
    config = tiny_config(tmp_path)
    saved = []
    original_save = RunFolder.save_block

    def save_then_die(self, split, block, **arrays):
        original_save(self, split, block, **arrays)
        saved.append((split, block))
        if len(saved) == 3:                   # killed right after the third block reached the disk
            raise Interrupt

    monkeypatch.setattr(RunFolder, "save_block", save_then_die)
    with pytest.raises(Interrupt):
        pipeline.run(config, log=quiet)
    monkeypatch.setattr(RunFolder, "save_block", original_save)

    # the readout dies after its first checkpoint
    from lsm_core.analysis import readout
    original_train = readout.train_readout

    def train_then_die(*args, on_epochs=None, **kwargs):
        def checkpoint_then_die(state, rows):
            on_epochs(state, rows)
            raise Interrupt
        return original_train(*args, on_epochs=checkpoint_then_die, chunk_epochs=7, **kwargs)

    monkeypatch.setattr(readout, "train_readout", train_then_die)
    calls = count_simulated_batches(monkeypatch)
    with pytest.raises(Interrupt):
        pipeline.run(config, log=quiet)
    # 4 blocks of 20 samples in all (valid 1, test 1, train 2); 3 were on disk already
    assert sum(calls) == 80 - 3 * 20
    assert len((RunFolder(config).path / "history.csv").read_text().splitlines()) == 1 + 7
    monkeypatch.setattr(readout, "train_readout", original_train)
    calls.clear()
    summary = pipeline.run(config, log=quiet)
    assert calls == []
    folder = RunFolder(config).path
    for split in ("valid", "test", "train"):
        np.testing.assert_array_equal(np.load(folder / f"counts_{split}.npz")["counts"],
                                      np.load(reference_folder / f"counts_{split}.npz")["counts"])
    assert (folder / "history.csv").read_text() == (reference_folder / "history.csv").read_text()
    np.testing.assert_array_equal(np.load(folder / "readout.npz")["best_weights"],
                                  np.load(reference_folder / "readout.npz")["best_weights"])
    assert summary["test_acc_at_best"] == reference["test_acc_at_best"]


def test_more_readout_epochs_on_a_rerun_continue_training(tmp_path, finished_run):
    _, reference_folder, _ = finished_run
    config = tiny_config(tmp_path, readout_epochs=12)
    pipeline.run(config, log=quiet)
    pipeline.run(replace(config, readout_epochs=30), log=quiet)
    assert (RunFolder(config).path / "history.csv").read_text() == (reference_folder / "history.csv").read_text()


def test_different_parameters_are_refused_unless_overwrite(tmp_path, finished_run):
    config, _, _ = finished_run
    changed = replace(config, scalars={"INTIAL_ABS_W_SCLR": 2.0})
    with pytest.raises(UserError, match="different parameters.*INTIAL_ABS_W_SCLR.*--overwrite"):
        pipeline.run(changed, log=quiet)
    other = tiny_config(tmp_path, readout_epochs=3)
    pipeline.run(other, log=quiet)
    summary = pipeline.run(replace(other, seed=7, overwrite=True), log=quiet)
    assert json.loads((RunFolder(other).path / "params.json").read_text())["seed"] == 7
    assert summary["final_epoch"] == 3


def test_unwritable_output_folder_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot write to the run folder"):
        pipeline.run(tiny_config(tmp_path, output_root=str(blocker)), log=quiet)


def test_missing_dataset_stops_before_simulating(tmp_path, monkeypatch):
    calls = count_simulated_batches(monkeypatch)
    with pytest.raises(UserError, match="datasets fetch mnist"):
        pipeline.run(tiny_config(tmp_path, data_dir=str(tmp_path / "empty")), log=quiet)
    assert calls == [] and not (tmp_path / "train_data").exists()


def test_raster_batches_hold_samples_0_10000_20000():
    assert [pipeline._raster_batch(s, 250) for s in (0, 250, 9750, 10000, 10250)] == [True, False, False, True, False]
    assert pipeline._raster_batch(9900, 300)          # holds sample 10000


# ----------------------------------------------------------------------------------------------
# The real script, with answers piped in
# ----------------------------------------------------------------------------------------------

def run_script(tmp_path, answers, *options):
    args = [sys.executable, str(REPO / "LSM_RUN_MAIN_SIM_MNIST.py"), "--train-samples", "20", "--valid-samples",
            "10", "--test-samples", "10", "--readout-epochs", "5", "--duration-ms", "30", "--dims", "3x3x3",
            "--output-root", str(tmp_path / "td"), "--networks-dir", str(tmp_path / "nets"),
            "--data-dir", str(REPO / "datasets"), *options]        # run from another folder: the shipped MNIST
    return subprocess.run(args, input=answers, capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False)


def test_script_runs_end_to_end_with_piped_answers(tmp_path):
    result = run_script(tmp_path, "cpu\n4\n2\n10\n1\n2.0\n", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert "TEST ACCURACY at the best validation epoch" in result.stdout
    assert "generated a 3x3x3 liquid" in result.stdout
    assert (tmp_path / "nets" / "Network_2.npz").exists()
    assert json.loads((tmp_path / "td" / "ver_4" / "summary.json").read_text())["complete"]
    # a corrupt network file is a clear error, not a traceback
    (tmp_path / "nets" / "Network_9.npz").write_bytes(b"garbage")
    result = run_script(tmp_path, "cpu\n5\n9\n10\n1\n2.0\n")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Network_9.npz" in result.stderr


def test_script_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path):
    """A real SIGKILL while blocks are being written; the re-run simulates only what was missing."""
    import os
    import signal
    import time

    def start(root):
        args = [sys.executable, str(REPO / "LSM_RUN_MAIN_SIM_MNIST.py"), "--train-samples", "60", "--valid-samples",
                "20", "--test-samples", "20", "--readout-epochs", "5", "--duration-ms", "120", "--dims", "4x4x4",
                "--seed", "3", "--output-root", str(root / "td"), "--networks-dir", str(tmp_path / "nets"),
                "--data-dir", str(REPO / "datasets")]
        answers = tmp_path / "answers.txt"
        answers.write_text("cpu\n1\n1\n10\n1\n2.0\n")
        with open(answers) as stdin:           # piped answers, as from a shell loop
            return subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    cwd=tmp_path)

    blocks = tmp_path / "killed" / "td" / "ver_1" / "blocks"
    process = start(tmp_path / "killed")
    deadline = time.time() + 240
    while not (blocks.exists() and len(list(blocks.glob("*.npz"))) >= 2) and time.time() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    done = len(list(blocks.glob("*.npz")))
    assert 2 <= done < 10 and not list(blocks.glob(".*tmp"))         # only whole blocks on disk

    resumed = start(tmp_path / "killed")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"({done * 10} already done)" in out and "resuming" in out
    clean = start(tmp_path / "clean")
    clean.communicate(timeout=300)
    for name in ("counts_valid.npz", "counts_test.npz", "counts_train.npz", "readout.npz"):
        a, b = np.load(blocks.parent / name), np.load(tmp_path / "clean" / "td" / "ver_1" / name)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


def test_sigterm_mid_run_says_where_and_exits_143_then_resumes(tmp_path):
    """SIGTERM (a scheduler's time limit) while blocks are being written: one line on stderr and in run.log
    naming the signal and the block, exit status 143, no traceback; the same command then finishes."""
    import os
    import signal
    import time

    args = [sys.executable, str(REPO / "LSM_RUN_MAIN_SIM_MNIST.py"), "--train-samples", "60", "--valid-samples",
            "20", "--test-samples", "20", "--readout-epochs", "5", "--duration-ms", "120", "--dims", "4x4x4",
            "--seed", "3", "--output-root", str(tmp_path / "td"), "--networks-dir", str(tmp_path / "nets"),
            "--data-dir", str(REPO / "datasets")]
    blocks = tmp_path / "td" / "ver_1" / "blocks"
    process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=tmp_path)
    process.stdin.write("cpu\n1\n1\n10\n1\n2.0\n")
    process.stdin.flush()
    deadline = time.time() + 240
    while not (blocks.exists() and len(list(blocks.glob("*.npz"))) >= 1) and time.time() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    err_flat = " ".join(err.split())                 # the message is wrapped at 100 columns
    assert process.returncode == 143, err
    assert "interrupted by SIGTERM at the spike counts, " in err_flat and "Traceback" not in err
    assert "; re-run the same command to resume" in err_flat
    log = (tmp_path / "td" / "ver_1" / "run.log").read_text()
    assert "interrupted by SIGTERM at the spike counts, " in log and " block " in log
    assert not (tmp_path / "td" / "ver_1" / "run.lock").exists()           # the lock was given back
    again = subprocess.run(args, input="cpu\n1\n1\n10\n1\n2.0\n", capture_output=True, text=True, cwd=tmp_path,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "td" / "ver_1" / "summary.json").read_text())["complete"]


# ----------------------------------------------------------------------------------------------
# Plastic models: init phase, learning sample phase
# ----------------------------------------------------------------------------------------------

def plastic_config(tmp_path, model, scalars, **changes):
    return tiny_config(tmp_path, model=model, scalars=scalars, init_samples=30, readout_epochs=5,
                       duration_ms=30, **changes)


@pytest.mark.parametrize("model, scalars", [
    ("NALSM", {"ASTRO_W_SCALING": 0.015}),
    ("LSM_STDP", {}),
    ("LSM_APSTDP", {"STDP_NEURON_RATE_THESHOLD": 0.5, "STDP_NEURON_RATE_RANGE": 2.0, "INTIAL_ABS_W_SCLR": 2.0}),
])
def test_plastic_models_run_the_init_phase_and_write_their_files(tmp_path, model, scalars):
    config = plastic_config(tmp_path, model, scalars)
    summary = pipeline.run(config, log=quiet)
    folder = RunFolder(config).path
    w_ini = np.load(folder / "W_INI.npz")["weights"]
    scale = 2.0 if model == "LSM_APSTDP" else 3.0
    assert np.abs(w_ini).max() <= 3.0 and np.any(np.abs(w_ini) != scale)      # the init phase learned
    assert (folder / "weights.png").exists() and summary["complete"]
    assert (folder / "astrocyte.png").exists() == (model == "NALSM")
    astro = np.load(folder / "rasters.npz")["valid_astro"]
    assert astro.shape == (10, 30)
    if model == "NALSM":
        assert astro[0, 0] != 0.0 and astro[0, -1] < 0.15                 # A decays in the sample phase


def test_interrupted_init_phase_resumes_to_the_same_w_ini(tmp_path, monkeypatch):
    scalars = {"ASTRO_W_SCALING": 0.015}
    reference = plastic_config(tmp_path / "a", "NALSM", scalars)
    pipeline.run(reference, log=quiet)
    monkeypatch.setattr(pipeline, "INIT_CHUNK", 8)
    config = plastic_config(tmp_path / "b", "NALSM", scalars)
    original_save = RunFolder.save_npz
    saved = []

    def save_then_die(self, name, **arrays):
        original_save(self, name, **arrays)
        if name == "init_state.npz":
            saved.append(int(arrays["done"]))
            if len(saved) == 2:
                raise Interrupt

    monkeypatch.setattr(RunFolder, "save_npz", save_then_die)
    with pytest.raises(Interrupt):
        pipeline.run(config, log=quiet)
    monkeypatch.setattr(RunFolder, "save_npz", original_save)
    assert saved == [8, 16]
    pipeline.run(config, log=quiet)
    np.testing.assert_allclose(np.load(RunFolder(config).path / "W_INI.npz")["weights"],
                               np.load(RunFolder(reference).path / "W_INI.npz")["weights"], atol=1e-6)
    for split in ("valid", "train"):
        np.testing.assert_array_equal(np.load(RunFolder(config).path / f"counts_{split}.npz")["counts"],
                                      np.load(RunFolder(reference).path / f"counts_{split}.npz")["counts"])


def test_reference_batch_quirk_makes_only_the_first_row_learn(tmp_path):
    from lsm_core import Network
    from lsm_core.engines.interface import synapse_weights
    from lsm_core.engines.xla import PlasticSimulator

    net = Network.generate(dims=(3, 3, 3), n_input=20, seed=4)
    inputs = (np.random.default_rng(1).random((3, 40, 20)) < 0.3).astype(np.uint8)
    quirk = PlasticSimulator(net, synapse_weights(net, 3.0), "stdp", "sample", reference_batch_quirk=True)
    run = quirk.run(inputs, np.zeros(3, np.uint32))
    assert np.any(run.weights[0] != synapse_weights(net, 3.0))
    np.testing.assert_array_equal(run.weights[1:], np.broadcast_to(synapse_weights(net, 3.0), run.weights[1:].shape))


# ----------------------------------------------------------------------------------------------
# N-MNIST (event mode) on a tiny simulated set
# ----------------------------------------------------------------------------------------------

def write_tiny_simulated_nmnist(data_dir: Path, n_train=60, n_test=20):
    """<data_dir>/nmnist_simulated in the paper layout with SIMULATED.json: recordings of 1500 events
    whose rows depend on the label, so that a readout has something to learn."""
    from lsm_core.data.events import make_events, write_bin

    rng = np.random.default_rng(0)
    root = data_dir / "nmnist_simulated"
    for folder, numbers in (("train_all", range(1, n_train + 1)), ("test_all", range(1, n_test + 1))):
        (root / folder).mkdir(parents=True)
        rows = ["file,label"]
        for number in numbers:
            label, n = number % 10, 1500
            events = make_events(rng.integers(0, 34, n), (3 * label + rng.integers(0, 5, n)) % 34,
                                 rng.integers(0, 2, n), np.sort(rng.integers(0, 300_000, n)))
            write_bin(root / folder / f"{number:05d}.bin", events)
            rows.append(f"{number:05d}.bin,{label}")
        (root / folder / "labels.csv").write_text("\n".join(rows) + "\n")
    (root / "SIMULATED.json").write_text(json.dumps({"generator": "test", "seed": 0}))
    return data_dir


@pytest.fixture(scope="module")
def nmnist_dir(tmp_path_factory):
    return write_tiny_simulated_nmnist(tmp_path_factory.mktemp("data"))


def event_config(tmp_path, nmnist_dir, **changes) -> RunConfig:
    """A tiny run on the tiny simulated N-MNIST (50 training, 10 validation, 20 test recordings)."""
    settings = {"dataset": "nmnist", "dataset_simulated": True, "data_dir": str(nmnist_dir), "train_samples": 20,
                "valid_samples": 10, "test_samples": 10, "batches_per_block": 1, "readout_epochs": 3, "duration_ms": 60}
    return tiny_config(tmp_path, **{**settings, **changes})


def test_event_run_feeds_the_recordings_and_is_marked_simulated(tmp_path, nmnist_dir):
    from lsm_core.data.events import load_event_splits

    config = event_config(tmp_path, nmnist_dir)
    messages = []
    summary = pipeline.run(config, log=messages.append)
    folder = RunFolder(config).path
    assert summary["dataset_simulated"] is True and summary["dataset_title"] == "N-MNIST (SIMULATED)"
    params = json.loads((folder / "params.json").read_text())
    assert params["identity"]["dataset_simulated"] is True
    assert params["dataset"]["simulated"] is True and params["dataset"]["simulated_marker"]["generator"] == "test"
    assert params["dataset"]["recordings"] == {"train": 50, "valid": 10, "test": 20}
    text = "\n".join(messages)
    assert "LSM on N-MNIST (SIMULATED)" in text and "last sixth" in text and text.endswith("on N-MNIST (SIMULATED)")
    # the counts are those of the recordings simulated directly (validation = numbers 51-60)
    splits, _ = load_event_splits(nmnist_dir, simulated=True)
    net = pipeline.Network.load(Path(config.networks_dir) / "Network_5.npz")
    assert net.n_input == 2312
    simulator = LiquidSimulator(net, np.load(folder / "W_INI.npz")["weights"])
    counts, _ = simulator.run(splits["valid"].inputs(np.arange(10), 60), np.zeros(10, np.uint32))
    np.testing.assert_array_equal(np.load(folder / "counts_valid.npz")["counts"], counts)
    np.testing.assert_array_equal(np.load(folder / "counts_valid.npz")["labels"], np.arange(51, 61) % 10)
    assert counts.sum() > 0
    # a run on the real N-MNIST has another identity (never resumed from this one); image runs have no such key
    from lsm_core.runs.folder import run_identity
    real = run_identity(replace(config, dataset_simulated=False), net.dims, "sha")
    assert real["dataset_simulated"] is False and run_identity(config, net.dims, "sha")["dataset_simulated"] is True
    assert "dataset_simulated" not in run_identity(tiny_config(tmp_path), net.dims, "sha")
    # an MNIST network does not fit N-MNIST
    pipeline.Network.generate(dims=(2, 2, 2), n_input=784, seed=6).save(Path(config.networks_dir) / "Network_6.npz")
    with pytest.raises(UserError, match="has 784 input neurons .* needs 2312"):
        pipeline.run(replace(config, net_num=6, version=9), log=quiet)


def test_event_run_sizes_are_checked_against_the_recordings(tmp_path, nmnist_dir, monkeypatch):
    calls = count_simulated_batches(monkeypatch)
    for changes, message in [({"train_samples": 60}, "--train-samples 60 is more than the 50 train recordings"),
                             ({"model": "LSM_STDP", "scalars": {}}, "--init-samples 50000 is more than the 50")]:
        with pytest.raises(UserError, match=message):
            config = event_config(tmp_path, nmnist_dir, **changes)
            pipeline.run(config, log=quiet)
    assert calls == [] and not (tmp_path / "train_data").exists()


def test_missing_real_nmnist_is_fetched_or_stops_before_simulating(tmp_path, monkeypatch):
    from lsm_core.data import fetch

    tried = []

    def offline(save_to, log):
        tried.append(save_to)
        raise OSError("Name or service not known")

    monkeypatch.setattr(fetch, "_tonic_download", offline)
    calls = count_simulated_batches(monkeypatch)
    config = tiny_config(tmp_path, dataset="nmnist", data_dir=str(tmp_path / "data"))
    with pytest.raises(UserError, match="datasets fetch nmnist"):
        pipeline.run(config, log=quiet)
    with pytest.raises(UserError, match="datasets simulate-nmnist"):
        pipeline.run(replace(config, dataset_simulated=True), log=quiet)
    assert tried == [tmp_path / "data" / "nmnist"] and calls == [] and not (tmp_path / "train_data").exists()


def test_init_phase_snapshots_are_20_ms_windows_at_seeded_starts(tmp_path, nmnist_dir, monkeypatch):
    """The init phase gets, per snapshot, the window [start, start + 20) ms of a shuffled training
    recording, start uniform in [1, 278] from the run seed (docs/model.md#the-init-phase)."""
    from lsm_core.data.events import load_event_splits
    from lsm_core.engines import simulator as sim

    seen = []

    class Recorder:
        def __init__(self, net, weights, rule, phase, params):
            self.weights = np.asarray(weights, np.float32)[np.newaxis]

        def run(self, inputs, keys, steps, record, start):
            seen.append(inputs)
            return types.SimpleNamespace(weights=self.weights, trace=start.trace, calcium=start.calcium,
                                         counts=np.zeros((len(inputs), 1)))

    monkeypatch.setattr(sim, "plastic_simulator", lambda net, weights, rule, phase, params, engine: Recorder(
        net, weights, rule, phase, params))
    monkeypatch.setattr(pipeline, "INIT_CHUNK", 8)
    config = event_config(tmp_path, nmnist_dir, model="LSM_STDP", scalars={}, init_samples=20, seed=77)
    splits, _ = pipeline._load_splits(config, quiet)
    net = pipeline.Network.generate(dims=(2, 2, 2), n_input=2312, seed=1)
    pipeline._init_phase(config, RunFolder(config), net, np.ones(net.synapses().post.shape, np.float32),
                         splits["init_pool"], {}, quiet)
    starts = pipeline._init_window_starts(config)
    assert starts.shape == (20,) and 1 <= starts.min() and starts.max() <= 278 and len(set(starts)) > 10
    np.testing.assert_array_equal(starts, pipeline._init_window_starts(config))
    assert not np.array_equal(starts, pipeline._init_window_starts(replace(config, seed=78)))
    inputs = np.concatenate(seen)
    assert [len(chunk) for chunk in seen] == [8, 8, 4] and inputs.shape == (20, 20, 2312)
    order = np.random.default_rng([77, 4]).permutation(50)[:20]
    pool, _ = load_event_splits(nmnist_dir, simulated=True)
    for i in (0, 7, 19):
        full = pool["train"].inputs([order[i]], 300)[0]
        np.testing.assert_array_equal(inputs[i], full[starts[i]:starts[i] + 20])
    assert not pipeline._init_window_starts(replace(config, dataset="mnist", dataset_simulated=False)).any()


def test_nmnist_scripts_run_with_piped_answers(tmp_path, nmnist_dir):
    """LSM and NALSM N-MNIST scripts on the tiny simulated set, as from a shell loop (run side by side)."""
    common = ["--simulated-nmnist", "--data-dir", str(nmnist_dir), "--train-samples", "10", "--valid-samples", "10",
              "--test-samples", "10", "--readout-epochs", "2", "--duration-ms", "30", "--dims", "3x3x3",
              "--seed", "2", "--output-root", str(tmp_path / "td"), "--networks-dir", str(tmp_path / "nets")]
    runs = [("LSM_RUN_MAIN_SIM_N_MNIST.py", "cpu\n1\n1\n10\n1\n2.0\n", []),
            ("NALSM_RUN_MAIN_SIM_N_MNIST.py", "cpu\n2\n2\n10\n1\n0.015\n", ["--init-samples", "10"])]
    processes = [subprocess.Popen([sys.executable, str(REPO / script), *common, *extra], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
                 for script, _, extra in runs]
    results = [process.communicate(answers, timeout=300) for process, (_, answers, _) in zip(processes, runs)]
    for process, (out, err) in zip(processes, results):
        assert process.returncode == 0, err
        assert "on N-MNIST (SIMULATED)" in out and "TEST ACCURACY at the best validation epoch" in out
    for version, model in ((1, "LSM"), (2, "NALSM")):
        folder = tmp_path / "td" / f"ver_{version}"
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["complete"] and summary["dataset_simulated"] and summary["model"] == model
        assert "N-MNIST (SIMULATED)" in (folder / "run.log").read_text()
    assert (tmp_path / "td" / "ver_2" / "weights.png").exists()
    w_ini = np.load(tmp_path / "td" / "ver_2" / "W_INI.npz")["weights"]
    assert np.any(np.abs(w_ini) != 3.0)                                       # the init phase learned


def test_read_ahead_loads_the_next_batch_while_the_current_one_is_used():
    import threading

    started = {k: threading.Event() for k in range(3)}

    def load(k):
        started[k].set()
        if k == 2:
            raise UserError("recording 00003.bin is damaged")
        return k * 10

    batches = pipeline._read_ahead(load, [0, 1, 2])
    assert next(batches) == 0
    assert started[1].wait(5)                         # the next batch is being read meanwhile
    assert next(batches) == 10
    with pytest.raises(UserError, match="damaged"):
        next(batches)
    assert list(pipeline._read_ahead(load, [])) == []


def test_two_processes_started_together_on_one_version_one_runs_the_other_exits_2(tmp_path):
    """The run lock: exactly one of two simultaneous scripts runs; the other stops at once naming it."""
    options = ["--train-samples", "40", "--valid-samples", "20", "--test-samples", "20", "--readout-epochs", "5",
               "--duration-ms", "150", "--dims", "4x4x4", "--seed", "5", "--networks-dir", str(tmp_path / "nets")]
    script = [sys.executable, str(REPO / "LSM_RUN_MAIN_SIM_MNIST.py"), *options]
    lone = subprocess.run([*script, "--output-root", str(tmp_path / "lone")], input="cpu\n1\n1\n10\n1\n2.0\n",
                          capture_output=True, text=True, timeout=300)
    assert lone.returncode == 0, lone.stderr
    expected = np.load(tmp_path / "lone" / "ver_1" / "counts_train.npz")["counts"]
    for version in (2, 3):
        root = tmp_path / f"pair{version}"
        answers = tmp_path / f"answers{version}.txt"
        answers.write_text(f"cpu\n{version}\n1\n10\n1\n2.0\n")
        pair = []
        for _ in range(2):                      # both read their answers at once, from a file
            with open(answers) as stdin:
                pair.append(subprocess.Popen([*script, "--output-root", str(root)], stdin=stdin,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outputs = [process.communicate(timeout=300) for process in pair]
        codes = sorted(process.returncode for process in pair)
        assert codes == [0, 2], outputs
        loser = pair[[p.returncode for p in pair].index(2)]
        winner = pair[[p.returncode for p in pair].index(0)]
        err = " ".join(outputs[pair.index(loser)][1].split())      # the message is wrapped at 100 columns
        assert "in use by another run" in err and f"PID {winner.pid}" in err and "Traceback" not in err
        np.testing.assert_array_equal(np.load(root / f"ver_{version}" / "counts_train.npz")["counts"], expected)
        summary = json.loads((root / f"ver_{version}" / "summary.json").read_text())
        assert summary["complete"] and not (root / f"ver_{version}" / "run.lock").exists()


def test_engine_is_part_of_the_run_and_never_changes_on_resumption(tmp_path):
    def identity(config):
        return json.loads((RunFolder(config).path / "params.json").read_text())["identity"]

    config = tiny_config(tmp_path, readout_epochs=2)
    pipeline.run(config, log=quiet)                              # "auto" without a GPU: the event-driven engine
    assert identity(config)["engine"] == "events"
    with pytest.raises(UserError, match="different parameters.*engine"):
        pipeline.run(replace(config, engine="xla"), log=quiet)
    # a run made on XLA (as every run before the event-driven engine) keeps its old identity and engine
    old = tiny_config(tmp_path, version=4, readout_epochs=2, engine="xla")
    pipeline.run(old, log=quiet)
    assert "engine" not in identity(old)
    messages = []
    pipeline.run(replace(old, engine="auto", readout_epochs=3), log=messages.append)
    assert any("resuming" in m for m in messages) and any("engine xla" in m for m in messages)
    # the two engines simulate the same dynamics
    for split in ("valid", "test", "train"):
        np.testing.assert_array_equal(np.load(RunFolder(config).counts_file(split))["counts"],
                                      np.load(RunFolder(old).counts_file(split))["counts"])


def test_binned_counts_put_step_t_in_bin_floor_t_k_over_t():
    spikes = np.zeros((2, 10, 3), bool)
    spikes[0, :, 0] = True                     # every step
    spikes[1, [3, 4, 6, 7, 9], 2] = True
    binned = pipeline.binned_counts(spikes, 3)              # steps 0-3, 4-6, 7-9
    assert binned.shape == (2, 3, 3) and binned.dtype == np.int32
    assert binned[0, :, 0].tolist() == [4, 3, 3] and binned[1, :, 2].tolist() == [1, 2, 2]
    np.testing.assert_array_equal(pipeline.binned_counts(spikes, 1)[:, 0], spikes.sum(axis=1))
    np.testing.assert_array_equal(pipeline.binned_counts(spikes, 10), spikes.astype(np.int32))


def test_count_bins_store_time_bins_that_add_up_to_the_totals_and_change_nothing_else(tmp_path, finished_run):
    """--count-bins 4: counts_<split>.npz holds [n, 4, N_res] adding up to the totals of the same run without
    bins; the paper's readout (on the totals) trains identically; the identity records count_bins."""
    config, folder, summary = finished_run
    binned = tiny_config(tmp_path, count_bins=4)
    binned_summary = pipeline.run(binned, log=quiet)
    for split in ("valid", "test", "train"):
        counts = np.load(RunFolder(binned).counts_file(split))["counts"]
        assert counts.shape == (config.split_sizes[split], 4, 27)
        np.testing.assert_array_equal(counts.sum(axis=1), np.load(folder / f"counts_{split}.npz")["counts"])
    assert (RunFolder(binned).path / "history.csv").read_text() == (folder / "history.csv").read_text()
    assert binned_summary["mean_rate_hz"] == summary["mean_rate_hz"]
    assert json.loads((RunFolder(binned).path / "params.json").read_text())["identity"]["count_bins"] == 4
    assert "count_bins" not in json.loads((folder / "params.json").read_text())["identity"]
    with pytest.raises(UserError, match="different parameters.*count_bins"):
        pipeline.run(replace(binned, count_bins=2), log=quiet)
    with pytest.raises(UserError, match="1 to 40 time bins"):
        pipeline.run(tiny_config(tmp_path, version=9, count_bins=41), log=quiet)


def test_count_bins_of_a_learning_liquid_on_both_engines(tmp_path):
    """NALSM (weights learn within each sample): time bins from the XLA engine add up to the event-driven
    engine's totals."""
    base = tiny_config(tmp_path, model="NALSM", scalars={"ASTRO_W_SCALING": 0.015}, init_samples=20,
                       readout_epochs=2)
    pipeline.run(replace(base, engine="events"), log=quiet)
    binned = replace(base, version=4, engine="xla", count_bins=5)
    pipeline.run(binned, log=quiet)
    for split in ("valid", "test", "train"):
        totals = np.load(RunFolder(base).counts_file(split))["counts"]
        counts = np.load(RunFolder(binned).counts_file(split))["counts"]
        assert counts.shape == (len(totals), 5, 27) and totals.sum() > 0
        np.testing.assert_array_equal(counts.sum(axis=1), totals)


def test_astro_mask_draws_ceil_d_n_of_each_population_from_the_seed():
    mask = pipeline.astro_mask(3, 0.25, 10, 7)
    assert mask.dtype == np.float32 and mask.shape == (17,)
    assert (mask[:10] == 1).sum() == 3 and (mask[:10] == 0).sum() == 7             # ceil(2.5) reservoir neurons
    assert (mask[10:] == -1).sum() == 2 and (mask[10:] == 0).sum() == 5             # ceil(1.75) inputs
    np.testing.assert_array_equal(mask, pipeline.astro_mask(3, 0.25, 10, 7))
    assert not np.array_equal(mask, pipeline.astro_mask(4, 0.25, 10, 7))
    np.testing.assert_array_equal(pipeline.astro_mask(3, 1.0, 10, 7), np.r_[np.ones(10), -np.ones(7)])


def test_astro_density_joins_the_identity_and_changes_the_nalsm_liquid(tmp_path):
    base = tiny_config(tmp_path, model="NALSM", scalars={"ASTRO_W_SCALING": 0.015}, init_samples=20,
                       readout_epochs=2)
    pipeline.run(base, log=quiet)
    messages = []
    sparse = replace(base, version=4, astro_density=0.3)
    pipeline.run(sparse, log=messages.append)
    assert any("astrocyte fed by 9 of 27 reservoir neurons and 236 of 784 inputs" in m for m in messages)
    identity = json.loads((RunFolder(sparse).path / "params.json").read_text())["identity"]
    assert identity["astro_density"] == 0.3
    assert "astro_density" not in json.loads((RunFolder(base).path / "params.json").read_text())["identity"]
    w_ini = [np.load(RunFolder(c).path / "W_INI.npz")["weights"] for c in (base, sparse)]
    assert not np.array_equal(*w_ini)                      # the astrocyte modulated the init phase differently
    with pytest.raises(UserError, match="astro_density"):
        pipeline.run(replace(base, version=5, astro_density=0.0), log=quiet)


def test_an_error_raised_on_the_way_out_of_a_sigterm_is_still_that_sigterm(tmp_path, monkeypatch):
    """SIGTERM inside numpy's savez made zipfile raise ValueError while closing: the run must still stop as
    interrupted (exit 143 in the scripts), saying where, not with that ValueError's traceback."""
    from lsm_core.errors import Terminated
    from lsm_core.runs import folder as folder_module

    def savez_cut_by_sigterm(*args, **kwargs):
        try:
            raise Terminated
        finally:
            raise ValueError("Can't close the ZIP file while there is an open writing handle on it.")

    monkeypatch.setattr(folder_module, "npz_bytes", savez_cut_by_sigterm)
    with pytest.raises(Terminated) as stopped:
        pipeline.run(tiny_config(tmp_path), log=quiet)
    assert stopped.value.where.startswith("interrupted by SIGTERM at ")
    assert "re-run the same command to resume" in stopped.value.where
    run_log = (tmp_path / "train_data" / "ver_3" / "run.log").read_text()
    assert "interrupted by SIGTERM" in run_log


def test_an_ordinary_error_is_not_taken_for_an_interruption():
    from lsm_core.errors import interruption_behind

    assert interruption_behind(ValueError("plain")) is None
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise OSError("while stopping")
    except OSError as exc:
        assert isinstance(interruption_behind(exc), KeyboardInterrupt)
