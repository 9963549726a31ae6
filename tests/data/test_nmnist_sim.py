"""Tests of lsm_core.data.nmnist_sim: the event-camera model, its statistics, the written layout, resume, CLI."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from lsm_core.data import nmnist_sim as ns
from lsm_core.data.events import (
    SENSOR,
    bin_events,
    check_recordings,
    encode_events,
    load_event_splits,
    read_bin,
    write_bin,
)
from lsm_core.data.images import load_image_dataset
from lsm_core.errors import UserError

QUIET = {"jitter_ms": 0.0, "noise_rate_hz": 0.0, "threshold_mismatch": 0.0, "refractory_ms": 0.0}


@pytest.fixture(scope="module")
def mnist():
    return load_image_dataset("mnist", verify=False)


@pytest.fixture(scope="module")
def sample(mnist):
    """60 training digits simulated with the default parameters."""
    n = 60
    rngs = [ns.recording_rng(0, "train", i) for i in range(n)]
    return ns.render_batch(mnist.x_train[:n], rngs), mnist.y_train[:n]


def run(out, train=3, test=2, **kw):
    kw.setdefault("jobs", 1)
    return ns.simulate_nmnist(out, train, test, log=lambda message: None, **kw)


def tree(folder):
    """{relative path: bytes} of every file under `folder`."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------

def test_trajectory_is_a_closed_triangle_of_three_saccades():
    p = ns.DEFAULT_PARAMS
    t, x, y = ns.trajectory(p)
    assert t[0] == 0 and t[-1] == p.duration_ms and len(t) == round(p.duration_ms / p.dt_ms) + 1
    corner = [int(np.argmin(np.abs(t - ms))) for ms in (0, 100, 200, 300)]
    start = np.array([x[0], y[0]])
    np.testing.assert_allclose([x[corner[1]], y[corner[1]]], start + [p.saccade_dx_px, p.saccade_dy_px])
    np.testing.assert_allclose([x[corner[2]], y[corner[2]]], start + [2 * p.saccade_dx_px, 0])
    np.testing.assert_allclose([x[corner[3]], y[corner[3]]], start)
    # the digit (28 px) stays inside the 34 px view, the triangle is centred
    assert x.min() >= 0 and x.max() + 28 <= SENSOR and y.min() >= 0 and y.max() + 28 <= SENSOR
    assert np.isclose(x.min() + x.max() + 28, SENSOR) and np.isclose(y.min() + y.max() + 28, SENSOR)
    # minimum jerk: at rest at the turning points, fastest mid-saccade
    speed = np.hypot(np.diff(x), np.diff(y))
    assert speed[0] < 1e-3 * speed.max() and speed[corner[1] - 1] < 1e-3 * speed.max()
    assert abs(int(np.argmax(speed[:corner[1]])) - corner[1] / 2) <= 1


def test_same_rng_same_events_other_rng_other_events(mnist):
    digit = mnist.x_train[0]
    a = ns.render_recording(digit, ns.recording_rng(7, "train", 0))
    b = ns.render_recording(digit, ns.recording_rng(7, "train", 0))
    c = ns.render_recording(digit, ns.recording_rng(8, "train", 0))
    d = ns.render_recording(digit, ns.recording_rng(7, "test", 0))
    assert encode_events(a) == encode_events(b)
    assert encode_events(a) != encode_events(c) and encode_events(a) != encode_events(d)


def test_a_recording_does_not_depend_on_its_batch(mnist):
    digits = mnist.x_test[:5]
    batch = ns.render_batch(digits, [ns.recording_rng(3, "test", i) for i in range(5)])
    alone = [ns.render_recording(digits[i], ns.recording_rng(3, "test", i)) for i in range(5)]
    other = ns.render_batch(digits[2:4], [ns.recording_rng(3, "test", i) for i in (2, 3)])
    assert [encode_events(e) for e in batch] == [encode_events(e) for e in alone]
    assert [encode_events(e) for e in other] == [encode_events(e) for e in batch[2:4]]


