"""Brian2 against this toolkit: simulation speed of the same static liquid on the same input spikes.

What it measures
----------------
Simulated sample-milliseconds per second (batch x steps / wall seconds) of

* **Brian2** (C++ standalone mode, one thread, no OpenMP), and
* **this toolkit's** static-liquid simulation, ``simulate(net, probs, rule="static", weight_scale=1.0,
  steps=250, seed=0)``, once per engine given with ``--engines`` (``engine="xla"``,
  ``engine="events"``; an engine that ``simulate`` does not accept is skipped with a note),

for a 10x10x10 liquid (1000 reservoir neurons, ``Network.generate(seed=1)``) with 784 MNIST input
neurons, 250 ms per sample, at each batch size of ``--batch`` (default 32 and 8).  Both simulators see
identical input spikes: the toolkit draws them inside its compiled loop from counter-based random
numbers, and this script draws the very same ones with the toolkit's NumPy twin
(``step_pixel_uniform_np(keys, t, 784) < probs``) and feeds them to Brian2.  The probabilities are the
toolkit's encoding of the first B images of the MNIST training split (``image_splits(...)["train"]``).

For each run the table shows the mean reservoir rate (spikes per neuron per ms), so that agreement of
the two models is visible, and the speed relative to the faster Brian2 layout at the same batch size.
Against that Brian2 run, each other run also shows whether its 784 input neurons spiked identically
(spike counts compared neuron by neuron), the relative difference of the mean rate, and the share of
(sample, reservoir neuron) spike counts that are equal (see "Exactness").

The model (docs/model.md#one-millisecond-step-by-step; 1 step = 1 ms)
---------------------------------------------------------------------
Every neuron, the input neurons included, is the same LIF neuron.  Per neuron: membrane V, spike S,
refractory counter R, time since last spike s (starts at 20, capped at 100).  Each step:
S = [V (1 - clip(R, 0, 1)) >= 20]; V = V (1 - S); s = 0 where S;
V = V + sum_j W_ij exp(-s_j) + I_i - V/64 with I_i = 100 x_i for input neuron i (x: this ms's input
spike) and 0 for reservoir neurons; s = min(s + 1, 100); R = (R - 1)(1 - S) + 2 S.  Synapses end on
reservoir neurons only; W = sign x the weight magnitude (--weight-scale, default 1.0).

In Brian2 the synaptic term is expressed event-driven: each neuron keeps k, the kernel exp(-s) it will
have this step if it does not spike (k = e^-1 x last step's kernel), and each postsynaptic neuron a
current Isyn = sum_j W_ij k_j that decays by e^-1 per step.  A presynaptic spike restarts its kernel at
1, i.e. adds W (1 - k_pre) to Isyn: this is exactly sum_j W_ij exp(-s_j), not an approximation.  The
step order is reproduced with Brian2's scheduling slots: thresholds (on the V of the previous step),
synaptic propagation (Isyn, and the input current from a SpikeGeneratorGroup), resets, then a custom
update in the "end" slot (V, Isyn, k, R), with no ODE integrator.

Brian2 simulates a batch of B samples in one of two layouts (``--brian2-layout``, default both):

* ``sequential``: one copy of the liquid (1784 neurons) runs the B samples one after another in a
  single run of B x 250 ms; a custom operation in the "start" slot restores the initial state every
  250 ms (B separate runs without their start-up costs);
* ``copies``: one network of B independent copies of the liquid (B x 1784 neurons, block-diagonal
  synapses) runs all B samples at once.

The faster one is the reference of the ratios; on the 2-core EPYC it is ``sequential``, by 4-5x at
batch 32 (presumably as the copies' B x 134,256 synapses and state outgrow the caches).  Brian2 runs
in float32, as the toolkit does.

Timing
------
Every simulator is prepared first: the toolkit makes one warm-up call of ``simulate`` per engine (tracing
and XLA or numba compilation); Brian2's standalone project is generated, compiled (reported as
``compile_s``) and its binary run once.  Then come ``--repeats`` rounds (default 5) in which every
simulator runs once, in turns, so that all of them meet the same moments of a machine whose speed drifts
(a shared 2-core virtual machine easily changes by 20-30 % within a minute).  The table gives the rate of
the best run and of the median run of each, and the ratios to Brian2 of both.
Toolkit: the time is that of the whole public call (building the simulator from the liquid and returning
the full rasters included).  The toolkit uses every core unless ``--toolkit-threads N`` (1 matches
Brian2's single thread).
Brian2: the rate uses Brian2's own measurement of the simulation loop (the run time the binary writes
to ``results/last_run_info.txt``, which ``device._last_run_time`` reads), which leaves out building the
synapses from the index arrays and writing results; the whole binary's best wall time is reported too
(``binary_s``).

Exactness (Brian2 against the toolkit)
--------------------------------------
* Input neurons: identical spikes expected (they receive no synapses); checked via per-neuron counts.
* Reservoir: the same equations, but float rounding may differ (Brian2 sums the synaptic current
  incrementally and multiplies kernels by e^-1 each step, the toolkit computes exp(-s) and sums in its
  own order; Brian2 compiles with -ffast-math), and one rounding difference at the threshold changes a
  recurrent liquid's later spikes.  The toolkit caps s at 100 ms (kernel exp(-100) ~ 4e-44 instead of
  decaying further): irrelevant in float32.  So only the mean rates are bound to agree closely; in
  this configuration (weights +-3, far from the threshold's rounding) every spike count has agreed.

Running
-------
Brian2 is an optional, benchmark-only dependency (``pip install -r benchmarks/requirements.txt``) and
needs a C++ compiler (g++).  From the repository root::

    python benchmarks/brian2_compare.py                      # batch 32 and 8, engines xla and events, 5 rounds
    python benchmarks/brian2_compare.py --batch 8 --steps 50 --repeats 1 --json
    python benchmarks/brian2_compare.py --skip-brian2 --engines xla

Nothing is written outside the system's temporary directory: Brian2's standalone projects go to a
``tempfile.mkdtemp`` directory, deleted at the end unless ``--keep-brian2-dir``; Brian2 itself keeps a
debug log there while it runs (deleted at exit unless Brian2 failed).  Brian2 2.9.0 does not import
under NumPy 2.4 (it reads the removed ``ndarray.ptp``); an import hook here patches that one line in
memory (see ``_NumpyPtpFix``), nothing on disk.
"""
from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import inspect
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # TensorFlow's start-up chatter, this process only

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:          # `python benchmarks/brian2_compare.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from lsm_core import Network  # noqa: E402
from lsm_core.config import PAPER  # noqa: E402
from lsm_core.data.encoding import image_splits
from lsm_core.data.images import load_image_dataset  # noqa: E402
from lsm_core.model.randomness import sample_keys, step_pixel_uniform_np  # noqa: E402

