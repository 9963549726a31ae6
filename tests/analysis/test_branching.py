"""Branching factor (docs/evaluation.md#branching-factor): hand-built rasters with known answers, a naive
reference, and the CLI.  With the paper's settings (25 ms buffers, 4 ms windows, 250 ms samples) spikes at
29 <= t < 221 count, their sources are looked for in [t-4, t) and their targets in [t+1, t+5)."""
import hashlib
import json
from dataclasses import asdict

import numpy as np
import pytest

from lsm_core.__main__ import main
from lsm_core.analysis.branching import branching_factor
from lsm_core.config import RunConfig
from lsm_core.model.network import Network, network_path
from tests.damage import damage


def raster_of(n_steps, n_neurons, spikes):
    """bool [1, T, N] with spikes at the given (t, neuron) pairs."""
    r = np.zeros((1, n_steps, n_neurons), bool)
    for t, i in spikes:
        r[0, t, i] = True
    return r


def tree(levels):
    """Binary tree in heap order: (post, pre) arrays of the edges parent -> child, and each node's level."""
    n = 2 ** levels - 1
    pre = np.array([k for k in range(n) for c in (2 * k + 1, 2 * k + 2) if c < n])
    post = np.array([c for k in range(n) for c in (2 * k + 1, 2 * k + 2) if c < n])
    level = np.floor(np.log2(np.arange(n) + 1)).astype(int)
    return post, pre, level


def test_the_paper_settings_count_spikes_from_29_to_220_ms():
    result = branching_factor(np.zeros((1, 250, 2), bool), [1], [0])       # defaults: 25 ms buffers, 4 ms windows
    assert (result.margin, result.window, result.first_ms, result.stop_ms) == (25, 4, 29, 221)
    summary = result.summary()
    assert (summary["counted_from_ms"], summary["counted_before_ms"]) == (29, 221)
    assert (summary["margin_ms"], summary["window_ms"]) == (25, 4)


def test_only_spikes_at_29_to_220_ms_count_and_their_windows_reach_25_to_224():
    # 0 -> 1; neuron 0 spikes at 28, 60, 220 and 226, neuron 1 one ms after the first three
    raster = raster_of(250, 2, [(28, 0), (29, 1), (60, 0), (61, 1), (220, 0), (221, 1), (226, 0)])
    result = branching_factor(raster, [1], [0])
    # neuron 0: its spikes at 60 and 220 count (28 and 226 do not); each has its target one ms later, the
    # one after 220 at 221, inside the target window [221, 225): ratio 1 each
    # neuron 1: its spikes at 29 and 61 count (221 does not); it has no targets: ratio 0 each
    assert result.spikes[0].tolist() == [2, 2]
    np.testing.assert_allclose(result.per_neuron[0], [1.0, 0.0])
    assert result.mean == pytest.approx(0.5)
    # counting from 25 ms (the buffer alone, as before) would add neuron 0's spike at 28 and neuron 1's at 221
    wider = branching_factor(raster, [1], [0], margin=21)                   # 25 <= t < 225
    assert wider.spikes[0].tolist() == [3, 3]


def test_a_chain_that_doubles_has_branching_factor_2():
    post, pre, level = tree(4)                         # 1 -> 2 -> 4 -> 8 neurons, one level per ms
    raster = raster_of(250, 15, [(218 + lv, i) for i, lv in enumerate(level)])
    result = branching_factor(raster, post, pre)       # counts t in [29, 221): the leaves (t = 221) are out,
    assert result.mean == pytest.approx(2.0)           # but count as targets of the level above (t = 220)
    np.testing.assert_allclose(result.per_neuron[0, level < 3], 2.0)
    assert np.isnan(result.per_neuron[0, level == 3]).all()
    assert result.spread() == {"std": 0.0, "min": 2.0, "max": 2.0}
    assert int(result.spikes.sum()) == 7


