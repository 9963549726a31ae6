"""`python -m lsm_core bench`: simulated sample-milliseconds per second (SPEC 6).

Throughput = batch x steps / wall time of the compiled loop; the first call (tracing and XLA
compilation) is timed separately and excluded.  Inputs are the first training images of the
shipped MNIST (realistic firing) when the liquid has 784 inputs, else random per-pixel
probabilities; event-mode liquids (2312 inputs) get Bernoulli events at N-MNIST-like rates.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np

from lsm_core.config import DATASETS, PAPER
from lsm_core.errors import UserError
from lsm_core.network import Network, format_dims, parse_dims


def _inputs(n_input: int, batch: int, steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if n_input == DATASETS["mnist"].n_input:
        try:
            from lsm_core.datasets import image_probabilities, load_image_dataset

            images = load_image_dataset("mnist", verify=False).x_train[:batch]
            if len(images) == batch:
                return image_probabilities(images)
        except UserError:
            pass
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


def run_bench(rule: str, phase: str, dims, batch: int, steps: int, n_input: int = 784,
              repeats: int = 3, seed: int = 1, weight_scale: float = 1.0) -> dict:
    """Measure one configuration; returns the JSON record of SPEC 6."""
    import tensorflow as tf

    from lsm_core.randomness import sample_keys
    from lsm_core.simulator import AVAILABLE_RULES, LiquidSimulator, synapse_weights

    if rule not in AVAILABLE_RULES:
        raise UserError(f"bench: rule {rule!r} is not available in this version (available: "
                        f"{', '.join(AVAILABLE_RULES)}); the plastic rules arrive with the plasticity work.")
    if phase != "sample":
        raise UserError("bench: only --phase sample exists for the static rule (it has no init phase).")
    net = Network.generate(dims=dims, n_input=n_input, seed=seed)
    simulator = LiquidSimulator(net, synapse_weights(net, weight_scale))
    inputs = _inputs(n_input, batch, steps, seed)
    keys = sample_keys(seed, "train", np.arange(batch))
    start = time.perf_counter()
    counts, _ = simulator.run(inputs, keys, steps=steps)
    compile_s = time.perf_counter() - start
    walls = []
    for repeat in range(repeats):
        start = time.perf_counter()
        counts, _ = simulator.run(inputs, sample_keys(seed + repeat + 1, "train", np.arange(batch)), steps=steps)
        walls.append(time.perf_counter() - start)
    wall = float(np.median(walls))
    gpus = tf.config.list_logical_devices("GPU")
    device = ", ".join(d.name for d in gpus) if gpus else "CPU"
    return {
        "rule": rule, "phase": phase, "dims": format_dims(dims), "n_input": n_input,
        "n_neurons": net.n_neurons, "n_syn": int(net.n_syn), "batch": batch, "steps": steps,
        "repeats": repeats, "compile_s": round(compile_s - wall, 3), "wall_s": round(wall, 4),
        "wall_s_all": [round(w, 4) for w in walls], "sample_ms_per_s": round(batch * steps / wall, 1),
        "ms_per_step": round(1000.0 * wall / steps, 3),
        "mean_rate_hz": round(float(counts.mean()) * 1000.0 / steps, 2),
        "device": device, "tensorflow": tf.__version__, **_peak_memory(),
    }


def bench_command(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lsm_core bench",
        description="Measure simulated sample-milliseconds per second (batch x steps / wall time, "
                    "compilation excluded and reported separately) and peak memory.")
    parser.add_argument("--rule", default="static", choices=("static", "stdp", "nalsm", "apstdp"))
    parser.add_argument("--phase", default="sample", choices=("sample", "init"))
    parser.add_argument("--dims", default="10x10x10", type=parse_dims)
    parser.add_argument("--batch", default=250, type=int)
    parser.add_argument("--steps", default=PAPER.protocol.duration_ms, type=int)
    parser.add_argument("--n-input", default=784, type=int, help="784 (MNIST, image mode) or 2312 (N-MNIST, event mode)")
    parser.add_argument("--repeats", default=3, type=int)
    parser.add_argument("--seed", default=1, type=int)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    record = run_bench(args.rule, args.phase, args.dims, args.batch, args.steps, args.n_input,
                       args.repeats, args.seed)
    if args.json:
        print(json.dumps(record))
    else:
        width = max(map(len, record))
        for key, value in record.items():
            print(f"{key:<{width}}  {value}")
    sys.stdout.flush()
    return 0
