"""Liquid generation (docs/model.md#the-liquid), the network file format
(docs/file-formats.md#the-network-file) and the `network` command."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from lsm_core.errors import UserError
from lsm_core.model.network import (
    Network,
    Synapses,
    ensure_network,
    log_path_for,
    network_command,
    network_path,
    parse_dims,
)
from lsm_core.storage import atomic_save_npz, load_npz
from tests.damage import DAMAGES, damage


@pytest.fixture(scope="module")
def net():
    return Network.generate(dims=(10, 10, 10), n_input=784, seed=1)


@pytest.fixture(scope="module")
def small():
    return Network.generate(dims=(4, 3, 5), n_input=20, seed=3)


@pytest.fixture
def saved(small, tmp_path):
    path = tmp_path / "Network_5.npz"
    small.save(path)
    return path


# -- generation ---------------------------------------------------------------------------------

def test_counts_and_shapes(net):
    assert (net.n_exc, net.n_inh, net.n_input) == (800, 200, 784)
    assert net.n_res == 1000 and net.n_neurons == 1784 and net.dims == (10, 10, 10)
    assert net.W.shape == net.mask.shape == (1784, 1784)
    assert net.W.dtype == np.float32 and net.mask.dtype == np.bool_
    for name in ("tau_v", "v_thresh", "bias", "t_refrac", "tau_syn"):
        assert getattr(net, name).dtype == np.float32 and getattr(net, name).shape == (1784,)
    assert np.all(net.tau_v == 64) and np.all(net.v_thresh == 20) and np.all(net.bias == 0)
    assert np.all(net.t_refrac == 2) and np.all(net.tau_syn == 1)
    assert net.n_syn == int(net.mask.sum())
    assert list(np.bincount(net.neuron_class)) == [800, 200, 784]
    assert net.neuron_class.dtype == np.int8


def test_coords_are_a_permutation_of_the_grid(net):
    assert net.coords.shape == (1000, 3)
    assert net.coords.min() == 0 and net.coords.max() == 9
    assert len({tuple(c) for c in net.coords}) == 1000
    assert not np.array_equal(net.coords[:, 0], np.sort(net.coords[:, 0]))  # shuffled


def test_rounding_of_excitatory_count():
    n = Network.generate(dims=(3, 1, 3), n_input=5, seed=0)  # 0.8 * 9 = 7.2
    assert (n.n_exc, n.n_inh) == (7, 2)


def test_weights_are_signs_and_mask_matches(net):
    assert np.array_equal(net.W != 0, net.mask)
    assert set(np.unique(net.W[net.mask])) == {-1.0, 1.0}
    r, e = net.n_res, net.n_exc
    assert np.all(net.W[:, :e][net.mask[:, :e]] == 1)
    assert np.all(net.W[:, e:r][net.mask[:, e:r]] == -1)


def test_no_self_connections_and_nothing_into_inputs(net):
    assert not net.mask.diagonal().any()
    assert not net.mask[net.n_res:].any()


def test_input_synapses_exact_count_and_balanced_signs(net):
    block = net.W[:net.n_res, net.n_res:]
    k = int(0.15 * 1000 * 784)
    assert k == 117600
    assert np.count_nonzero(block) == k
    plus = np.count_nonzero(block > 0)
    assert abs(plus - k / 2) < 4 * np.sqrt(k / 4)
    # drawn uniformly: every input neuron projects to about 150 reservoir neurons
    out_degree = np.count_nonzero(block, axis=0)
    assert abs(out_degree.mean() - 150) < 1e-9 and out_degree.min() > 100


def test_input_count_is_exact_for_other_sizes():
    n = Network.generate(dims=(3, 3, 3), n_input=2312, seed=2)
    assert np.count_nonzero(n.mask[:, n.n_res:]) == (15 * 27 * 2312) // 100


@pytest.mark.parametrize("post_cls,pre_cls,c", [(0, 0, 0.2), (1, 0, 0.1), (0, 1, 0.3), (1, 1, 0.05)])
def test_connection_probability_follows_distance(net, post_cls, pre_cls, c):
    cls = net.neuron_class[:net.n_res]
    post = np.flatnonzero(cls == post_cls)
    pre = np.flatnonzero(cls == pre_cls)
    d2 = ((net.coords[post, None, :] - net.coords[None, pre, :]) ** 2).sum(-1)
    conn = net.mask[np.ix_(post, pre)]
    valid = post[:, None] != pre[None, :]
    d2, conn = d2[valid], conn[valid]
    total_expected = tail_expected = tail_observed = 0.0
    checked = 0
    for value in np.unique(d2):  # bins of equal distance
        sel = d2 == value
        n = int(sel.sum())
        p = c * np.exp(-value / 9.0)
        total_expected += n * p
        if n * p < 5:  # too few expected synapses for a normal approximation: pooled below
            tail_expected += n * p
            tail_observed += int(conn[sel].sum())
            continue
        observed = int(conn[sel].sum())  # binomial(n, p); the + 3 allows for its skewed tail
        assert abs(observed - n * p) < 4.5 * np.sqrt(n * p * (1 - p)) + 3, (value, n, observed, n * p)
        checked += 1
    assert checked >= 3
    assert abs(tail_observed - tail_expected) < 4.5 * np.sqrt(tail_expected) + 2
    # the class total too
    assert abs(conn.sum() - total_expected) < 4 * np.sqrt(total_expected)


def test_same_seed_same_network_different_seed_different(net):
    again = Network.generate(dims=(10, 10, 10), n_input=784, seed=1)
    assert again.identical(net)
    other = Network.generate(dims=(10, 10, 10), n_input=784, seed=2)
    assert not other.identical(net)
    assert not np.array_equal(other.mask, net.mask)


def test_meta(net):
    m = net.meta
    assert m["dims"] == [10, 10, 10] and m["n_input"] == 784 and m["seed"] == 1
    assert m["lambda"] == 3.0 and m["C"] == {"E<-E": 0.2, "I<-E": 0.1, "E<-I": 0.3, "I<-I": 0.05}
    assert m["exc_fraction"] == 0.8 and m["input_fraction"] == 0.15
    assert m["generator"].startswith("lsm_core.network") and "numpy_version" in m


def test_bad_generation_arguments():
    for kwargs in ({"dims": (10, 0, 10)}, {"dims": "ten"}, {"n_input": -1}, {"seed": -3},
                   {"seed": 1.5}):
        with pytest.raises(UserError):
            Network.generate(**{"dims": (2, 2, 2), "n_input": 4, "seed": 0, **kwargs})


def test_arrays_are_read_only(net):
    with pytest.raises(ValueError):
        net.W[0, 0] = 5.0


# -- synapse index arrays -------------------------------------------------------------------------

def test_synapses(small):
    syn = small.synapses()
    assert isinstance(syn, Synapses) and len(syn) == small.n_syn
    assert syn.post.dtype == np.int32 and syn.pre.dtype == np.int32
    assert syn.sign.dtype == np.float32 and syn.pre_class.dtype == np.int8
    post, pre = np.nonzero(small.mask)
    assert np.array_equal(syn.post, post) and np.array_equal(syn.pre, pre)
    assert np.array_equal(syn.sign, small.W[post, pre])
    assert np.array_equal(syn.pre_class, small.neuron_class[pre])
    order = syn.post.astype(np.int64) * small.n_neurons + syn.pre
    assert np.all(np.diff(order) > 0)


# -- files ----------------------------------------------------------------------------------------

def test_round_trip_is_exact(net, tmp_path):
    path = net.save(tmp_path / "Network_7.npz")
    back = Network.load(path)
    for name in ("W", "mask", "tau_v", "v_thresh", "bias", "t_refrac", "tau_syn", "coords"):
        a, b = getattr(net, name), getattr(back, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert (back.n_exc, back.n_inh, back.n_input) == (net.n_exc, net.n_inh, net.n_input)
    assert back.meta == net.meta
    assert back.identical(net)
    raw = load_npz(path)  # no pickles needed, meta is a JSON string
    assert raw["meta"].shape == () and json.loads(str(raw["meta"])) == net.meta


def test_log_file(net, tmp_path):
    net.save(tmp_path / "Network_7.npz")
    log = tmp_path / "Network_7_log.txt"
    assert log.exists() and log_path_for(tmp_path / "Network_7.npz") == log
    text = log.read_text()
    assert "10x10x10" in text and "seed: 1" in text
    for row in net.connection_stats():
        assert row["class"] in text and str(row["count"]) in text
    assert str(net.n_syn) in text
    other = net.save(tmp_path / "liquid.npz")
    assert (tmp_path / "liquid_log.txt").exists() and other.exists()


def _with(array, index, value):
    array = array.copy()
    array[index] = value
    return array


def _rewrite(path, **changes):
    arrays = load_npz(path)
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(path, **arrays)


def _expect_user_error(path, *fragments):
    with pytest.raises(UserError) as info:
        Network.load(path)
    message = str(info.value)
    assert str(path) in message and "--overwrite" in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_load_missing_file(tmp_path):
    with pytest.raises(UserError) as info:
        Network.load(tmp_path / "Network_3.npz")
    assert "Network_3.npz" in str(info.value) and "python -m lsm_core network" in str(info.value)


def test_load_garbage_and_truncated_files(saved, tmp_path):
    garbage = tmp_path / "Network_8.npz"
    garbage.write_bytes(b"this is not a zip file at all" * 10)
    _expect_user_error(garbage, "cannot be read")
    truncated = tmp_path / "Network_9.npz"
    data = saved.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    _expect_user_error(truncated)
    empty = tmp_path / "Network_10.npz"
    empty.write_bytes(b"")
    _expect_user_error(empty)


def test_load_corrupt_member(saved):
    with zipfile.ZipFile(saved) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members["W.npy"] = members["W.npy"][:40]
    with zipfile.ZipFile(saved, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    _expect_user_error(saved)


def test_load_pickled_contents(saved):
    _rewrite(saved, meta=np.array([{"a": 1}], dtype=object))
    _expect_user_error(saved)


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_network_file_names_the_file_and_the_fix(small, tmp_path, how, compressed):
    path = tmp_path / "Network_4.npz"
    atomic_save_npz(path, compressed=compressed, **small.to_arrays())
    assert Network.load(path).identical(small)
    damage(path, how)
    with pytest.raises(UserError) as info:
        Network.load(path)
    message = str(info.value)
    assert str(path) in message and f"python -m lsm_core network --dataset mnist --net-num 4 --networks-dir " \
        f"{tmp_path}" in message, message
    if how == "delete":
        return
    assert "--overwrite" in message and "is not usable" in message
    with pytest.raises(UserError, match="is not usable"):        # a run loads it: never regenerated over it
        ensure_network(4, small.n_input, networks_dir=tmp_path)
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        network_command(["--dataset", "mnist", "--net-num", "4", "--dims", "3x3x3", "--networks-dir", str(tmp_path)])
    assert network_command(["--dataset", "mnist", "--net-num", "4", "--dims", "3x3x3", "--networks-dir",
                            str(tmp_path), "--overwrite"]) == 0
    assert Network.load(path).dims == (3, 3, 3)


@pytest.mark.parametrize("compressed", [True, False])
def test_np_load_checks_the_crc_of_a_member_read_to_its_end(tmp_path, compressed):
    path = tmp_path / "a.npz"
    atomic_save_npz(path, compressed=compressed, a=np.random.default_rng(0).random(20000, dtype=np.float32))
    damage(path, "flip")
    with pytest.raises(Exception, match="Bad CRC-32|decompressing"):
        with np.load(path) as data:
            data["a"]


def test_a_header_promising_fewer_bytes_cannot_skip_the_crc_check(tmp_path):
    """np.load stops reading a member at the last byte its .npy header promises, and zipfile checks the
    CRC-32 only at the member's end: a damaged header (coords int32 -> int16, one byte) would give other
    coordinates that pass every check.  Network.load reads every member to its end."""
    net = Network.generate(dims=(8, 8, 8), n_input=0, seed=1)
    path = tmp_path / "Network_5.npz"
    atomic_save_npz(path, compressed=False, **net.to_arrays())
    data = path.read_bytes()
    assert data.count(b"'descr': '<i4'") == 1
    path.write_bytes(data.replace(b"'descr': '<i4'", b"'descr': '<i2'"))
    with np.load(path) as raw:
        assert raw["coords"].dtype == np.int16 and raw["coords"].max() < 8      # no error from numpy
    message = _expect_user_error(path, "Bad CRC-32 for file 'coords.npy'")
    assert "python -m lsm_core network" in message


@pytest.mark.parametrize("change,fragment", [
    (lambda a: {"mask": None}, "missing"),
    (lambda a: {"W": a["W"][:-1]}, "shape"),
    (lambda a: {"tau_v": a["tau_v"][:-1]}, "tau_v"),
    (lambda a: {"coords": a["coords"][:, :2]}, "coords"),
    (lambda a: {"n_input": np.array(a["n_input"] + 1)}, "shape"),
    (lambda a: {"n_exc": np.array(2.5)}, "n_exc"),
    (lambda a: {"mask": a["mask"].astype(np.int8)}, "dtype"),
    (lambda a: {"W": a["W"].astype(np.int32)}, "dtype"),
    (lambda a: {"mask": np.zeros_like(a["mask"])}, "mask does not match W"),
    (lambda a: {"W": _with(a["W"], (0, 0), 1.0), "mask": _with(a["mask"], (0, 0), True)},
     "themselves"),
    (lambda a: {"v_thresh": np.full_like(a["v_thresh"], np.nan)}, "non-finite"),
    (lambda a: {"meta": np.array("{not json")}, "JSON"),
    (lambda a: {"meta": np.array(json.dumps({"dims": [9, 9, 9]}))}, "dims"),
])
def test_load_bad_contents(saved, change, fragment):
    _rewrite(saved, **change(load_npz(saved)))
    _expect_user_error(saved, fragment)


def test_load_rejects_synapses_into_inputs_and_wrong_signs(saved, small):
    arrays = load_npz(saved)
    W, mask = arrays["W"].copy(), arrays["mask"].copy()
    W[small.n_res, 0], mask[small.n_res, 0] = 1.0, True
    _rewrite(saved, W=W, mask=mask)
    _expect_user_error(saved, "input neurons")
    small.save(saved)
    W = load_npz(saved)["W"].copy()
    W[W == 1] = -1  # excitatory synapses made inhibitory
    _rewrite(saved, W=W)
    _expect_user_error(saved, "excitatory")


def test_load_accepts_float64_arrays(saved, small):
    arrays = load_npz(saved)
    _rewrite(saved, W=arrays["W"].astype(np.float64), tau_v=arrays["tau_v"].astype(np.float64))
    back = Network.load(saved)
    assert back.W.dtype == np.float32 and back.identical(small)


# -- helpers, ensure_network and the command ------------------------------------------------------

def test_network_path(tmp_path):
    assert network_path(7, tmp_path) == tmp_path / "Network_7.npz"
    default = network_path(3)
    assert default.name == "Network_3.npz" and default.parent.name == "networks"
    assert (default.parent.parent / "lsm_core").is_dir()


@pytest.mark.parametrize("text,dims", [("10x10x10", (10, 10, 10)), ("20,20,20", (20, 20, 20)),
                                       (" 4 x 5 x 6 ", (4, 5, 6)), ("3X2X1", (3, 2, 1)),
                                       ((2, 3, 4), (2, 3, 4))])
def test_parse_dims_good(text, dims):
    assert parse_dims(text) == dims


@pytest.mark.parametrize("text", ["", "10x10", "10x10x10x10", "0x10x10", "-1x2x3", "axbxc",
                                  "1.5x2x2", "10;10;10", (1, 2)])
def test_parse_dims_bad(text):
    with pytest.raises(UserError) as info:
        parse_dims(text)
    assert "10x10x10" in str(info.value)


def test_ensure_network_generates_once_then_loads(tmp_path):
    lines = []
    net, generated = ensure_network(4, 20, dims=(3, 3, 3), networks_dir=tmp_path, log=lines.append)
    assert generated and (tmp_path / "Network_4.npz").exists()
    assert (tmp_path / "Network_4_log.txt").exists()
    assert len(lines) == 1 and "generated" in lines[0]
    assert net.meta["seed"] == 4 and net.dims == (3, 3, 3) and net.n_input == 20
    again, generated = ensure_network(4, 20, networks_dir=tmp_path, log=lines.append)
    assert not generated and again.identical(net) and len(lines) == 1
    # dims only size newly generated networks: a different request is noted, not applied
    again, generated = ensure_network(4, 20, dims="5x5x5", networks_dir=tmp_path, log=lines.append)
    assert not generated and again.dims == (3, 3, 3) and len(lines) == 2


def test_ensure_network_default_dims(tmp_path):
    net, generated = ensure_network(2, 10, networks_dir=tmp_path, log=lambda s: None)
    assert generated and net.dims == (10, 10, 10)


def test_ensure_network_input_mismatch(tmp_path):
    ensure_network(1, 784, dims=(2, 2, 2), networks_dir=tmp_path, log=lambda s: None)
    with pytest.raises(UserError) as info:
        ensure_network(1, 2312, networks_dir=tmp_path, log=lambda s: None)
    message = str(info.value)
    assert "784" in message and "2312" in message and "nmnist" in message


def test_network_command(tmp_path, capsys):
    argv = ["--dataset", "nmnist", "--net-num", "6", "--dims", "3x3x3", "--networks-dir", str(tmp_path)]
    assert network_command(argv) == 0
    out = capsys.readouterr().out
    assert "3x3x3" in out and "generated in" in out
    net = Network.load(tmp_path / "Network_6.npz")
    assert net.n_input == 2312 and net.meta["seed"] == 6 and net.dims == (3, 3, 3)
    assert (tmp_path / "Network_6_log.txt").exists()
    with pytest.raises(UserError) as info:
        network_command(argv)
    assert "--overwrite" in str(info.value)
    assert network_command(argv + ["--overwrite", "--seed", "11"]) == 0
    assert Network.load(tmp_path / "Network_6.npz").meta["seed"] == 11


def test_network_command_bad_arguments(tmp_path):
    with pytest.raises(UserError):
        network_command(["--dataset", "mnist", "--net-num", "1", "--dims", "10x10",
                         "--networks-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        network_command(["--dataset", "cifar", "--net-num", "1"])
    assert not any(tmp_path.iterdir())


def test_describe(net):
    text = net.describe()
    assert "\n" not in text and "800 excitatory" in text and "117600 input synapses" in text