def test_a_chain_that_halves_has_branching_factor_one_half():
    post, pre, level = tree(4)
    post, pre = pre, post                              # edges child -> parent: 8 -> 4 -> 2 -> 1
    times = {3: 28, 2: 29, 1: 30, 0: 31}                # the leaves at 28, before the counted spikes
    raster = raster_of(250, 15, [(times[lv], i) for i, lv in enumerate(level)])
    result = branching_factor(raster, post, pre)       # counts t in [29, 221)
    # levels 2 and 1: one target spike each over two source spikes (the leaves' at 28 are inside the source
    # window [25, 29) of level 2); the root: no target, ratio 0; the leaves do not count
    np.testing.assert_allclose(result.per_neuron[0, (level == 1) | (level == 2)], 0.5)
    assert result.per_neuron[0, level == 0].tolist() == [0.0]
    assert np.isnan(result.per_neuron[0, level == 3]).all()
    assert result.mean == pytest.approx(6 * 0.5 / 7)
    assert int(result.spikes.sum()) == 7


def test_silence_gives_no_value():
    post, pre, _ = tree(3)
    result = branching_factor(np.zeros((3, 250, 7), bool), post, pre)
    assert np.isnan(result.mean) and np.isnan(result.per_sample).all()
    assert result.summary()["samples_with_spikes"] == 0 and result.summary()["per_sample"] == [None] * 3
    assert np.isnan(result.spread()["std"])


def test_without_buffers_the_windows_still_keep_spikes_away_from_the_ends():
    raster = raster_of(20, 2, [(2, 0), (3, 1), (5, 0), (6, 1), (15, 0), (16, 1)])   # 0 -> 1
    post, pre = np.array([1]), np.array([0])
    assert np.isnan(branching_factor(raster, post, pre, margin=4, window=4).mean)   # counts t in [8, 12)
    result = branching_factor(raster, post, pre, margin=0, window=4)                # counts t in [4, 16)
    assert (result.first_ms, result.stop_ms) == (4, 16)
    assert result.spikes[0].tolist() == [2, 1]                 # 0 at 5 and 15, 1 at 6 (not 2, 3 or 16)
    np.testing.assert_allclose(result.per_neuron[0], [1.0, 0.0])       # 0: its targets follow; 1: no target
    assert result.mean == pytest.approx(0.5)


def test_the_target_window_is_half_open():
    post, pre = np.array([1]), np.array([0])
    raster = raster_of(30, 2, [(10, 0), (15, 1)])                     # the target spikes 5 ms later
    assert branching_factor(raster, post, pre, margin=0, window=4).per_neuron[0, 0] == 0.0
    assert branching_factor(raster, post, pre, margin=0, window=5).per_neuron[0, 0] == 1.0


def test_ratios_are_averaged_per_neuron_before_averaging_over_neurons():
    # 0 -> {1, 2}; neuron 0 spikes twice (ratios 2 and 0), 1 and 2 once each (no targets: ratio 0)
    raster = raster_of(40, 3, [(10, 0), (11, 1), (11, 2), (20, 0)])
    result = branching_factor(raster, np.array([1, 2]), np.array([0, 0]), margin=0, window=4)
    np.testing.assert_allclose(result.per_neuron[0], [1.0, 0.0, 0.0])
    assert result.mean == pytest.approx(1 / 3)          # a spike-weighted mean would give 0.5


def test_sources_set_the_denominator_with_a_floor_of_one():
    # 0 and 1 -> 2 -> 3: neuron 2 has two sources that spiked and one target that follows
    raster = raster_of(30, 4, [(10, 0), (10, 1), (12, 2), (13, 3)])
    result = branching_factor(raster, np.array([2, 2, 3]), np.array([0, 1, 2]), margin=0, window=4)
    np.testing.assert_allclose(result.per_neuron[0], [1.0, 1.0, 0.5, 0.0])


def naive_branching(raster, post, pre, margin, window):
    """The definition as literal loops, for comparison (the paper's tool: t from margin + window up to
    T - margin - window)."""
    n_samples, n_steps, n = raster.shape
    per_sample = []
    for b in range(n_samples):
        values = []
        for i in range(n):
            targets, sources = post[pre == i], pre[post == i]
            ratios = []
            for t in range(margin + window, n_steps - margin - window):
                if raster[b, t, i]:
                    ahead = raster[b, t + 1:t + 1 + window][:, targets].sum()
                    behind = raster[b, max(t - window, 0):t][:, sources].sum()
                    ratios.append(ahead / max(behind, 1))
            if ratios:
                values.append(np.mean(ratios))
        per_sample.append(np.mean(values) if values else np.nan)
    return np.array(per_sample)


