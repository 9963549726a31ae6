"""Branching factor (SPEC 3.8): hand-built rasters with known answers, a naive reference, and the CLI."""
import hashlib
import json
from dataclasses import asdict

import numpy as np
import pytest

from lsm_core.__main__ import main
from lsm_core.branching import branching_factor
from lsm_core.config import RunConfig
from lsm_core.network import Network, network_path


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


def test_a_chain_that_doubles_has_branching_factor_2():
    post, pre, level = tree(4)                         # 1 -> 2 -> 4 -> 8 neurons, one level per ms
    raster = raster_of(40, 15, [(20 + lv, i) for i, lv in enumerate(level)])
    result = branching_factor(raster, post, pre, margin=17, window=4)   # counts t in [17, 23): leaves (t=23) out
    assert result.mean == pytest.approx(2.0)
    np.testing.assert_allclose(result.per_neuron[0, level < 3], 2.0)
    assert np.isnan(result.per_neuron[0, level == 3]).all()
    assert result.spread() == {"std": 0.0, "min": 2.0, "max": 2.0}


def test_a_chain_that_halves_has_branching_factor_one_half():
    post, pre, level = tree(4)
    post, pre = pre, post                              # edges child -> parent: 8 -> 4 -> 2 -> 1
    times = {3: 16, 2: 17, 1: 18, 0: 19}                # leaves before the margin, root after it
    raster = raster_of(36, 15, [(times[lv], i) for i, lv in enumerate(level)])
    result = branching_factor(raster, post, pre, margin=17, window=4)   # counts t in [17, 19)
    assert result.mean == pytest.approx(0.5)
    np.testing.assert_allclose(result.per_neuron[0, (level == 1) | (level == 2)], 0.5)
    assert int(result.spikes.sum()) == 6


def test_silence_gives_no_value():
    post, pre, _ = tree(3)
    result = branching_factor(np.zeros((3, 250, 7), bool), post, pre)
    assert np.isnan(result.mean) and np.isnan(result.per_sample).all()
    assert result.summary()["samples_with_spikes"] == 0 and result.summary()["per_sample"] == [None] * 3
    assert np.isnan(result.spread()["std"])


def test_margins_cut_spikes_near_both_ends_and_windows_are_cut_at_the_edges():
    raster = raster_of(20, 2, [(2, 0), (3, 1), (17, 0), (18, 1)])      # 0 -> 1, each pair near one end
    post, pre = np.array([1]), np.array([0])
    assert np.isnan(branching_factor(raster, post, pre, margin=5, window=4).mean)
    result = branching_factor(raster, post, pre, margin=0, window=4)
    np.testing.assert_allclose(result.per_neuron[0], [1.0, 0.0])       # 0: its target follows; 1: no target
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
    """Literal SPEC 3.8 loops, for comparison."""
    n_samples, n_steps, n = raster.shape
    per_sample = []
    for b in range(n_samples):
        values = []
        for i in range(n):
            targets, sources = post[pre == i], pre[post == i]
            ratios = []
            for t in range(margin, n_steps - margin):
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
    assert record["std"] == pytest.approx(expected.spread()["std"])
    assert (folder / "branching.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert f"branching factor of VERSION 4: {expected.mean:.4f}" in out

    assert main(["branching", "4", "--output-root", str(tmp_path / "runs"), "--split", "test"]) == 0
    assert json.loads((folder / "branching.json").read_text())["samples"] == 2


def test_command_errors_exit_2_with_a_message(tmp_path, capsys):
    _, folder, _ = make_run(tmp_path)
    runs = str(tmp_path / "runs")
    assert main(["branching", "99", "--output-root", runs]) == 2
    assert "there is no run VERSION 99" in capsys.readouterr().err
    assert main(["branching", "x1", "--output-root", runs]) == 2
    assert "bad VERSION 'x1'" in capsys.readouterr().err
    assert main(["branching", "4", "--output-root", runs, "--split", "train"]) == 2
    assert "no rasters of the train split" in " ".join(capsys.readouterr().err.split())
    assert main(["branching", "4", "--output-root", runs, "--margin", "50"]) == 2
    assert "margins of 50 ms leave nothing" in " ".join(capsys.readouterr().err.split())
    Network.generate(dims=(3, 3, 2), n_input=5, seed=3).save(network_path(7, tmp_path / "networks"))
    assert main(["branching", "4", "--output-root", runs]) == 2
    assert "is not the liquid this run was made with" in " ".join(capsys.readouterr().err.split())
    (folder / "rasters.npz").unlink()
    assert main(["branching", "4", "--output-root", runs]) == 2
    assert "rasters.npz does not exist" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("recorded", [True, False], ids=["in-manifest", "no-manifest"])
@pytest.mark.parametrize("how", ["delete", "half", "zeros", "flip"])
def test_damaged_rasters_are_a_message_naming_the_file(tmp_path, capsys, how, recorded):
    from lsm_core.runfolder import RERUN_TO_REPAIR, RunFolder, open_run, run_config
    from lsm_core.storage import load_npz

    _, folder, _ = make_run(tmp_path)
    runs = tmp_path / "runs"
    path = folder / "rasters.npz"
    if recorded:                                           # written through the run folder, as the pipeline does
        RunFolder(run_config(open_run(4, runs)[1], runs)).save_npz("rasters.npz", **load_npz(path))
    data = path.read_bytes()
    if how == "delete":
        path.unlink()
    elif how == "half":
        path.write_bytes(data[:len(data) // 2])
    elif how == "zeros":
        path.write_bytes(bytes(len(data)))
    else:
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
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