def test_statistics_match_the_published_nmnist(sample):
    events, _ = sample
    counts = np.array([e.n_events for e in events])
    # about 4,000 events per 300 ms recording on average (60 digits: standard error ~100)
    assert abs(counts.mean() - ns.TARGET_MEAN_EVENTS) < 0.12 * ns.TARGET_MEAN_EVENTS
    assert 0.1 * counts.mean() < counts.std() < 0.4 * counts.mean()
    stats = np.stack([ns.recording_statistics(e) for e in events])
    on_fraction = stats[:, 1].sum() / stats[:, 0].sum()
    assert 0.45 < on_fraction < 0.55
    saccades = stats[:, 2:5].sum(axis=0) / stats[:, 0].sum()
    assert np.all(saccades > 0.2) and np.all(stats[:, 2:5] > 0)     # every saccade of every recording
    assert 0.2 < stats[:, 5].mean() / (SENSOR * SENSOR) < 0.5
    t = np.concatenate([e.t for e in events])
    # events concentrate mid-saccade: few within 5 ms of the turning points (0, 100, 200, 300 ms)
    near_turn = np.min(np.abs(t[:, None] - np.array([0, 100_000, 200_000, 300_000])[None]), axis=1) < 5000
    assert near_turn.mean() < 0.03 and near_turn.sum() == stats[:, 6].sum()
    middle = np.abs(t % 100_000 - 50_000) < 25_000
    assert middle.mean() > 0.6                                          # half the time, most events
    for e in events:
        assert np.all(np.diff(e.t) >= 0) and e.t.min() >= 0 and e.t.max() < 300_000
        assert e.x.max() < SENSOR and e.y.max() < SENSOR
        assert set(np.unique(e.polarity)) == {0, 1}
    summary = ns.summarise(stats, sample[1])
    assert summary["recordings"] == 60 and summary["events_per_recording"]["mean"] == round(counts.mean(), 1)
    assert summary["on_fraction"] == round(on_fraction, 4)
    assert summary["fraction_within_5ms_of_turning_points"] == round(near_turn.mean(), 4)
    # thin digits give fewer events than round ones, as in the real data
    assert summary["events_per_recording_by_label"]["1"] < summary["events_per_recording_by_label"]["0"]


def test_blank_image_gives_only_noise_at_the_configured_rate():
    blank = np.zeros((20, 28, 28), np.uint8)
    rngs = [ns.recording_rng(0, "train", i) for i in range(20)]
    assert sum(e.n_events for e in ns.render_batch(blank, rngs, replace(ns.DEFAULT_PARAMS, noise_rate_hz=0.0))) == 0
    params = replace(ns.DEFAULT_PARAMS, noise_rate_hz=2.0)
    events = ns.render_batch(blank, [ns.recording_rng(0, "train", i) for i in range(20)], params)
    expected = 20 * 2.0 * SENSOR * SENSOR * 0.3                  # 13,872 events
    total = sum(e.n_events for e in events)
    assert abs(total - expected) < 4 * np.sqrt(expected)
    t = np.concatenate([e.t for e in events])
    on = np.concatenate([e.polarity for e in events])
    assert abs(on.mean() - 0.5) < 0.02
    assert np.all(np.abs(np.histogram(t, bins=3, range=(0, 300_000))[0] / total - 1 / 3) < 0.02)
    assert np.all(np.abs(np.bincount(np.concatenate([e.x for e in events]), minlength=SENSOR) / total
                         - 1 / SENSOR) < 0.015)


def test_a_pixel_crossed_by_an_edge_emits_the_threshold_count():
    """A white square: pixel (29, 17) goes from the background to white in saccade 1, stays, goes back in 3."""
    params = replace(ns.DEFAULT_PARAMS, psf_sigma_px=0.0, **QUIET)
    square = np.full((28, 28), 255, np.uint8)
    events = ns.render_recording(square, ns.recording_rng(0, "train", 0), params)
    here = (events.x == 29) & (events.y == 17)
    t, pol = events.t[here], events.polarity[here]
    levels = int(np.floor(-np.log(params.background) / params.contrast_threshold))   # 8
    first, second, third = (t < 100_000), (t >= 100_000) & (t < 200_000), t >= 200_000
    assert np.sum(first) == levels and np.all(pol[first] == 1)
    assert np.sum(second) == 0
    assert levels - 1 <= np.sum(third) <= levels and np.all(pol[third] == 0)
    assert np.all(np.diff(t[first]) > 0)          # one crossing after the other as the edge passes
    # interior pixels see constant white, far pixels constant background: no events there
    assert not np.any((events.x == 16) & (events.y == 17))


