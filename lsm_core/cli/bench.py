"""`python -m lsm_core bench`: simulated sample-milliseconds per second, every rule and phase
(the record: docs/file-formats.md#the-bench-record).

Throughput = batch x steps / wall time of the compiled loop; the first call (tracing and XLA
compilation) is timed separately and excluded.  `cpu_s` (process CPU time of the same calls) tells a
busy machine from a slow program: on an otherwise idle machine wall_s is about cpu_s / cores.  Inputs are the first training images of the
shipped MNIST (realistic firing) when the liquid has 784 inputs (random per-pixel probabilities when
datasets/mnist.npz is absent; a damaged one is an error, never silently other inputs); event-mode
liquids (2312 inputs) get Bernoulli events at N-MNIST-like rates.  The liquid is generated, never read
from a network file.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from lsm_core.config import DATASETS, ENGINES, PAPER
from lsm_core.errors import UserError
from lsm_core.model.network import Network, format_dims, parse_dims


def bench_inputs(n_input: int, batch: int, steps: int, seed: int) -> np.ndarray:
    """The inputs of a bench row: image probabilities float32 [batch, 784] of the first training images of the
    shipped MNIST (random ones without it), or event-mode spikes uint8 [batch, steps, n_input]."""
    rng = np.random.default_rng(seed)
    if n_input == DATASETS["mnist"].n_input:
        from lsm_core.data.encoding import image_probabilities
        from lsm_core.data.images import dataset_path, load_image_dataset

        if dataset_path("mnist").is_file():     # a damaged file is a UserError, not silently other inputs
            images = load_image_dataset("mnist", verify=False).x_train[:batch]
            if len(images) == batch:
                return image_probabilities(images)
        return (rng.random((batch, n_input)) * 0.2).astype(np.float32)
    # event mode: about 4000 events per 300 ms recording spread over the 2312 channels
    rate = 4000.0 / 300.0 / n_input
    return (rng.random((batch, steps, n_input)) < rate).astype(np.uint8)


def _peak_memory() -> dict:
    import tensorflow as tf

    memory = {"host_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    for gpu in tf.config.list_logical_devices("GPU"):
        try:
            info = tf.config.experimental.get_memory_info(gpu.name)
            memory[f"{gpu.name}_peak_mb"] = info["peak"] / 2**20
        except (ValueError, RuntimeError):
            pass
    return memory


BENCH_PARAMS = {"static": {}, "stdp": {}, "nalsm": {"astro_w": 0.015},
                "apstdp": {"rate_threshold": 20.0, "rate_range": 5.0}}


def bench_weight_scale(rule: str) -> float:
    """The magnitude of every weight of a bench liquid: w_max (3.0) for the STDP rules, else 1.0."""
    return PAPER.plasticity.w_max if rule in ("stdp", "nalsm") else 1.0


def run_bench(rule: str, phase: str, dims, batch: int, steps: int, n_input: int = 784,
              repeats: int = 3, seed: int = 1, weight_scale: float | None = None, engine: str = "auto") -> dict:
    """Measure one configuration; returns the JSON record of docs/file-formats.md#the-bench-record.

    Phase "init" simulates `batch` consecutive snapshots of `steps` ms of one stream (batch 1);
    its throughput is then snapshot-steps per second.  Default magnitudes: w_max (3.0) for the
    STDP rules, 1.0 for the fixed-weight and AP-STDP liquids.  `engine`: "xla", "events" or "auto"
    (events on CPUs, xla where TensorFlow sees a GPU).
    """
    import tensorflow as tf

    from lsm_core.engines.interface import SimParams, synapse_weights
    from lsm_core.engines.simulator import liquid_simulator, plastic_simulator, resolve_engine
    from lsm_core.model.randomness import sample_keys

    if rule == "static" and phase != "sample":
        raise UserError("bench: the static rule has no init phase; use --phase sample.")
    if weight_scale is None:
        weight_scale = bench_weight_scale(rule)
    net = Network.generate(dims=dims, n_input=n_input, seed=seed)
    weights = synapse_weights(net, weight_scale)
    engine = resolve_engine(engine)
    if rule == "static":
        simulator = liquid_simulator(net, weights, engine=engine)
        simulate_once = lambda keys: simulator.run(inputs, keys, steps=steps)[0]
    else:
        simulator = plastic_simulator(net, weights, rule, phase, SimParams(**BENCH_PARAMS[rule]), engine=engine)
        simulate_once = lambda keys: simulator.run(inputs, keys, steps=steps, record=False).counts
    inputs = bench_inputs(n_input, batch, steps, seed)
    start = time.perf_counter()
    counts = simulate_once(sample_keys(seed, "train", np.arange(batch)))
    compile_s = time.perf_counter() - start
    walls, cpus = [], []
    for repeat in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        counts = simulate_once(sample_keys(seed + repeat + 1, "train", np.arange(batch)))
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    wall = float(np.median(walls))
    gpus = tf.config.list_logical_devices("GPU")
    device = ", ".join(d.name for d in gpus) if gpus and engine == "xla" else "CPU"
    if engine == "events":
        import numba
        device = f"CPU, {numba.get_num_threads()} threads"
    return {
        "rule": rule, "phase": phase, "engine": engine, "dims": format_dims(dims), "n_input": n_input,
        "n_neurons": net.n_neurons, "n_syn": int(net.n_syn), "batch": batch, "steps": steps,
        "weight_scale": weight_scale, "repeats": repeats, "compile_s": round(compile_s - wall, 3),
        "wall_s": round(wall, 4), "wall_s_all": [round(w, 4) for w in walls],
        "cpu_s": round(float(np.median(cpus)), 4), "cpu_threads": os.cpu_count(),
        "sample_ms_per_s": round(batch * steps / wall, 1), "ms_per_step": round(1000.0 * wall / (steps * (batch if phase == "init" else 1)), 3),
        "mean_rate_hz": round(float(counts.mean()) * 1000.0 / steps, 2),
        "device": device, "tensorflow": tf.__version__, **_peak_memory(),
    }


# `bench --all`: every rule x phase at the paper's sizes (1000 neurons, 784 inputs): the sample phase at
# batch 250 x 250 ms (the static liquid also at batch 32), the init phase as 500 snapshots x 20 ms, batch 1
ALL_CASES = (("static", "sample", 32, 250), ("static", "sample", 250, 250), ("stdp", "sample", 250, 250),
             ("nalsm", "sample", 250, 250), ("stdp", "init", 500, 20), ("nalsm", "init", 500, 20),
             ("apstdp", "init", 500, 20))


def bench_all(engines, repeats: int, seed: int, log=print, cases=ALL_CASES, dims=(10, 10, 10),
              readout_sizes: dict | None = None) -> list:
    """Every (rule, phase, batch, steps) of `cases` on each engine, then the readout's seconds per epoch
    (`readout.time_epochs` at the paper's sizes unless `readout_sizes` says otherwise); a list of records."""
    from lsm_core.analysis.readout import time_epochs

    records = []
    for rule, phase, batch, steps in cases:
        for engine in engines:
            record = run_bench(rule, phase, dims, batch, steps, 784, repeats, seed, engine=engine)
            records.append(record)
            log(_row(record))
    readout = time_epochs(**(readout_sizes or {"epochs": 20}))
    records.append({"rule": "readout", "phase": "epoch", "engine": "xla", **readout})
    log(_row(records[-1]))
    return records


TABLE_HEADER = (f"{'rule':<8} {'phase':<7} {'engine':<7} {'batch':>6} {'steps':>6} {'throughput':>22} "
                f"{'rate Hz':>8} {'compile s':>10}")


def _row(record: dict) -> str:
    if record["rule"] == "readout":
        return (f"{'readout':<8} {'epoch':<7} {'xla':<7} {record['batch_size']:>6} {'':>6} "
                f"{record['per_epoch_s']:>15.4f} s/epoch {'':>8} {record['compile_s']:>10.2f}")
    unit = "steps/s" if record["phase"] == "init" else "sample-ms/s"
    return (f"{record['rule']:<8} {record['phase']:<7} {record['engine']:<7} {record['batch']:>6} "
            f"{record['steps']:>6} {record['sample_ms_per_s']:>10,.0f} {unit:<11} {record['mean_rate_hz']:>8.1f} "
            f"{record['compile_s']:>10.2f}")


# ----------------------------------------------------------------------------------------------
# Under load: default threads against one thread while another program takes a core
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def cpu_hog(core: int = 0):
    """Another program spinning on one core (pinned to `core` where the system allows) while inside."""
    code = ("import os\ntry:\n    os.sched_setaffinity(0, {%d})\nexcept (AttributeError, OSError):\n    pass\n"
            "while True:\n    pass\n" % core)
    hog = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        yield hog
    finally:
        hog.kill()
        hog.wait()


def bench_under_load(cases, dims, rounds: int, seed: int, log=print) -> list:
    """Each (rule, phase, batch, steps) of `cases` on the event-driven engine with every numba thread and
    with one, in alternation (`rounds` rounds, the order swapped each round), while `cpu_hog` spins on
    one core; a list of records with both medians and their ratio."""
    import numba

    records = []
    default = numba.get_num_threads()
    with cpu_hog():
        for rule, phase, batch, steps in cases:
            walls = {default: [], 1: []}
            for r in range(rounds):
                for threads in ((default, 1) if r % 2 == 0 else (1, default)):
                    numba.set_num_threads(threads)
                    try:
                        record = run_bench(rule, phase, dims, batch, steps, 784, 1, seed, engine="events")
                    finally:
                        numba.set_num_threads(default)
                    walls[threads].append(record["wall_s"])
            record = {"rule": rule, "phase": phase, "dims": format_dims(dims), "batch": batch, "steps": steps,
                      "rounds": rounds, "default_threads": default, "hog_cores": 1}
            for threads, name in ((default, "default"), (1, "one_thread")):
                wall = float(np.median(walls[threads]))
                record[f"{name}_wall_s"] = round(wall, 4)
                record[f"{name}_sample_ms_per_s"] = round(batch * steps / wall, 1)
            record["default_over_one_thread"] = round(record["one_thread_wall_s"] / record["default_wall_s"], 3)
            records.append(record)
            log(_load_row(record))
    return records


LOAD_HEADER = (f"{'rule':<8} {'phase':<7} {'batch':>6} {'steps':>6} {'default threads':>18} {'one thread':>14} "
               f"{'default / one':>14}")


def _load_row(record: dict) -> str:
    unit = "steps/s" if record["phase"] == "init" else "sample-ms/s"
    return (f"{record['rule']:<8} {record['phase']:<7} {record['batch']:>6} {record['steps']:>6} "
            f"{record['default_sample_ms_per_s']:>18,.0f} {record['one_thread_sample_ms_per_s']:>14,.0f} "
            f"{record['default_over_one_thread']:>13.2f}x  ({unit})")


def bench_command(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lsm_core bench",
        description="Measure simulated sample-milliseconds per second (batch x steps / wall time, "
                    "compilation excluded and reported separately) and peak memory.  --all measures every "
                    "rule, phase and engine at the paper's sizes plus one readout epoch, as one table.")
    parser.add_argument("--all", action="store_true",
                        help="every rule x phase x engine at the paper's sizes, and the readout epoch")
    parser.add_argument("--rule", default="static", choices=("static", "stdp", "nalsm", "apstdp"))
    parser.add_argument("--phase", default="sample", choices=("sample", "init"))
    parser.add_argument("--engine", default="auto", choices=ENGINES,
                        help="simulation engine (default auto: events on CPUs, xla on a GPU); with --all, "
                             "auto measures both")
    parser.add_argument("--dims", default="10x10x10", type=parse_dims)
    parser.add_argument("--batch", default=250, type=int)
    parser.add_argument("--steps", default=PAPER.protocol.duration_ms, type=int)
    parser.add_argument("--n-input", default=784, type=int, help="784 (MNIST, image mode) or 2312 (N-MNIST, event mode)")
    parser.add_argument("--repeats", default=3, type=int)
    parser.add_argument("--seed", default=1, type=int)
    parser.add_argument("--weight-scale", default=None, type=float,
                        help="magnitude of every weight (default: 3.0 for stdp/nalsm, 1.0 otherwise)")
    parser.add_argument("--under-load", action="store_true",
                        help="the event-driven engine with its default threads against one thread, in turns, "
                             "while another program spins on one core (with --all: every case of the event "
                             "engine; --repeats rounds)")
    parser.add_argument("--json", action="store_true", help="print JSON (one object; with --all, a list)")
    args = parser.parse_args(argv)
    if args.under_load:
        if args.engine == "xla":
            raise UserError("bench --under-load compares the event-driven engine's threads; leave out --engine xla.")
        # --all: every event-engine case but the static liquid's second batch size (32)
        cases = ([case for case in ALL_CASES if case[0] != "static" or case[2] != 32] if args.all else
                 [(args.rule, args.phase, args.batch, args.steps)])
        if not args.json:
            print(LOAD_HEADER, flush=True)
        records = bench_under_load(cases, (10, 10, 10) if args.all else args.dims, max(2, args.repeats), args.seed,
                                   log=(lambda line: None) if args.json else (lambda line: print(line, flush=True)))
        if args.json:
            print(json.dumps(records if args.all else records[0]))
        return 0
    if args.all:
        engines = ("xla", "events") if args.engine == "auto" else (args.engine,)
        if not args.json:
            print(TABLE_HEADER, flush=True)
        records = bench_all(engines, args.repeats, args.seed,
                            log=(lambda line: None) if args.json else (lambda line: print(line, flush=True)))
        if args.json:
            print(json.dumps(records))
        return 0
    record = run_bench(args.rule, args.phase, args.dims, args.batch, args.steps, args.n_input,
                       args.repeats, args.seed, args.weight_scale, engine=args.engine)
    if args.json:
        print(json.dumps(record))
    else:
        width = max(map(len, record))
        for key, value in record.items():
            print(f"{key:<{width}}  {value}")
    sys.stdout.flush()
    return 0
