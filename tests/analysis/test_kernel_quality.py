"""Kernel quality (docs/evaluation.md#kernel-quality): noise, time shifts, ranks of count matrices of
known rank, and a tiny run."""

import json

import numpy as np
import pytest

from lsm_core.analysis.kernel_quality import (
    _gram_dtype,
    draw_samples,
    draw_time_shifts,
    gram_rank,
    kernel_rank,
    kernel_ranks,
    noisy_images,
    shift_events,
)
from lsm_core.errors import UserError
from tests.damage import damage

# ---- noise -----------------------------------------------------------------------------------------

def test_noisy_images_are_clipped_rounded_uint8_with_the_given_spread():
    rng = np.random.default_rng(0)
    grey = np.full((200, 28, 28), 128, np.uint8)
    noisy = noisy_images(grey, rng, std=10.0)
    assert noisy.dtype == np.uint8 and noisy.shape == grey.shape
    assert abs(noisy.mean() - 128) < 0.1 and abs(noisy.astype(float).std() - 10.0) < 0.1
    black = noisy_images(np.zeros((100, 784), np.uint8), rng)           # std 125 by default
    assert black.min() == 0 and black.max() == 255
    assert 0.48 < np.mean(black == 0) < 0.52                           # half the noise is negative: clipped
    np.testing.assert_array_equal(noisy_images(grey, rng, std=0.0), grey)
    a, b = (noisy_images(grey[:3], np.random.default_rng(5)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        noisy_images(grey.astype(np.float32), rng)


def test_time_shifts_are_integer_microseconds_with_the_given_spread():
    shifts = draw_time_shifts(20000, np.random.default_rng(1), std_ms=10.0)
    assert shifts.dtype == np.int64 and abs(shifts.std() - 10000) < 200 and abs(shifts.mean()) < 200


def test_shift_events_reflects_at_both_ends():
    t = np.array([0, 50, 97, 99])
    np.testing.assert_array_equal(shift_events(t, 5, end_us=100), [5, 55, 97, 95])
    np.testing.assert_array_equal(shift_events(t, -3, end_us=100), [2, 47, 94, 96])
    np.testing.assert_array_equal(shift_events(t, 0, end_us=100), t)
    np.testing.assert_array_equal(shift_events(np.array([10]), 250, end_us=100), [60])   # -> 260: reflected twice
    for shift in (-250, -7, 13, 100, 333):          # every event stays inside the recording
        moved = shift_events(np.arange(100), shift, end_us=100)
        assert moved.min() >= 0 and moved.max() < 100
        assert np.abs(np.diff(moved)).max() <= 1                                 # folded, never torn apart
    assert shift_events(np.array([], np.int64), 4).shape == (0,)


# ---- ranks -----------------------------------------------------------------------------------------

def low_rank_counts(rng, n_samples, n_neurons, rank):
    """Non-negative integer counts [samples, neurons] of exactly `rank` (products of small integers)."""
    while True:
        counts = rng.integers(0, 4, (n_samples, rank)) @ rng.integers(0, 4, (rank, n_neurons))
        if np.linalg.matrix_rank(counts.astype(float)) == rank:
            return counts.astype(np.int32)


@pytest.mark.parametrize("n_neurons", [12, 60])          # Gram on the neuron side, then on the sample side
def test_kernel_ranks_match_svd_ranks(n_neurons):
    rng = np.random.default_rng(n_neurons)
    counts = rng.poisson(1.0, (200, n_neurons)).astype(np.int32)
    counts[:, 3] = 0                                                 # a silent neuron
    counts[:, 4] = counts[:, 5] + counts[:, 6]                        # a dependent one
    index = np.stack([rng.choice(200, 30, replace=False) for _ in range(7)])
    expected = [np.linalg.matrix_rank(counts[i].astype(float)) for i in index]
    np.testing.assert_array_equal(kernel_ranks(counts, index), expected)


def test_kernel_ranks_of_matrices_of_known_rank():
    rng = np.random.default_rng(3)
    counts = low_rank_counts(rng, 300, 80, 17)
    index = np.stack([rng.choice(300, 50, replace=False) for _ in range(5)])
    np.testing.assert_array_equal(kernel_ranks(counts, index), 17)
    assert kernel_ranks(np.zeros((10, 4), np.int32), np.arange(6)[None]).tolist() == [0]


def test_gram_rank_of_known_matrices():
    assert gram_rank(np.zeros((3, 3))) == 0 and gram_rank(np.zeros((0, 0))) == 0
    assert gram_rank(np.eye(7)) == 7
    m = np.arange(12.0).reshape(4, 3)                      # rank 2
    assert gram_rank(m.T @ m) == 2 and gram_rank(m @ m.T) == 2


def test_a_rank_below_its_bound_is_checked_with_an_svd(monkeypatch):
    import lsm_core.analysis.kernel_quality as kq_module

    a = 10_000
    counts = np.array([[a, a - 1], [a - 1, a - 2]], np.int64)    # determinant -1: rank 2, condition ~ 4e8
    assert kernel_ranks(counts, np.array([[0, 1]])).tolist() == [2]
    monkeypatch.setattr(kq_module, "gram_rank", lambda gram: 0)   # a Gram rank that lost small singular values
    rng = np.random.default_rng(8)
    counts = low_rank_counts(rng, 40, 10, 6)
    assert kernel_ranks(counts, np.arange(40)[None]).tolist() == [6]


def test_large_counts_use_a_float64_gram_matrix_and_stay_exact():
    assert _gram_dtype(np.array([[100]]), 1000) == np.float32          # 1e7 < 2^24
    assert _gram_dtype(np.array([[200]]), 1000) == np.float64
    rng = np.random.default_rng(4)
    counts = low_rank_counts(rng, 60, 40, 9) * 40                       # peaks of several hundred
    assert _gram_dtype(counts, 60) == np.float64
    np.testing.assert_array_equal(kernel_ranks(counts, np.arange(60)[None]), [9])


def test_kernel_rank_of_classes_with_one_state_each_is_the_number_of_classes():
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(4), 25)
    states = np.eye(4, 9, dtype=np.int32) * 3 + 1                      # 4 independent count vectors
    mean, std = kernel_rank(states[labels], labels, per_class=5, draws=20, rng=rng)
    assert (mean, std) == (4.0, 0.0)


def test_kernel_rank_averages_over_draws():
    rng = np.random.default_rng(6)
    labels = np.repeat(np.arange(2), 10)
    counts = np.zeros((20, 5), np.int32)
    counts[0, 0] = 1                                   # one sample of class 0 adds a dimension
    counts[:, 1] = 2
    mean, std = kernel_rank(counts, labels, per_class=5, draws=4000, rng=rng)
    assert mean == pytest.approx(1.5, abs=0.03) and std == pytest.approx(0.5, abs=0.01)   # P(drawn) = 5/10


def test_draw_samples_takes_distinct_samples_of_every_class():
    labels = np.array([2, 0, 1, 0, 2, 1, 0, 2, 1, 1])
    index = draw_samples(labels, 2, 50, np.random.default_rng(7))
    assert index.shape == (50, 6)
    np.testing.assert_array_equal(labels[index], np.tile([0, 0, 1, 1, 2, 2], (50, 1)))
    assert all(len(set(row)) == 6 for row in index.tolist())
    assert len({tuple(row) for row in index.tolist()}) > 10
    with pytest.raises(UserError, match="Choose --per-class 3 or less"):
        draw_samples(labels, 4, 5, np.random.default_rng(7))
    with pytest.raises(UserError):
        draw_samples(labels, 0, 5, np.random.default_rng(7))


# ---- N-MNIST time shifts as a split ------------------------------------------------------------------

class FakeRecordings:
    """Stands in for events.EventSplit: two recordings of a few events each."""

    def __init__(self):
        from lsm_core.data.events import make_events
        self.recordings = [make_events([1, 2, 3], [0, 5, 9], [0, 1, 1], [1000, 5400, 299_000]),
                           make_events([7], [7], [1], [310_000])]
        self.labels = np.array([3, 8])

    def __len__(self):
        return 2

    def events(self, row):
        return self.recordings[row]


def test_shifted_recordings_move_every_event_and_reflect_at_the_ends():
    from lsm_core.analysis.kernel_quality import _ShiftedRecordings
    from lsm_core.data.events import bin_events

    fake = FakeRecordings()
    unshifted = _ShiftedRecordings(fake, np.array([0, 0])).inputs([0, 1], 320)
    np.testing.assert_array_equal(unshifted[0], bin_events(fake.recordings[0], 320))
    np.testing.assert_array_equal(unshifted[1], bin_events(fake.recordings[1], 320))   # past 300 ms: kept
    shifted = _ShiftedRecordings(fake, np.array([2000, -3000])).inputs([0, 1], 320)
    steps = [np.nonzero(shifted[0])[0].tolist(), np.nonzero(shifted[1])[0].tolist()]
    # 1 ms -> 3 ms, 5.4 ms -> 7.4 ms -> 7, 299 ms -> 301 ms: reflected at 300 ms to 298.999 ms -> 299
    assert steps == [[3, 7, 299], [307]]
    assert shifted[0, 3, 0 * 34 * 34 + 0 * 34 + 1] == 1


# ---- end to end on a tiny run ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from lsm_core.config import RunConfig
    from lsm_core.runs import pipeline

    tmp = tmp_path_factory.mktemp("kq")
    config = RunConfig(model="LSM", dataset="mnist", gpu="cpu", version=1, net_num=1, batch_size=10,
                       batches_per_block=2, scalars={"INTIAL_ABS_W_SCLR": 3.0}, train_samples=20,
                       valid_samples=20, test_samples=100, readout_epochs=2, duration_ms=40, seed=11,
                       dims=(3, 3, 3), output_root=str(tmp / "runs"), networks_dir=str(tmp / "networks"))
    pipeline.run(config, log=lambda message: None)
    return config, tmp / "runs" / "ver_1"


def kq(config, *options):
    from lsm_core.__main__ import main
    return main(["kernel-quality", "1", "--output-root", config.output_root, "--per-class", "2", "--draws", "6",
                 *options])


class Interrupt(Exception):
    pass


def test_kernel_quality_end_to_end(tiny_run, capsys):
    from lsm_core.analysis.kernel_quality import _seed_rng
    from lsm_core.data.encoding import image_probabilities
    from lsm_core.data.images import load_image_dataset
    from lsm_core.engines.xla import LiquidSimulator
    from lsm_core.model.network import Network, network_path
    from lsm_core.model.randomness import sample_keys

    config, folder = tiny_run
    assert kq(config) == 0
    result = json.loads((folder / "kernel_quality.json").read_text())
    assert (result["per_class"], result["draws"], result["columns"], result["n_res"]) == (2, 6, 20, 27)
    assert result["noise"]["std"] == 125.0 and result["noise"]["kind"] == "gaussian pixel noise"
    test = np.load(folder / "counts_test.npz")
    index = draw_samples(test["labels"], 2, 6, _seed_rng(config.seed, "draws"))
    expected = kernel_ranks(test["counts"], index)
    assert (result["sp_mean"], result["sp_std"]) == (expected.mean(), expected.std())
    noisy = np.load(folder / "counts_noisy_test.npz")
    assert noisy["counts"].shape == (100, 27) and noisy["counts"].dtype == np.int32
    np.testing.assert_array_equal(noisy["labels"], test["labels"])
    assert result["ap_mean"] == kernel_ranks(noisy["counts"], index).mean()
    assert not np.array_equal(noisy["counts"], test["counts"])
    assert not list((folder / "blocks").glob("noisy_test_*"))
    # the noisy counts are the run's liquid and weights driven by the noisy images and the noisy_test keys
    net = Network.load(network_path(1, config.networks_dir))
    images = load_image_dataset("mnist").x_test
    inputs = image_probabilities(noisy_images(images, _seed_rng(config.seed, "noise")))[:10]
    weights = np.load(folder / "W_INI.npz")["weights"]
    counts, _ = LiquidSimulator(net, weights).run(inputs, sample_keys(config.seed, "noisy_test", np.arange(10)),
                                                  steps=40)
    np.testing.assert_array_equal(counts, noisy["counts"][:10])
    assert "SP = " in capsys.readouterr().out and "AP = " in (folder / "run.log").read_text()


def test_noisy_counts_resume_block_by_block(tiny_run, monkeypatch):
    from lsm_core.runs.folder import RunFolder
    from tests.spies import count_simulated_batches

    config, folder = tiny_run
    assert kq(config, "--sp-only") == 0
    if not (folder / "counts_noisy_test.npz").exists():
        assert kq(config) == 0
    reference = np.load(folder / "counts_noisy_test.npz")["counts"]
    saved = []
    original_save = RunFolder.save_block

    def save_then_stop(self, split, block, **arrays):
        original_save(self, split, block, **arrays)
        saved.append(block)
        if len(saved) == 2:
            raise Interrupt
    monkeypatch.setattr(RunFolder, "save_block", save_then_stop)
    with pytest.raises(Interrupt):
        kq(config, "--recompute-noisy")
    assert not (folder / "counts_noisy_test.npz").exists() and len(list((folder / "blocks").iterdir())) == 2
    monkeypatch.setattr(RunFolder, "save_block", original_save)
    calls = count_simulated_batches(monkeypatch)                    # whichever engine the run uses
    assert kq(config) == 0
    assert calls == [10] * 6                                 # the 3 missing blocks of 2 batches only
    np.testing.assert_array_equal(np.load(folder / "counts_noisy_test.npz")["counts"], reference)


def test_kernel_quality_errors(tiny_run, capsys):
    config, folder = tiny_run
    if not (folder / "counts_noisy_test.npz").exists():
        assert kq(config) == 0
    capsys.readouterr()
    assert kq(config, "--noise-std", "60") == 2
    assert "made with other noise settings" in " ".join(capsys.readouterr().err.split())
    assert kq(config, "--per-class", "30") == 2
    assert "Choose --per-class" in " ".join(capsys.readouterr().err.split())
    from lsm_core.__main__ import main
    assert main(["kernel-quality", "7", "--output-root", config.output_root]) == 2
    assert "there is no run VERSION 7" in capsys.readouterr().err


# ---- damaged files of the run ----------------------------------------------------------------------

RESULT = ("sp_mean", "sp_std", "ap_mean", "ap_std", "n_res", "test_samples", "columns", "noise")


def kq_in(root, *options):
    """`kernel-quality 1` on the run under `root` (a copy of the tiny run)."""
    from lsm_core.__main__ import main
    return main(["kernel-quality", "1", "--output-root", str(root), "--per-class", "2", "--draws", "6", *options])


@pytest.fixture(scope="module")
def kq_done(tiny_run, tmp_path_factory):
    """A copy of the tiny run after kernel-quality (with its counts_noisy_test.npz): (folder, result)."""
    import shutil

    root = tmp_path_factory.mktemp("kq_done")
    shutil.copytree(tiny_run[1], root / "ver_1")
    assert kq_in(root) == 0
    result = json.loads((root / "ver_1" / "kernel_quality.json").read_text())
    return root / "ver_1", {name: result[name] for name in RESULT}


def copy_of(kq_done, tmp_path):
    import shutil
    return shutil.copytree(kq_done[0], tmp_path / "ver_1")


def result_in(folder):
    result = json.loads((folder / "kernel_quality.json").read_text())
    return {name: result[name] for name in RESULT}


@pytest.mark.parametrize("name, how", [("counts_test.npz", "flip"), ("counts_test.npz", "half"),
                                       ("counts_test.npz", "delete"), ("W_INI.npz", "flip"),
                                       ("W_INI.npz", "zeros")])
def test_damaged_test_counts_or_weights_stop_with_a_message_naming_them(kq_done, tmp_path, capsys, name, how):
    from lsm_core.runs.folder import RERUN_TO_REPAIR

    folder = copy_of(kq_done, tmp_path)
    before = (folder / "kernel_quality.json").read_bytes()
    damage(folder / name, how)
    capsys.readouterr()
    assert kq_in(tmp_path) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{folder / name} is damaged: " in err and RERUN_TO_REPAIR in err and "Traceback" not in err
    assert (folder / "kernel_quality.json").read_bytes() == before          # the old result is left as it was
    assert not (folder / "run.lock").exists()


@pytest.mark.parametrize("how", ["flip", "delete"])
def test_damaged_noisy_counts_are_simulated_again_with_the_same_result(kq_done, tmp_path, how):
    folder = copy_of(kq_done, tmp_path)
    reference = np.load(folder / "counts_noisy_test.npz")["counts"]
    (folder / "kernel_quality.json").unlink()
    damage(folder / "counts_noisy_test.npz", how)
    assert kq_in(tmp_path) == 0
    assert result_in(folder) == kq_done[1]
    np.testing.assert_array_equal(np.load(folder / "counts_noisy_test.npz")["counts"], reference)
    log = (folder / "run.log").read_text()
    reason = "its SHA-256 differs" if how == "flip" else "it is missing, but manifest.json records it"
    assert f"counts_noisy_test.npz is damaged ({reason}" in log and "simulating it again" in log


def test_a_damaged_noisy_block_is_simulated_again_with_the_same_result(kq_done, tmp_path, monkeypatch):
    from lsm_core.runs.folder import RunFolder
    from tests.spies import count_simulated_batches

    folder = copy_of(kq_done, tmp_path)
    reference = np.load(folder / "counts_noisy_test.npz")["counts"]
    original_save = RunFolder.save_block

    def save_then_stop(self, split, block, **arrays):
        original_save(self, split, block, **arrays)
        if block == 1:
            raise Interrupt
    monkeypatch.setattr(RunFolder, "save_block", save_then_stop)
    with pytest.raises(Interrupt):
        kq_in(tmp_path, "--recompute-noisy")
    monkeypatch.setattr(RunFolder, "save_block", original_save)
    damage(folder / "blocks" / "noisy_test_block_00001.npz", "flip")
    calls = count_simulated_batches(monkeypatch)
    assert kq_in(tmp_path) == 0
    assert calls == [10] * 8                                   # block 1 again and the 3 never written
    assert result_in(folder) == kq_done[1]
    np.testing.assert_array_equal(np.load(folder / "counts_noisy_test.npz")["counts"], reference)
    assert "blocks/noisy_test_block_00001.npz is damaged (its SHA-256 differs" in (folder / "run.log").read_text()
    assert not list((folder / "blocks").glob("noisy_test_*"))


@pytest.mark.parametrize("how", ["half", "zeros", "flip"])
def test_an_unreadable_params_json_is_a_message_naming_it(kq_done, tmp_path, capsys, how):
    folder = copy_of(kq_done, tmp_path)
    damage(folder / "params.json", how)
    capsys.readouterr()
    assert kq_in(tmp_path, "--sp-only") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{folder / 'params.json'} is damaged" in err and "Traceback" not in err


def test_a_params_json_that_differs_from_its_record_is_not_used(kq_done, tmp_path, capsys):
    folder = copy_of(kq_done, tmp_path)
    params = folder / "params.json"
    params.write_bytes(params.read_bytes().replace(b'"seed": 11', b'"seed": 10'))     # one bit of one digit
    assert kq_in(tmp_path, "--sp-only") == 2
    assert "params.json is damaged" in " ".join(capsys.readouterr().err.split())


# ---- noisy counts stored by earlier versions -------------------------------------------------------

# The noise settings stamp's description of the image encoding as earlier versions stored it.
OLD_ENCODING = "SPEC 3.3 on the noisy test split: / pixel sum, / the split's largest value"


def test_noisy_counts_stamped_with_the_old_encoding_wording_are_used_as_they_are(tiny_run, kq_done, tmp_path,
                                                                                monkeypatch, capsys):
    """counts_noisy_test.npz whose settings stamp has the earlier wording of the same encoding is accepted:
    kernel-quality uses it without simulating anything, with the same result; other settings in that
    wording are still refused."""
    from dataclasses import replace

    from lsm_core.runs.folder import RunFolder
    from tests.spies import count_simulated_batches

    folder = copy_of(kq_done, tmp_path)
    stored = dict(np.load(folder / "counts_noisy_test.npz"))
    settings = json.loads(str(stored["settings"]))
    assert settings["encoding"] != OLD_ENCODING
    old_stamp = json.dumps({**settings, "encoding": OLD_ENCODING}, sort_keys=True)
    RunFolder(replace(tiny_run[0], output_root=str(tmp_path))).save_npz(
        "counts_noisy_test.npz", **{**stored, "settings": np.array(old_stamp)})
    (folder / "kernel_quality.json").unlink()
    calls = count_simulated_batches(monkeypatch)
    assert kq_in(tmp_path) == 0
    assert calls == []                                        # nothing simulated again
    assert result_in(folder) == kq_done[1]
    assert str(np.load(folder / "counts_noisy_test.npz")["settings"]) == old_stamp     # the file is left as it was
    capsys.readouterr()
    assert kq_in(tmp_path, "--noise-std", "60") == 2
    assert "made with other noise settings" in " ".join(capsys.readouterr().err.split())