@pytest.mark.parametrize("margin, window", [(25, 4), (3, 2), (0, 7)])
def test_matches_a_naive_loop_on_random_spikes(margin, window):
    rng = np.random.default_rng(margin + window)
    raster = rng.random((3, 80, 30)) < 0.08
    raster[2] = False                                   # one silent sample is left out of the mean
    mask = (rng.random((30, 30)) < 0.15) & ~np.eye(30, dtype=bool)
    post, pre = np.nonzero(mask)
    result = branching_factor(raster, post, pre, margin=margin, window=window)
    expected = naive_branching(raster, post, pre, margin, window)
    np.testing.assert_allclose(result.per_sample, expected)
    assert result.mean == pytest.approx(np.nanmean(expected))


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        branching_factor(np.zeros((2, 3, 4, 5), bool), [0], [1])
    with pytest.raises(ValueError):
        branching_factor(np.zeros((1, 10, 3), bool), [0, 1], [1])
    with pytest.raises(ValueError):
        branching_factor(np.zeros((1, 10, 3), bool), [3], [1])
    with pytest.raises(ValueError):
        branching_factor(np.zeros((1, 10, 3), bool), [0], [1], window=0)


# ---- the command on a synthetic run folder ---------------------------------------------------------

def make_run(tmp_path, version=4, n_samples=5, steps=100):
    """A run folder with params.json and rasters.npz of random spikes, and its liquid."""
    networks = tmp_path / "networks"
    networks.mkdir()
    net = Network.generate(dims=(3, 3, 2), n_input=5, seed=2)
    path = net.save(network_path(7, networks))
    config = RunConfig(model="LSM", dataset="mnist", gpu="cpu", version=version, net_num=7, batch_size=5,
                       batches_per_block=1, scalars={"INTIAL_ABS_W_SCLR": 1.0}, duration_ms=steps,
                       networks_dir=str(networks), output_root=str(tmp_path / "runs"))
    folder = tmp_path / "runs" / f"ver_{version}"
    folder.mkdir(parents=True)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / "params.json").write_text(json.dumps({"identity": {"network_sha256": sha, "seed": 0},
                                                    "run": {"config": asdict(config)}}))
    rng = np.random.default_rng(5)
    spikes = rng.random((n_samples, steps, net.n_neurons)) < 0.1
    np.savez(folder / "rasters.npz", valid_spikes=spikes[:3], valid_index=np.arange(3),
             test_spikes=spikes[3:], test_index=np.arange(2))
    return net, folder, spikes