def test_refractory_period_spaces_events_of_a_pixel(mnist):
    digit = mnist.x_train[1]
    free = ns.render_recording(digit, ns.recording_rng(0, "train", 1), replace(ns.DEFAULT_PARAMS, **QUIET))
    params = replace(ns.DEFAULT_PARAMS, **dict(QUIET, refractory_ms=10.0))
    blind = ns.render_recording(digit, ns.recording_rng(0, "train", 1), params)
    assert 0 < blind.n_events < free.n_events
    pixel = blind.y.astype(np.int64) * SENSOR + blind.x
    for p in np.unique(pixel):
        gaps = np.diff(blind.t[pixel == p])
        # several events within one 0.5 ms step (a multi-threshold change), else at least 10 ms apart
        assert np.all((gaps < 500) | (gaps >= 10_000 - 1))


def test_jitter_and_mismatch_change_timing_and_counts(mnist):
    digit = mnist.x_train[2]

    def rng():
        return ns.recording_rng(0, "train", 2)

    base = ns.render_recording(digit, rng(), replace(ns.DEFAULT_PARAMS, **QUIET))
    jittered = ns.render_recording(digit, rng(), replace(ns.DEFAULT_PARAMS, **dict(QUIET, jitter_ms=0.3)))
    assert jittered.n_events == base.n_events and not np.array_equal(jittered.t, base.t)
    assert abs(np.mean(np.sort(jittered.t) - np.sort(base.t))) < 100
    mismatched = ns.render_recording(digit, rng(), replace(ns.DEFAULT_PARAMS, **dict(QUIET, threshold_mismatch=0.3)))
    assert mismatched.n_events != base.n_events


def test_events_decode_and_bin(sample, tmp_path):
    events = sample[0][0]
    path = write_bin(tmp_path / "00001.bin", events)
    back = read_bin(path)
    for a, b in zip(back, events):
        np.testing.assert_array_equal(a, b)
    raster = bin_events(back, 300)
    assert raster.shape == (300, 2 * SENSOR * SENSOR) and 0 < raster.sum() <= events.n_events
    assert raster[:, SENSOR * SENSOR:].sum() > 0 and raster[:, :SENSOR * SENSOR].sum() > 0


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        ns.render_recording(np.zeros((28, 28), np.uint8), ns.recording_rng(0, "train", 0),
                            replace(ns.DEFAULT_PARAMS, saccade_dx_px=4.0))
    with pytest.raises(ValueError):
        ns.render_batch(np.zeros((2, 28, 28), np.uint8), [ns.recording_rng(0, "train", 0)])


# ---------------------------------------------------------------------------------------------
# The written dataset
# ---------------------------------------------------------------------------------------------

def test_layout_labels_and_marker(tmp_path, mnist, monkeypatch):
    monkeypatch.setattr(ns, "TRAIN_POOL", 3)            # training numbers 1-3 -> train_all, 4-5 -> valid_all
    out = run(tmp_path / "sim", train=5, test=2, seed=4)
    assert sorted(p.name for p in (out / "train_all").iterdir()) == ["00001.bin", "00002.bin", "00003.bin",
                                                                    "labels.csv"]
    assert sorted(p.name for p in (out / "valid_all").iterdir()) == ["00004.bin", "00005.bin", "labels.csv"]
    assert sorted(p.name for p in (out / "test_all").iterdir()) == ["00001.bin", "00002.bin", "labels.csv"]
    y = mnist.y_train
    assert (out / "train_all" / "labels.csv").read_text() == (
        f"file,label\n00001.bin,{y[0]}\n00002.bin,{y[1]}\n00003.bin,{y[2]}\n")
    assert (out / "valid_all" / "labels.csv").read_text() == f"file,label\n00004.bin,{y[3]}\n00005.bin,{y[4]}\n"
    assert (out / "test_all" / "labels.csv").read_text().splitlines()[1:] == [
        f"00001.bin,{mnist.y_test[0]}", f"00002.bin,{mnist.y_test[1]}"]
    # each file is the recording of its digit with its own generator
    assert (out / "valid_all" / "00005.bin").read_bytes() == encode_events(
        ns.render_recording(mnist.x_train[4], ns.recording_rng(4, "train", 4)))
    assert (out / "test_all" / "00002.bin").read_bytes() == encode_events(
        ns.render_recording(mnist.x_test[1], ns.recording_rng(4, "test", 1)))
    marker = json.loads((out / ns.MARKER).read_text())
    assert marker["simulated"] is True and marker["generator"] == "lsm_core.nmnist_sim" and marker["version"] == 1
    assert (marker["seed"], marker["train_count"], marker["test_count"]) == (4, 5, 2)
    assert marker["params"] == ns.DEFAULT_PARAMS.as_dict()
    assert marker["statistics"]["recordings"] == 7 and marker["statistics"]["events_per_recording"]["mean"] > 1000
    assert not (out / ns.IN_PROGRESS).exists()


