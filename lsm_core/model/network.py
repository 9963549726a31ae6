"""Liquid networks: generation (docs/model.md#the-liquid), the npz file format
(docs/file-formats.md#the-network-file) and the `network` sub-command.

A `Network` holds dense NumPy arrays: `W` float32 `[N, N]` signed weights (rows postsynaptic, columns
presynaptic, zero where there is no synapse), `mask` bool `[N, N]`, per-neuron float32 constants, grid
coordinates of the reservoir neurons and the neuron counts.  Neuron order: excitatory reservoir neurons,
inhibitory reservoir neurons, input neurons.  Stored weights are signs: +1 (excitatory presynaptic
neuron), -1 (inhibitory), +1 or -1 at random (input); the run replaces every magnitude by a scalar.

    net = Network.generate(dims=(10, 10, 10), n_input=784, seed=1)
    net.save(network_path(1))                 # networks/Network_1.npz + networks/Network_1_log.txt
    net = Network.load(network_path(1))
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from lsm_core.config import DATASETS, PAPER
from lsm_core.errors import UserError
from lsm_core.storage import as_json, atomic_save_npz, atomic_write_text, load_npz

GENERATOR = "lsm_core.network v1"

EXC, INH, INPUT = 0, 1, 2
"""Neuron classes, as stored in `Network.neuron_class` and `Synapses.pre_class`."""

NEURON_ARRAYS = ("tau_v", "v_thresh", "bias", "t_refrac", "tau_syn")
COUNT_KEYS = ("n_exc", "n_inh", "n_input")
REQUIRED_KEYS = ("W", "mask") + NEURON_ARRAYS + ("coords",) + COUNT_KEYS + ("meta",)

_ROW_CHUNK = 1000  # postsynaptic rows of the reservoir block built at once (bounds peak memory)


def default_networks_dir() -> Path:
    """The liquids' folder when none is given: $LSM_CORE_NETWORKS_DIR, else ./networks (places.py)."""
    from lsm_core.places import networks_dir
    return networks_dir()


def network_path(net_num: int, networks_dir=None) -> Path:
    """`<networks_dir>/Network_<net_num>.npz` (default folder: places.networks_dir(), ./networks)."""
    folder = Path(networks_dir) if networks_dir is not None else default_networks_dir()
    return folder / f"Network_{int(net_num)}.npz"


def log_path_for(path) -> Path:
    """The human-readable log beside a network file: `.../Network_7.npz` -> `.../Network_7_log.txt`."""
    path = Path(path)
    return path.with_name(f"{path.stem}_log.txt")


def parse_dims(text) -> tuple:
    """Parse a liquid size such as "10x10x10" or "10,10,10" (a 3-sequence of ints is passed through)."""
    if isinstance(text, (tuple, list)):
        parts = list(text)
    else:
        parts = [p.strip() for p in re.split(r"[xX×,]", str(text).strip())]
    dims = []
    for part in parts:
        try:
            value = int(part)
            if isinstance(part, float) and value != part:
                raise ValueError
        except (TypeError, ValueError):
            dims = None
            break
        dims.append(value)
    if dims is None or len(dims) != 3 or any(d < 1 for d in dims):
        raise UserError(f"bad liquid size {text!r}: give three positive integers such as 10x10x10 "
                        f"(or 10,10,10); the paper uses 10x10x10 (1000 neurons) and 20x20x20 (8000).")
    return tuple(dims)


def format_dims(dims) -> str:
    return "x".join(str(int(d)) for d in dims)


# ----------------------------------------------------------------------------------------------
# Data classes
# ----------------------------------------------------------------------------------------------