DIMS = (10, 10, 10)
N_INPUT = 784
NET_SEED = 1
WEIGHT_SCALE = 1.0     # default magnitude of every weight: the paper's LSM value (about 39 Hz with MNIST)
INPUT_SEED = 0            # seed= of simulate(): keys the Bernoulli input draws
EXP_M1 = float(np.exp(-1.0))


# ----------------------------------------------------------------------------------------------
# The common liquid and inputs
# ----------------------------------------------------------------------------------------------

def make_liquid() -> Network:
    return Network.generate(dims=DIMS, n_input=N_INPUT, seed=NET_SEED)


def mnist_probabilities(batch: int) -> np.ndarray:
    """Per-ms spike probabilities float32 [batch, 784] of the first `batch` MNIST training images, as the
    toolkit encodes its training split (each image / its pixel sum, then / the split's largest value)."""
    return image_splits(load_image_dataset("mnist", REPO_ROOT / "datasets"))["train"].inputs(np.arange(batch))


def input_spike_trains(probs: np.ndarray, steps: int, seed: int = INPUT_SEED) -> np.ndarray:
    """bool [B, steps, 784]: the input spikes x that `simulate(..., seed=seed)` draws in image mode."""
    keys = sample_keys(seed, "simulate", np.arange(probs.shape[0]))
    return np.stack([step_pixel_uniform_np(keys, t, probs.shape[1]) < probs for t in range(steps)], axis=1)