def test_valid_all_is_empty_with_a_header_when_no_validation_digits(tmp_path):
    out = run(tmp_path / "sim", train=2, test=0)
    assert (out / "valid_all" / "labels.csv").read_text() == "file,label\n"
    assert (out / "test_all" / "labels.csv").read_text() == "file,label\n"
    assert sorted(p.name for p in (out / "valid_all").iterdir()) == ["labels.csv"]


def test_dataset_is_deterministic_and_independent_of_chunks_and_workers(tmp_path, monkeypatch):
    reference = tree(run(tmp_path / "a", train=4, test=2, seed=1))
    assert tree(run(tmp_path / "b", train=4, test=2, seed=1)) == reference
    monkeypatch.setattr(ns, "CHUNK", 2)
    assert tree(run(tmp_path / "c", train=4, test=2, seed=1, jobs=2)) == reference    # 3 chunks, 2 processes
    other = tree(run(tmp_path / "d", train=4, test=2, seed=2))
    assert other.keys() == reference.keys()
    assert all(other[name] != reference[name] for name in reference if name.endswith(".bin"))


def test_resume_keeps_existing_files_and_completes(tmp_path):
    out = run(tmp_path / "sim", train=4, test=1, seed=3)
    complete = tree(out)
    # interrupted state: the marker not yet written, one recording and one labels.csv missing
    marker = json.loads((out / ns.MARKER).read_text())
    (out / ns.MARKER).unlink()
    identity = {key: marker[key] for key in ("simulated", "generator", "version", "seed", "train_count",
                                             "test_count", "params")}
    (out / ns.IN_PROGRESS).write_text(json.dumps(identity))
    (out / "train_all" / "00003.bin").unlink()
    (out / "train_all" / "labels.csv").unlink()
    (out / "train_all" / ".00002.bin.abc.tmp").write_bytes(b"half")
    kept = (out / "train_all" / "00001.bin").stat().st_mtime_ns
    messages = []
    ns.simulate_nmnist(out, 4, 1, seed=3, jobs=1, log=messages.append)
    assert any("Resuming" in m for m in messages)
    assert tree(out) == complete
    assert (out / "train_all" / "00001.bin").stat().st_mtime_ns == kept
    # complete: a re-run does nothing
    messages.clear()
    ns.simulate_nmnist(out, 4, 1, seed=3, jobs=1, log=messages.append)
    assert any("nothing to do" in m for m in messages) and tree(out) == complete