def test_command_writes_json_and_histogram(tmp_path, capsys):
    net, folder, spikes = make_run(tmp_path)
    assert main(["branching", "4", "--output-root", str(tmp_path / "runs"), "--margin", "10"]) == 0
    syn = net.synapses()
    keep = (syn.pre < net.n_res) & (syn.post < net.n_res)
    expected = branching_factor(spikes[:, :, :net.n_res], syn.post[keep], syn.pre[keep], margin=10)
    record = json.loads((folder / "branching.json").read_text())
    assert record["mean"] == pytest.approx(expected.mean)
    assert record["splits"] == ["valid", "test"] and record["samples"] == 5 and record["margin_ms"] == 10
    assert (record["counted_from_ms"], record["counted_before_ms"]) == (14, 86)    # 10 + 4 <= t < 100 - 10 - 4
    assert record["std"] == pytest.approx(expected.spread()["std"])
    valid = branching_factor(spikes[:3, :, :net.n_res], syn.post[keep], syn.pre[keep], margin=10)
    test = branching_factor(spikes[3:, :, :net.n_res], syn.post[keep], syn.pre[keep], margin=10)
    assert sorted(record["by_split"]) == ["test", "valid"]            # JSON keys are written sorted
    assert record["by_split"]["valid"]["mean"] == pytest.approx(valid.mean)
    assert record["by_split"]["test"]["mean"] == pytest.approx(test.mean)
    assert (record["by_split"]["valid"]["samples"], record["by_split"]["test"]["samples"]) == (3, 2)
    assert (folder / "branching.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert f"branching factor of VERSION 4 (valid and test splits): {expected.mean:.4f}" in out
    assert f"by split: valid {valid.mean:.4f} (3 samples); test {test.mean:.4f} (2 samples)" in out
    assert "spikes counted at 14 <= t < 86 ms (buffers 10 ms, windows 4 ms)" in out

    assert main(["branching", "4", "--output-root", str(tmp_path / "runs"), "--split", "test"]) == 0
    record = json.loads((folder / "branching.json").read_text())
    assert record["samples"] == 2 and record["splits"] == ["test"] and list(record["by_split"]) == ["test"]
    out = capsys.readouterr().out
    test_default = branching_factor(spikes[3:, :, :net.n_res], syn.post[keep], syn.pre[keep])     # 29 <= t < 71
    assert record["mean"] == pytest.approx(test_default.mean)
    assert f"branching factor of VERSION 4 (test split): {test_default.mean:.4f}" in out and "by split" not in out


def test_command_errors_exit_2_with_a_message(tmp_path, capsys):
    _, folder, _ = make_run(tmp_path)
    runs = str(tmp_path / "runs")
    assert main(["branching", "99", "--output-root", runs]) == 2
    assert "there is no run VERSION 99" in capsys.readouterr().err
    assert main(["branching", "x1", "--output-root", runs]) == 2
    assert "bad VERSION 'x1'" in capsys.readouterr().err
    assert main(["branching", "4", "--output-root", runs, "--split", "train"]) == 2
    assert "no rasters of the train split" in " ".join(capsys.readouterr().err.split())
    assert main(["branching", "4", "--output-root", runs, "--margin", "46"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "margins of 46 ms and windows of 4 ms leave no time to count spikes in" in err
    assert "choose --margin 45 or less" in err
    assert main(["branching", "4", "--output-root", runs, "--margin", "45"]) == 0      # t in [49, 51)
    capsys.readouterr()
    assert main(["branching", "4", "--output-root", runs, "--margin", "0", "--window", "50"]) == 2
    assert "choose a --window below 50" in " ".join(capsys.readouterr().err.split())
    Network.generate(dims=(3, 3, 2), n_input=5, seed=3).save(network_path(7, tmp_path / "networks"))
    assert main(["branching", "4", "--output-root", runs]) == 2
    assert "is not the liquid this run was made with" in " ".join(capsys.readouterr().err.split())
    (folder / "rasters.npz").unlink()
    assert main(["branching", "4", "--output-root", runs]) == 2
    assert "rasters.npz does not exist" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("recorded", [True, False], ids=["in-manifest", "no-manifest"])
@pytest.mark.parametrize("how", ["delete", "half", "zeros", "flip"])
def test_damaged_rasters_are_a_message_naming_the_file(tmp_path, capsys, how, recorded):
    from lsm_core.runs.folder import RERUN_TO_REPAIR, RunFolder, open_run, run_config
    from lsm_core.storage import load_npz

    _, folder, _ = make_run(tmp_path)
    runs = tmp_path / "runs"
    path = folder / "rasters.npz"
    if recorded:                                           # written through the run folder, as the pipeline does
        RunFolder(run_config(open_run(4, runs)[1], runs)).save_npz("rasters.npz", **load_npz(path))
    damage(path, how)
    assert main(["branching", "4", "--output-root", str(runs)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert str(path) in err and "Traceback" not in err
    if how == "delete" and not recorded:
        assert f"{path} does not exist: the run has not finished a split's spike counts yet" in err
    else:
        assert f"{path} is damaged: " in err and RERUN_TO_REPAIR in err
        if how == "delete":
            assert "it is missing, but manifest.json records it" in err
    assert not (folder / "branching.json").exists()