# ----------------------------------------------------------------------------------------------
# The toolkit
# ----------------------------------------------------------------------------------------------

def limit_toolkit_threads(n: int) -> None:
    """Run the toolkit on n threads: must come before numba and TensorFlow are first imported (the
    toolkit imports them lazily, on the first simulate() call)."""
    for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[name] = str(n)
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(n)


def simulate_takes_engine() -> bool:
    """Whether this version of `simulate` accepts engine= (the engines are being added)."""
    from lsm_core import simulate
    params = inspect.signature(simulate).parameters
    return "engine" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class ToolkitRun:
    """One toolkit engine on one batch: the warm-up call (tracing and XLA or numba compilation) when made,
    then one timed call of simulate() per `time_once`.  engine None: the default engine."""

    def __init__(self, net: Network, probs: np.ndarray, steps: int, engine, threads,
                 weight_scale: float = WEIGHT_SCALE):
        from lsm_core import simulate
        kwargs = {} if engine is None else {"engine": engine}
        self.call = lambda: simulate(net, probs, rule="static", weight_scale=weight_scale, steps=steps,
                                     seed=INPUT_SEED, **kwargs)
        self.net, self.batch, self.steps, self.engine, self.threads = net, probs.shape[0], steps, engine, threads
        started = time.perf_counter()
        self.last = self.call()
        self.warmup = time.perf_counter() - started
        self.times = []

    def time_once(self) -> None:
        started = time.perf_counter()
        self.last = self.call()
        self.times.append(time.perf_counter() - started)

    def result(self) -> dict:
        n_res, steps = self.net.n_res, self.steps
        counts = np.asarray(self.last.counts)                                    # [B, N_res]
        input_counts = np.asarray(self.last.spikes)[:, :steps, n_res:].sum(axis=1)  # [B, 784]
        label = ", ".join(([self.engine] if self.engine else [])
                          + ([f"{self.threads} thread{'s' * (self.threads > 1)}"] if self.threads else []))
        return dict(simulator=f"toolkit ({label})" if label else "toolkit", engine=self.engine,
                    threads=self.threads, warmup_s=self.warmup,
                    mean_rate=float(counts.sum() / (self.batch * n_res * steps)),
                    _counts=counts, _input_counts=input_counts, **rates(self.times, self.batch, steps))


def rates(times: list, batch: int, steps: int) -> dict:
    """Best and median wall time of the timed calls and the rates (sample-ms/s) they give."""
    best, median = min(times), float(np.median(times))
    return dict(batch=batch, steps=steps, best_s=best, median_s=median, times_s=list(times),
                sample_ms_per_s=batch * steps / best, median_sample_ms_per_s=batch * steps / median)


# ----------------------------------------------------------------------------------------------
# Brian2
# ----------------------------------------------------------------------------------------------