def test_a_damaged_or_incomplete_set_is_repaired_by_the_command_its_errors_name(tmp_path):
    out = run(tmp_path / "nmnist_simulated", train=6, test=1, seed=2)
    complete = tree(out)
    command = f"`python -m lsm_core datasets simulate-nmnist --train-count 6 --test-count 1 --seed 2 --out {out}`"
    recording = out / "train_all" / "00004.bin"
    breaks = [
        (lambda: recording.unlink(), f"{recording}, line 5"),
        (lambda: (out / "train_all" / "labels.csv").unlink(), f"{out / 'train_all'} holds 6 .bin recordings but no"),
        (lambda: shutil.rmtree(out / "test_all"), f"{out / 'test_all'} is missing"),
        (lambda: recording.write_bytes(recording.read_bytes()[:-3]), f"Delete {recording} and run"),
    ]
    for break_it, fragment in breaks:
        break_it()
        with pytest.raises(UserError) as info:
            splits, _ = load_event_splits(tmp_path, simulated=True)
            check_recordings(splits["train"])
        message = str(info.value)
        assert fragment in message and command in message, message
        if "Delete" in fragment:
            recording.unlink()
        messages = []
        ns.simulate_nmnist(out, 6, 1, seed=2, jobs=1, log=messages.append)
        assert "rewriting them" in messages[0] and tree(out) == complete
    # an interrupted run rewrites a recording it finds damaged instead of stopping on it
    (out / ns.MARKER).rename(out / ns.IN_PROGRESS)
    recording.write_bytes(b"\x00" * 20)
    run(out, train=6, test=1, seed=2)
    assert tree(out) == complete


def test_other_settings_are_refused_unless_overwrite(tmp_path):
    out = run(tmp_path / "sim", train=3, test=1, seed=3)
    before = tree(out)
    for kwargs in ({"train": 2, "test": 1, "seed": 3}, {"train": 3, "test": 1, "seed": 4}):
        with pytest.raises(UserError, match="other settings"):
            run(out, **kwargs)
    assert tree(out) == before
    run(out, train=2, test=0, seed=4, overwrite=True)
    marker = json.loads((out / ns.MARKER).read_text())
    assert (marker["seed"], marker["train_count"], marker["test_count"]) == (4, 2, 0)
    assert sorted(p.name for p in (out / "train_all").glob("*.bin")) == ["00001.bin", "00002.bin"]
    assert not list((out / "test_all").glob("*.bin"))


def test_a_folder_that_is_not_a_simulated_nmnist_is_never_touched(tmp_path):
    real = tmp_path / "nmnist"
    (real / "train_all").mkdir(parents=True)
    (real / "train_all" / "00001.bin").write_bytes(b"\x00" * 5)
    for overwrite in (False, True):
        with pytest.raises(UserError, match="not empty"):
            run(real, overwrite=overwrite)
    assert (real / "train_all" / "00001.bin").read_bytes() == b"\x00" * 5
    (real / "SIMULATED.json").write_text('{"generator": "someone else"}')      # not this generator's marker
    with pytest.raises(UserError, match="not empty"):
        run(real, overwrite=True)
    assert (real / "train_all" / "00001.bin").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        run(tmp_path / "file")


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def test_command_writes_a_subset(tmp_path):
    out = tmp_path / "sim"
    assert ns.simulate_nmnist_command(["--out", str(out), "--train-count", "2", "--test-count", "1",
                                       "--seed", "5", "--jobs", "1"]) == 0
    marker = json.loads((out / ns.MARKER).read_text())
    assert (marker["seed"], marker["train_count"], marker["test_count"]) == (5, 2, 1)
    assert read_bin(out / "test_all" / "00001.bin").n_events > 1000


@pytest.mark.parametrize("argv, message", [
    (["--train-count", "ten"], "whole number"),
    (["--train-count", "60001"], "from 0 to 60000"),
    (["--test-count", "-1"], "from 0 to 10000"),
    (["--train-count", "0", "--test-count", "0"], "Nothing to simulate"),
    (["--seed", "-3"], "seed"),
    (["--jobs", "0"], "worker processes"),
])
def test_command_rejects_bad_values(tmp_path, argv, message):
    with pytest.raises(UserError, match=message):
        ns.simulate_nmnist_command(["--out", str(tmp_path / "sim")] + argv)
    assert not (tmp_path / "sim").exists()


def test_command_usage_and_missing_mnist(tmp_path, capsys):
    assert ns.simulate_nmnist_command(["--help"]) == 0
    assert "simulate-nmnist" in capsys.readouterr().out
    assert ns.simulate_nmnist_command(["--bogus"]) == 2
    with pytest.raises(UserError, match="mnist"):
        ns.simulate_nmnist_command(["--out", str(tmp_path / "sim"), "--data-dir", str(tmp_path / "empty"),
                                    "--train-count", "1", "--test-count", "0"])
    assert not (tmp_path / "sim").exists()