def _readonly(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class Synapses:
    """Synapse index arrays in `np.nonzero(mask)` order, i.e. sorted by (post, pre)."""

    post: np.ndarray       # int32 [n_syn]
    pre: np.ndarray        # int32 [n_syn]
    sign: np.ndarray       # float32 [n_syn], W at (post, pre)
    pre_class: np.ndarray  # int8 [n_syn]: 0 excitatory, 1 inhibitory, 2 input

    def __len__(self) -> int:
        return int(self.post.shape[0])


@dataclass(frozen=True, eq=False)
class Network:
    """One liquid (docs/file-formats.md#the-network-file).  Arrays are read-only views; build a new
    Network to change one."""

    W: np.ndarray
    mask: np.ndarray
    tau_v: np.ndarray
    v_thresh: np.ndarray
    bias: np.ndarray
    t_refrac: np.ndarray
    tau_syn: np.ndarray
    coords: np.ndarray
    n_exc: int
    n_inh: int
    n_input: int
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        set_ = object.__setattr__
        for name in COUNT_KEYS:
            set_(self, name, int(getattr(self, name)))
        n = self.n_exc + self.n_inh + self.n_input
        set_(self, "W", _readonly(np.asarray(self.W, dtype=np.float32)))
        set_(self, "mask", _readonly(np.asarray(self.mask, dtype=bool)))
        for name in NEURON_ARRAYS:
            set_(self, name, _readonly(np.asarray(getattr(self, name), dtype=np.float32)))
        set_(self, "coords", _readonly(np.asarray(self.coords, dtype=np.int32)))
        # normalise meta to what a JSON round trip gives, so that save/load is exact
        set_(self, "meta", as_json(dict(self.meta)))
        if self.W.shape != (n, n) or self.mask.shape != (n, n):
            raise ValueError(f"W {self.W.shape} and mask {self.mask.shape} must both be [N, N] with "
                             f"N = n_exc + n_inh + n_input = {n}")
        for name in NEURON_ARRAYS:
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected ({n},)")
        if self.coords.shape != (self.n_res, 3):
            raise ValueError(f"coords has shape {self.coords.shape}, expected ({self.n_res}, 3)")
        set_(self, "_cache", {})

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def n_res(self) -> int:
        return self.n_exc + self.n_inh

    @property
    def n_neurons(self) -> int:
        return self.n_exc + self.n_inh + self.n_input

    @property
    def n_syn(self) -> int:
        if "n_syn" not in self._cache:
            self._cache["n_syn"] = int(np.count_nonzero(self.mask))
        return self._cache["n_syn"]

    @property
    def dims(self) -> tuple:
        if "dims" in self.meta:
            return tuple(int(d) for d in self.meta["dims"])
        if self.n_res == 0:
            return (0, 0, 0)
        return tuple(int(d) + 1 for d in self.coords.max(axis=0))

    @property
    def seed(self):
        return self.meta.get("seed")

    @property
    def neuron_class(self) -> np.ndarray:
        """int8 [N]: 0 excitatory, 1 inhibitory, 2 input."""
        if "neuron_class" not in self._cache:
            cls = np.repeat(np.array([EXC, INH, INPUT], dtype=np.int8),
                            [self.n_exc, self.n_inh, self.n_input])
            self._cache["neuron_class"] = _readonly(cls)
        return self._cache["neuron_class"]

    def synapses(self) -> Synapses:
        """Index arrays of all synapses in (post, pre) row-major order (cached)."""
        if "synapses" not in self._cache:
            post, pre = np.nonzero(self.mask)
            syn = Synapses(post=_readonly(post.astype(np.int32)), pre=_readonly(pre.astype(np.int32)),
                           sign=_readonly(self.W[post, pre].astype(np.float32)),
                           pre_class=_readonly(self.neuron_class[pre]))
            self._cache["synapses"] = syn
        return self._cache["synapses"]

    # -- generation ----------------------------------------------------------------------------
    @classmethod
    def generate(cls, dims=(10, 10, 10), n_input: int = 784, seed: int = 1) -> "Network":
        """A random liquid as in docs/model.md#the-liquid, fully determined by (dims, n_input, seed)."""
        gen = PAPER.generation
        dims = parse_dims(dims)
        if isinstance(n_input, bool) or not isinstance(n_input, (int, np.integer)) or n_input < 0:
            raise UserError(f"bad number of input neurons {n_input!r}: give a non-negative integer "
                            f"(784 for MNIST and Fashion-MNIST, 2312 for N-MNIST).")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise UserError(f"bad network seed {seed!r}: give a non-negative integer.")
        n_input, seed = int(n_input), int(seed)
        n_res = int(np.prod(dims))
        n_exc = int(round(gen.exc_fraction * n_res))
        n_inh = n_res - n_exc
        n = n_res + n_input
        _check_memory(n, dims, n_input)
        rng = np.random.default_rng(seed)

        # grid positions: a random permutation of all grid points
        grid = np.stack(np.meshgrid(*[np.arange(d) for d in dims], indexing="ij"), axis=-1)
        coords = grid.reshape(-1, 3)[rng.permutation(n_res)].astype(np.int32)

        # C[post type, pre type] and the distance factor exp(-(D/lambda)^2) by squared distance
        c = np.array([[gen.c_ee, gen.c_ei], [gen.c_ie, gen.c_ii]], dtype=np.float32)
        max_d2 = sum((d - 1) ** 2 for d in dims)
        dist_factor = np.exp(-np.arange(max_d2 + 1, dtype=np.float64) / gen.lam ** 2).astype(np.float32)
        sign_pre = np.where(np.arange(n_res) < n_exc, 1.0, -1.0).astype(np.float32)

        mask = np.zeros((n, n), dtype=bool)
        W = np.zeros((n, n), dtype=np.float32)
        c16 = coords.astype(np.int16)
        for start in range(0, n_res, _ROW_CHUNK):
            stop = min(start + _ROW_CHUNK, n_res)
            d2 = np.zeros((stop - start, n_res), dtype=np.int16)
            for axis in range(3):
                diff = c16[start:stop, axis, None] - c16[None, :, axis]
                d2 += diff * diff
            prob = dist_factor[d2]
            del d2
            post_type = (np.arange(start, stop) >= n_exc).astype(np.intp)
            prob[:, :n_exc] *= c[post_type, 0][:, None]
            prob[:, n_exc:] *= c[post_type, 1][:, None]
            block = rng.random(prob.shape, dtype=np.float32) < prob
            del prob
            rows = np.arange(stop - start)
            block[rows, rows + start] = False  # no self connections
            mask[start:stop, :n_res] = block
            W[start:stop, :n_res] = np.where(block, sign_pre, np.float32(0.0))
            del block

        # input synapses: exactly int(0.15 * N_res * n_input) distinct (reservoir post, input pre) pairs
        n_in_syn = int(Fraction(repr(gen.input_fraction)) * n_res * n_input)
        flat = rng.choice(n_res * n_input, size=n_in_syn, replace=False) if n_in_syn else \
            np.zeros(0, dtype=np.int64)
        post, pre = np.divmod(flat, n_input) if n_input else (flat, flat)
        signs = np.where(rng.random(n_in_syn) < 0.5, 1.0, -1.0).astype(np.float32)
        mask[post, n_res + pre] = True
        W[post, n_res + pre] = signs

        neuron = PAPER.neuron
        meta = {
            "dims": list(dims), "n_input": n_input, "seed": seed, "lambda": float(gen.lam),
            "C": {"E<-E": gen.c_ee, "I<-E": gen.c_ie, "E<-I": gen.c_ei, "I<-I": gen.c_ii},
            "exc_fraction": gen.exc_fraction, "input_fraction": gen.input_fraction,
            "generator": GENERATOR, "numpy_version": np.__version__,
        }
        return cls(W=W, mask=mask,
                   tau_v=np.full(n, neuron.tau_v, np.float32),
                   v_thresh=np.full(n, neuron.v_thresh, np.float32),
                   bias=np.full(n, neuron.bias, np.float32),
                   t_refrac=np.full(n, neuron.t_refrac, np.float32),
                   tau_syn=np.full(n, neuron.tau_syn, np.float32),
                   coords=coords, n_exc=n_exc, n_inh=n_inh, n_input=n_input, meta=meta)

    # -- statistics ----------------------------------------------------------------------------
    def connection_stats(self) -> list:
        """Per connection class: name, synapse count, possible pairs, density, mean out/in degree."""
        if "stats" in self._cache:
            return self._cache["stats"]
        e, r, n = self.n_exc, self.n_res, self.n_neurons
        res_in = slice(0, r), slice(r, n)
        in_block = self.W[res_in]
        n_plus = int(np.count_nonzero(in_block > 0))
        n_minus = int(np.count_nonzero(in_block < 0))
        rows = [
            # name, count, possible pairs, number of presynaptic neurons, number of postsynaptic ones
            ("E<-E", int(np.count_nonzero(self.mask[:e, :e])), e * (e - 1), e, e),
            ("I<-E", int(np.count_nonzero(self.mask[e:r, :e])), self.n_inh * e, e, self.n_inh),
            ("E<-I", int(np.count_nonzero(self.mask[:e, e:r])), e * self.n_inh, self.n_inh, e),
            ("I<-I", int(np.count_nonzero(self.mask[e:r, e:r])), self.n_inh * (self.n_inh - 1),
             self.n_inh, self.n_inh),
            ("reservoir<-input(+)", n_plus, r * self.n_input, self.n_input, r),
            ("reservoir<-input(-)", n_minus, r * self.n_input, self.n_input, r),
        ]
        stats = [{"class": name, "count": count, "possible": possible,
                  "density": count / possible if possible else 0.0,
                  "mean_out_degree": count / n_pre if n_pre else 0.0,
                  "mean_in_degree": count / n_post if n_post else 0.0}
                 for name, count, possible, n_pre, n_post in rows]
        self._cache["stats"] = stats
        return stats

    def describe(self) -> str:
        """A one-paragraph summary for run logs and the `network` command."""
        s = {row["class"]: row for row in self.connection_stats()}
        n_res_syn = sum(s[k]["count"] for k in ("E<-E", "I<-E", "E<-I", "I<-I"))
        n_in_syn = s["reservoir<-input(+)"]["count"] + s["reservoir<-input(-)"]["count"]
        res_pairs = self.n_res * (self.n_res - 1)
        seed = self.meta.get("seed", "unknown")
        return (f"Liquid {format_dims(self.dims)} (seed {seed}): {self.n_res} reservoir neurons "
                f"({self.n_exc} excitatory, {self.n_inh} inhibitory) and {self.n_input} input neurons, "
                f"{self.n_neurons} in all; {n_res_syn} reservoir synapses (E<-E {s['E<-E']['count']}, "
                f"I<-E {s['I<-E']['count']}, E<-I {s['E<-I']['count']}, I<-I {s['I<-I']['count']}; "
                f"density {n_res_syn / res_pairs if res_pairs else 0.0:.4f}, mean in-degree "
                f"{n_res_syn / self.n_res if self.n_res else 0.0:.1f}) and {n_in_syn} input synapses "
                f"({s['reservoir<-input(+)']['count']} +1, {s['reservoir<-input(-)']['count']} -1; "
                f"mean {n_in_syn / self.n_res if self.n_res else 0.0:.1f} per reservoir neuron); "
                f"{self.n_syn} synapses in total.")

    def log_text(self, name: str = "Network") -> str:
        m = self.meta
        lines = [
            f"{name}: liquid state machine network ({m.get('generator', 'unknown generator')}, "
            f"numpy {m.get('numpy_version', '?')})",
            f"dims: {format_dims(self.dims)}",
            f"seed: {m.get('seed', 'unknown')}",
            f"neurons: {self.n_neurons} total = {self.n_exc} excitatory + {self.n_inh} inhibitory "
            f"reservoir + {self.n_input} input",
        ]
        if "C" in m:
            lines.append(f"connection probability C*exp(-(D/lambda)^2), lambda = {m.get('lambda')}, "
                         + ", ".join(f"C({k}) = {v}" for k, v in m["C"].items()))
        lines += ["", f"{'class':<22}{'synapses':>10}{'possible':>12}{'density':>10}"
                  f"{'mean out-deg':>14}{'mean in-deg':>13}"]
        for row in self.connection_stats():
            lines.append(f"{row['class']:<22}{row['count']:>10d}{row['possible']:>12d}"
                         f"{row['density']:>10.5f}{row['mean_out_degree']:>14.2f}"
                         f"{row['mean_in_degree']:>13.2f}")
        lines += [f"{'total':<22}{self.n_syn:>10d}", "", self.describe(), ""]
        return "\n".join(lines)

    # -- files ---------------------------------------------------------------------------------
    def to_arrays(self) -> dict:
        arrays = {"W": self.W, "mask": self.mask}
        arrays.update({name: getattr(self, name) for name in NEURON_ARRAYS})
        arrays["coords"] = self.coords
        arrays.update({name: np.array(getattr(self, name), dtype=np.int64) for name in COUNT_KEYS})
        arrays["meta"] = np.array(json.dumps(self.meta, sort_keys=True))
        return arrays

    def save(self, path) -> Path:
        """Write the npz file (atomically) and `<stem>_log.txt` beside it; returns the npz path."""
        path = Path(path)
        try:
            atomic_save_npz(path, compressed=True, **self.to_arrays())
            atomic_write_text(log_path_for(path), self.log_text(path.stem))
        except OSError as exc:
            raise UserError(f"cannot write the network file {path}: {exc}. Check that the folder "
                            f"exists or can be created, is writable and the disk is not full.") from exc
        return path

    @classmethod
    def load(cls, path) -> "Network":
        """Load and validate a network file; any problem raises UserError naming the file and the fix."""
        path = Path(path)
        if not path.exists():
            raise UserError(f"no network file at {path}. {_regenerate_hint(path, missing=True)}")
        try:
            arrays = load_npz(path)
        except Exception as exc:  # corrupt zip, truncated file, bad CRC-32, pickled data, unreadable...
            raise _bad_file(path, f"it cannot be read as a NumPy npz file ({type(exc).__name__}: "
                                  f"{exc})") from None
        problem, fields = _check_arrays(arrays)
        if problem:
            raise _bad_file(path, problem)
        try:
            return cls(**fields)
        except (ValueError, TypeError) as exc:  # pragma: no cover - _check_arrays covers these
            raise _bad_file(path, str(exc)) from None

    def identical(self, other: "Network") -> bool:
        """True if both networks hold exactly the same arrays, counts and meta."""
        if not isinstance(other, Network):
            return False
        a, b = self.to_arrays(), other.to_arrays()
        return all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------

def _net_num_of(path: Path) -> Optional[str]:
    match = re.fullmatch(r"Network_(\d+)\.npz", path.name)
    return match.group(1) if match else None


def _regenerate_hint(path: Path, missing: bool = False) -> str:
    num = _net_num_of(path) or "N"
    cmd = f"python -m lsm_core network --dataset mnist --net-num {num}"
    if path.parent.resolve() != default_networks_dir():
        cmd += f" --networks-dir {path.parent}"
    if missing:
        return (f"Generate it with `{cmd}` (use --dataset nmnist for N-MNIST, --dims for the size), "
                f"or run a script with NET_NUM_VAR {num}, which generates a default 10x10x10 liquid.")
    return (f"Fix: delete {path} (a script given NET_NUM_VAR {num} then generates a fresh default liquid) "
            f"or regenerate it with `{cmd} --overwrite` (use --dataset nmnist for N-MNIST).")


def _bad_file(path: Path, problem: str) -> UserError:
    return UserError(f"the network file {path} is not usable: {problem}. {_regenerate_hint(path)}")


def _scalar_int(value, name):
    arr = np.asarray(value)
    if arr.size != 1 or arr.ndim > 1 or arr.dtype.kind not in "iu":
        return None, f"{name} must be a single integer, found dtype {arr.dtype} and shape {arr.shape}"
    number = int(arr.reshape(()))
    if number < 0:
        return None, f"{name} is negative ({number})"
    return number, None


def _check_arrays(arrays: dict):
    """Return (problem or None, constructor fields)."""
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        return f"missing entries {', '.join(missing)} (found {', '.join(sorted(arrays)) or 'none'})", None
    counts = {}
    for name in COUNT_KEYS:
        counts[name], problem = _scalar_int(arrays[name], name)
        if problem:
            return problem, None
    n_res = counts["n_exc"] + counts["n_inh"]
    n = n_res + counts["n_input"]
    W, mask = arrays["W"], arrays["mask"]
    for name, arr in (("W", W), ("mask", mask)):
        if arr.shape != (n, n):
            return (f"{name} has shape {arr.shape} but n_exc + n_inh + n_input = {counts['n_exc']} + "
                    f"{counts['n_inh']} + {counts['n_input']} = {n} requires ({n}, {n})"), None
    if W.dtype.kind != "f":
        return f"W has dtype {W.dtype}, expected float32", None
    if mask.dtype != np.bool_:
        return f"mask has dtype {mask.dtype}, expected bool", None
    for name in NEURON_ARRAYS:
        arr = arrays[name]
        if arr.shape != (n,):
            return f"{name} has shape {arr.shape}, expected ({n},)", None
        if arr.dtype.kind != "f":
            return f"{name} has dtype {arr.dtype}, expected float32", None
        if not np.isfinite(arr).all():
            return f"{name} holds non-finite values", None
    for name in ("tau_v", "tau_syn"):
        if not (arrays[name] > 0).all():
            return f"{name} must be positive everywhere", None
    if not (arrays["t_refrac"] >= 0).all():
        return "t_refrac must be non-negative", None
    coords = arrays["coords"]
    if coords.shape != (n_res, 3):
        return f"coords has shape {coords.shape}, expected ({n_res}, 3)", None
    if coords.dtype.kind not in "iu":
        return f"coords has dtype {coords.dtype}, expected an integer type", None
    if coords.size and (coords.min() < 0 or coords.max() > np.iinfo(np.int32).max):
        return "coords hold negative or out-of-range grid positions", None
    if not np.isfinite(W).all():
        return "W holds non-finite values (NaN or inf)", None
    if not np.array_equal(W != 0, mask):
        return "mask does not match W (W must be nonzero exactly where mask is True)", None
    if mask[n_res:].any():
        return "some input neurons (the last n_input neurons) have incoming synapses", None
    if mask.diagonal().any():
        return "some neurons connect to themselves", None
    if (W[:, :counts["n_exc"]] < 0).any():
        return "some synapses from excitatory neurons have negative weights", None
    if (W[:, counts["n_exc"]:n_res] > 0).any():
        return "some synapses from inhibitory neurons have positive weights", None
    meta_arr = arrays["meta"]
    if meta_arr.shape != () or meta_arr.dtype.kind != "U":
        return f"meta must be a JSON string, found dtype {meta_arr.dtype} and shape {meta_arr.shape}", None
    try:
        meta = json.loads(str(meta_arr[()]))
    except ValueError as exc:
        return f"meta is not valid JSON ({exc})", None
    if not isinstance(meta, dict):
        return "meta must be a JSON object", None
    if "dims" in meta:
        dims = meta["dims"]
        if (not isinstance(dims, list) or len(dims) != 3
                or not all(isinstance(d, int) and d > 0 for d in dims) or int(np.prod(dims)) != n_res):
            return f"meta dims {dims!r} do not describe a grid of n_exc + n_inh = {n_res} neurons", None
    if coords.size and "dims" in meta and (coords >= np.array(meta["dims"])).any():
        return f"coords lie outside the {format_dims(meta['dims'])} grid", None
    fields = {name: arrays[name] for name in ("W", "mask") + NEURON_ARRAYS + ("coords",)}
    fields.update(counts)
    fields["meta"] = meta
    return None, fields


def _check_memory(n: int, dims, n_input: int) -> None:
    need = n * n * 5  # float32 W + bool mask
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return
    if total > 0 and need > total:
        raise UserError(f"a {format_dims(dims)} liquid with {n_input} inputs has {n} neurons; its dense "
                        f"[N, N] weight and mask arrays need {need / 2**30:.1f} GiB but this machine has "
                        f"{total / 2**30:.1f} GiB. Choose smaller --dims (the paper uses 10x10x10 and "
                        f"20x20x20).")


# ----------------------------------------------------------------------------------------------
# Loading with generation on demand, and the `network` sub-command
# ----------------------------------------------------------------------------------------------

def _datasets_for(n_input: int) -> str:
    names = [name for name, spec in DATASETS.items() if spec.n_input == n_input]
    return "/".join(names) if names else "no known dataset"


def ensure_network(net_num: int, n_input: int, dims=None, networks_dir=None,
                   log: Callable[[str], None] = print) -> tuple:
    """Load networks/Network_<net_num>.npz, or generate (seed = net_num), save and return it.

    Returns (network, generated).  A stored network whose input size differs from `n_input` is a
    UserError (e.g. an MNIST network used for N-MNIST).  `dims` only sizes a newly generated liquid.
    """
    if isinstance(net_num, bool) or not isinstance(net_num, (int, np.integer)) or net_num < 0:
        raise UserError(f"bad network number {net_num!r}: NET_NUM_VAR must be a non-negative integer.")
    path = network_path(net_num, networks_dir)
    want_dims = parse_dims(dims) if dims is not None else tuple(PAPER.generation.default_dims)
    if path.exists():
        net = Network.load(path)
        if net.n_input != n_input:
            raise UserError(
                f"the network file {path} has {net.n_input} input neurons ({_datasets_for(net.n_input)}) "
                f"but this dataset needs {n_input} ({_datasets_for(n_input)}); a network is generated for "
                f"one input size. Choose another NET_NUM_VAR (a missing one is generated for this "
                f"dataset), or move {path.name} away.")
        if dims is not None and tuple(net.dims) != want_dims:
            log(f"note: {path.name} already exists with dims {format_dims(net.dims)}; "
                f"--dims {format_dims(want_dims)} only applies to newly generated networks.")
        return net, False
    start = time.perf_counter()
    net = Network.generate(dims=want_dims, n_input=n_input, seed=int(net_num))
    net.save(path)
    log(f"{path} did not exist: generated a {format_dims(want_dims)} liquid with {n_input} inputs "
        f"(seed {int(net_num)}) in {time.perf_counter() - start:.1f} s and saved it "
        f"(summary in {log_path_for(path).name}).")
    return net, True


def network_command(argv) -> int:
    """`python -m lsm_core network`: generate and save networks/Network_<N>.npz."""
    parser = argparse.ArgumentParser(
        prog="python -m lsm_core network",
        description="Generate a liquid (docs/model.md#the-liquid) and save it as networks/Network_<N>.npz "
                    "with a human-readable Network_<N>_log.txt beside it.")
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS),
                        help="dataset the network is for (sets the number of input neurons)")
    parser.add_argument("--net-num", type=int, required=True, help="network number N")
    parser.add_argument("--dims", default=format_dims(PAPER.generation.default_dims),
                        help="reservoir grid, e.g. 10x10x10 (default) or 20x20x20")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the net number)")
    parser.add_argument("--networks-dir", default=None,
                        help=f"folder of network files (default: {default_networks_dir()})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing network file")
    args = parser.parse_args(list(argv))

    dims = parse_dims(args.dims)
    if args.net_num < 0:
        raise UserError(f"bad --net-num {args.net_num}: give a non-negative integer.")
    seed = args.net_num if args.seed is None else args.seed
    if seed < 0:
        raise UserError(f"bad --seed {seed}: give a non-negative integer.")
    path = network_path(args.net_num, args.networks_dir)
    if path.exists() and not args.overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it, or choose another "
                        f"--net-num.")
    n_input = DATASETS[args.dataset].n_input
    start = time.perf_counter()
    net = Network.generate(dims=dims, n_input=n_input, seed=seed)
    gen_s = time.perf_counter() - start
    net.save(path)
    total_s = time.perf_counter() - start
    print(net.describe())
    print(f"Saved {path} and {log_path_for(path).name} (generated in {gen_s:.1f} s, "
          f"{total_s:.1f} s with saving).")
    return 0