class _NumpyPtpFix(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Brian2 2.9.0 reads `np.ndarray.ptp` while defining its Quantity class; NumPy 2.4 removed that
    method (np.ptp remains).  This import hook loads that one Brian2 module with `np.ndarray.ptp`
    replaced by `np.ptp` (the same function for Quantity.ptp), in memory only.  Installed only when
    NumPy lacks ndarray.ptp, i.e. a no-op with a NumPy or Brian2 that does not need it."""

    TARGET = "brian2.units.fundamentalunits"

    def find_spec(self, name, path, target=None):
        if name != self.TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.origin:
            spec.loader = self
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        origin = module.__spec__.origin
        source = Path(origin).read_text(encoding="utf-8").replace("np.ndarray.ptp", "np.ptp")
        exec(compile(source, origin, "exec"), module.__dict__)


def import_brian2():
    """Import Brian2 (with the NumPy 2.4 fix if needed); None and a note if it is not installed."""
    if not hasattr(np.ndarray, "ptp") and not any(isinstance(f, _NumpyPtpFix) for f in sys.meta_path):
        sys.meta_path.insert(0, _NumpyPtpFix())
    try:
        import brian2
    except ImportError as exc:
        return None, f"Brian2 not installed ({exc}); pip install -r benchmarks/requirements.txt"
    return brian2, None


LAYOUTS = ("sequential", "copies")


class Brian2Run:
    """The B samples of input spikes x (bool [B, steps, 784]) on `net` in Brian2's C++ standalone mode:
    the project is generated and compiled when made, and each `time_once` runs its binary once.

    layout "sequential": one copy of the liquid simulates the samples one after another in one run of
    B x steps ms; a custom operation in the "start" slot restores the initial state every `steps` ms,
    which is B separate runs without their start-up costs.  layout "copies": one network of B
    independent copies (B x 1784 neurons, block-diagonal synapses) simulates all samples at once.
    """

    def __init__(self, b2, net: Network, x: np.ndarray, layout: str, workdir: Path, keep: bool,
                 weight_scale: float = WEIGHT_SCALE):
        self.net, self.layout, self.keep = net, layout, keep
        self.batch, self.steps = x.shape[:2]
        self.loop_times, self.binary_times = [], []
        self._build(b2, net, x, layout, workdir, weight_scale)

    def _build(self, b2, net, x, layout, workdir, weight_scale):
        from lsm_core.engines.interface import synapse_weights

        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        batch, steps, n_in = x.shape
        n_res, n_all = net.n_res, net.n_neurons
        neuron = PAPER.neuron
        syn = net.synapses()
        syn_w = synapse_weights(net, weight_scale).astype(np.float64)  # sign x magnitude, synapse-list order
        copies = batch if layout == "copies" else 1
        rounds = batch // copies                     # samples each copy simulates one after another

        # a fresh standalone project, one thread, float32 like the toolkit
        directory = Path(tempfile.mkdtemp(prefix=f"brian2_{layout}_b{batch}_", dir=workdir))
        b2.set_device("cpp_standalone", directory=str(directory), build_on_run=False)
        b2.device.reinit()                  # forget the objects of a previous project
        b2.device.activate(directory=str(directory), build_on_run=False)
        b2.prefs.devices.cpp_standalone.openmp_threads = 0
        b2.prefs.core.default_float_dtype = np.float32
        b2.defaultclock.dt = 1 * b2.ms

        # Copy c holds neurons c*n_all + [reservoir 0..n_res-1, then the n_in input neurons].
        # k: this step's kernel exp(-s) if the neuron does not spike now (e^-1 x the last step's kernel);
        # Isyn: sum_j W_ij k_j, decaying by e^-1 per step; Iin: this step's input current;
        # Isyn0: Isyn of the initial state; count: spikes so far.
        G = b2.NeuronGroup(
            copies * n_all,
            """V : 1
               R : 1
               k : 1
               Isyn : 1
               Iin : 1
               Isyn0 : 1 (constant)
               count : integer""",
            threshold=f"V * (1 - clip(R, 0, 1)) >= {neuron.v_thresh!r}",                 # step 1
            reset="V = 0\nR = 3\nk = 1\ncount += 1",   # steps 2, 4 and 7 (R: 3, minus 1 at "end" = 2)
            name="liquid")
        # steps 5-7, after thresholds, synaptic propagation and resets: the "end" slot
        G.run_regularly(f"""V = V + Isyn + Iin - V / {neuron.tau_v!r}
                            Isyn = Isyn * {EXP_M1!r}
                            Iin = 0
                            k = k * {EXP_M1!r}
                            R = R - 1""", when="end", name="liquid_update")

        # the initial state of every sample: V = R = 0, s = 20 ms, i.e. every kernel exp(-20) (and Isyn
        # its weighted sum; the toolkit's exp(-20) x weights, so that even this 2e-9 agrees)
        since0 = float(neuron.since_spike_init)
        isyn0 = np.zeros(n_all)
        np.add.at(isyn0, syn.post, syn_w * np.exp(-since0))
        G.Isyn0 = np.tile(isyn0, copies)
        initial = f"V = 0\nR = 0\nk = {float(np.exp(-since0))!r}\nIsyn = Isyn0\nIin = 0"
        G.run_regularly(initial, dt=steps * b2.ms, when="start", name="liquid_sample_start")

        # recurrent and input synapses, block-diagonal over the copies
        offsets = (np.arange(copies, dtype=np.int64) * n_all)[:, None]
        S = b2.Synapses(G, G, "w : 1 (constant)", on_pre="Isyn_post += w * (1 - k_pre)", name="liquid_syn")
        S.connect(i=(offsets + syn.pre[None, :]).ravel(), j=(offsets + syn.post[None, :]).ravel())
        S.w = np.tile(syn_w, copies)

        # the input spikes drive the input neurons (100 per spike, in the step of the spike): sample b
        # runs on copy b % copies, during its round b // copies
        b_idx, t_idx, p_idx = np.nonzero(x)
        gen = b2.SpikeGeneratorGroup(copies * n_in, ((b_idx % copies) * n_in + p_idx).astype(np.int64),
                                     ((b_idx // copies) * steps + t_idx) * b2.ms, name="input_spikes")
        S_in = b2.Synapses(gen, G, on_pre=f"Iin_post += {float(neuron.input_current)!r}", name="input_syn")
        S_in.connect(i=np.arange(copies * n_in), j=(offsets + n_res + np.arange(n_in)[None, :]).ravel())

        # cumulative spike counts at the start of every round (sequential layout: per-sample counts)
        objects = [G, S, gen, S_in]
        if rounds > 1:
            snapshots = b2.StateMonitor(G, "count", record=True, dt=steps * b2.ms, when="start", order=-1,
                                        name="round_counts")
            objects.append(snapshots)
        network = b2.Network(*objects)
        network.run(rounds * steps * b2.ms)

        start = time.perf_counter()
        b2.device.build(directory=str(directory), run=False)
        self.compile_s = time.perf_counter() - start
        # one untimed run through Brian2 (the binary's first start, and the spike counts: they are the
        # same in every run); the timed runs start the same binary with the same arguments directly, so
        # that the projects of several layouts can take turns (Brian2 holds only its latest project)
        b2.device.run()
        run_cmd = b2.prefs.devices.cpp_standalone.run_cmd_unix
        self.command = ([run_cmd] if isinstance(run_cmd, str) else list(run_cmd)) + [
            "--results_dir", str(b2.device.results_dir)]
        self.directory, self.results_dir = directory, Path(b2.device.results_dir)
        final = np.asarray(G.count[:], np.int64)                        # [copies * n_all]
        if rounds > 1:          # one copy: counts of sample b = snapshot at round b+1 - snapshot at round b
            cumulative = np.concatenate([np.asarray(snapshots.count, np.int64), final[:, None]], axis=1)
            counts = np.diff(cumulative, axis=1).T                      # [batch, n_all]
        else:
            counts = final.reshape(batch, n_all)
        self.counts = counts
        self.n_synapses, self.n_input_spikes = int(copies * len(syn.post)), int(len(b_idx))

    def time_once(self) -> None:
        """Run the binary once: its wall time and Brian2's own timer of the simulation loop."""
        start = time.perf_counter()
        subprocess.run(self.command, cwd=self.directory, check=True, stdout=subprocess.DEVNULL)
        self.binary_times.append(time.perf_counter() - start)
        run_time, _ = (self.results_dir / "last_run_info.txt").read_text().split()
        self.loop_times.append(float(run_time))

    def result(self) -> dict:
        """The row of the table (its project folder deleted unless kept)."""
        if not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)
        batch, steps, n_res = self.batch, self.steps, self.net.n_res
        label = ("sequential samples" if self.layout == "sequential"
                 else f"{batch} cop{'ies' if batch > 1 else 'y'}")
        return dict(simulator=f"Brian2 ({label})", layout=self.layout, engine=None,
                    binary_s=min(self.binary_times), compile_s=self.compile_s,
                    mean_rate=float(self.counts[:, :n_res].sum() / (batch * n_res * steps)),
                    n_synapses=self.n_synapses, n_input_spikes=self.n_input_spikes,
                    directory=str(self.directory) if self.keep else None,
                    _counts=self.counts[:, :n_res], _input_counts=self.counts[:, n_res:],
                    **rates(self.loop_times, batch, steps))


# ----------------------------------------------------------------------------------------------
# Comparison and output
# ----------------------------------------------------------------------------------------------

def agreement(brian: dict, tool: dict) -> dict:
    """How closely another run (a toolkit engine, the other Brian2 layout) matches the reference Brian2
    run on the same inputs."""
    rate_diff = tool["mean_rate"] / brian["mean_rate"] - 1.0 if brian["mean_rate"] else None
    return dict(input_spikes_identical=bool(np.array_equal(brian["_input_counts"], tool["_input_counts"])),
                reservoir_counts_equal_fraction=float(np.mean(brian["_counts"] == tool["_counts"])),
                rate_rel_diff=None if rate_diff is None else float(rate_diff))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def print_table(rows: list, notes: list) -> None:
    header = (f"{'simulator':<36} {'batch':>5} {'sample-ms/s':>12} {'median':>9} {'mean rate':>10} {'vs Brian2':>9} "
              f"{'median':>7}  notes")
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = f"{r['vs_brian2']:.2f}x" if r.get("vs_brian2") is not None else "-"
        median_ratio = f"{r['median_vs_brian2']:.2f}x" if r.get("median_vs_brian2") is not None else "-"
        extra = []
        if "compile_s" in r:
            extra.append(f"compile {r['compile_s']:.1f} s, binary {r['binary_s']:.2f} s")
        if "warmup_s" in r:
            extra.append(f"first call {r['warmup_s']:.2f} s")
        if "agreement" in r:
            a = r["agreement"]
            extra.append(f"inputs identical: {'yes' if a['input_spikes_identical'] else 'NO'}, "
                         f"rate {100 * (a['rate_rel_diff'] or 0.0):+.2f} %, "
                         f"{100 * a['reservoir_counts_equal_fraction']:.1f} % of counts equal")
        print(f"{r['simulator']:<36} {r['batch']:>5} {r['sample_ms_per_s']:>12,.0f} "
              f"{r['median_sample_ms_per_s']:>9,.0f} {r['mean_rate']:>10.5f} {ratio:>9} {median_ratio:>7}  "
              f"{'; '.join(extra)}")
    for note in notes:
        print(f"note: {note}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 8], help="batch sizes (default: 32 8)")
    ap.add_argument("--steps", type=int, default=250, help="ms per sample (default: 250)")
    ap.add_argument("--weight-scale", type=float, default=WEIGHT_SCALE,
                    help="magnitude of every weight (default 1.0, the paper's LSM value: about 39 Hz on MNIST; "
                         "3.0 gives a saturated liquid of about 240 Hz)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="timed rounds: every simulator runs once per round, in turns (default: 5)")
    ap.add_argument("--engines", nargs="+", default=["xla", "events"],
                    help="toolkit engines, passed as simulate(engine=...) (default: xla events)")
    ap.add_argument("--toolkit-threads", type=int, default=None,
                    help="limit the toolkit to N threads (NumPy/numba/TensorFlow), e.g. 1 to match Brian2's "
                         "single thread (default: every core)")
    ap.add_argument("--skip-brian2", action="store_true", help="only time the toolkit")
    ap.add_argument("--brian2-layout", nargs="+", choices=LAYOUTS, default=list(LAYOUTS),
                    help="how Brian2 simulates a batch: 'sequential' (one liquid, the samples one after "
                         "another) and/or 'copies' (B copies of the liquid in one network); the faster "
                         "one is the reference of the ratios (default: both)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--keep-brian2-dir", action="store_true",
                    help="keep Brian2's standalone project (in the temporary directory) and print where")
    args = ap.parse_args(argv)
    if any(b < 1 for b in args.batch) or args.steps < 1 or args.repeats < 1:
        ap.error("--batch, --steps and --repeats must be positive")
    if args.toolkit_threads is not None:
        if args.toolkit_threads < 1:
            ap.error("--toolkit-threads must be positive")
        limit_toolkit_threads(args.toolkit_threads)

    notes, rows = [], []
    load_before = os.getloadavg()[0]    # other work on the machine distorts every figure: record it
    net = make_liquid()
    probs_all = mnist_probabilities(max(args.batch))

    engines = list(args.engines)
    if not simulate_takes_engine():
        notes.append(f"simulate() does not accept engine= yet: engines {engines} skipped, "
                     f"the default engine timed instead")
        engines = [None]

    b2, why = (None, "skipped (--skip-brian2)") if args.skip_brian2 else import_brian2()
    if b2 is None:
        notes.append(f"Brian2 {why}")
    workdir = Path(tempfile.mkdtemp(prefix="brian2_compare_"))
    if args.keep_brian2_dir and b2 is not None:
        notes.append(f"Brian2's standalone projects kept in {workdir}")
    try:
        for batch in args.batch:
            probs = probs_all[:batch]
            brian = None                # the faster Brian2 layout: the reference of the ratios
            runs = []
            if b2 is not None:
                x = input_spike_trains(probs, args.steps)
                runs += [Brian2Run(b2, net, x, layout, workdir, args.keep_brian2_dir, args.weight_scale)
                         for layout in args.brian2_layout]
            for engine in engines:
                try:
                    runs.append(ToolkitRun(net, probs, args.steps, engine, args.toolkit_threads, args.weight_scale))
                except (TypeError, ValueError, NotImplementedError, ImportError) as exc:
                    notes.append(f"toolkit engine {engine!r} skipped at batch {batch}: "
                                 f"{type(exc).__name__}: {exc}")
            # the simulators take turns, one timed run each per round, so that they all meet the same
            # moments of a machine whose speed drifts
            for _ in range(args.repeats):
                for run in runs:
                    run.time_once()
            measured = [run.result() for run in runs]
            brians = [r for r in measured if r["engine"] is None and "layout" in r]
            if brians:
                brian = max(brians, key=lambda r: r["sample_ms_per_s"])
                for r in measured:
                    r["vs_brian2"] = r["sample_ms_per_s"] / brian["sample_ms_per_s"]
                    r["median_vs_brian2"] = r["median_sample_ms_per_s"] / brian["median_sample_ms_per_s"]
                    if r is not brian:
                        r["agreement"] = agreement(brian, r)
            rows.extend(measured)
    finally:
        if not args.keep_brian2_dir:
            shutil.rmtree(workdir, ignore_errors=True)

    load = dict(before=round(load_before, 2), after=round(os.getloadavg()[0], 2))
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    if args.json:
        info = dict(machine=dict(cpu=cpu_name(), cores=os.cpu_count(), python=platform.python_version(),
                                 numpy=np.__version__, load_average_1min=load,
                                 brian2=getattr(b2, "__version__", None) if b2 is not None else None),
                    liquid=dict(dims=list(DIMS), n_res=net.n_res, n_input=N_INPUT, seed=NET_SEED,
                                n_synapses=net.n_syn, weight_scale=args.weight_scale),
                    steps=args.steps, repeats=args.repeats, input_seed=INPUT_SEED,
                    results=public, notes=notes)
        print(json.dumps(info, indent=2))
    else:
        print(f"liquid {DIMS[0]}x{DIMS[1]}x{DIMS[2]} ({net.n_res} neurons, {N_INPUT} inputs, "
              f"{net.n_syn} synapses, weights +-{args.weight_scale}), {args.steps} ms per sample, "
              f"{args.repeats} rounds in turns; {cpu_name()}, {os.cpu_count()} cores; "
              f"mean rate = reservoir spikes per neuron per ms; 1-min load average "
              f"{load['before']:.2f} before, {load['after']:.2f} after")
        print_table(public, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
