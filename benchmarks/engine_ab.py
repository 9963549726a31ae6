"""Two builds of the event-driven engine, timed against each other in one process, in alternation.

On a shared machine the speed of one build drifts by tens of per cent within minutes (other tenants,
the clock), so two builds timed one after the other, or in two processes, cannot be told apart at the
level of a few per cent.  This script loads both builds of `lsm_core/engines/event_driven.py` into one
process as two modules (a git revision's is taken with `git show`), checks that they give the same
results on the same liquid and inputs (spike counts and, for a learning rule, the final weights, trace
and calcium), then runs them in turn, `--repeats` rounds, the order swapped every round.  It prints each
build's best and median throughput and the median of the per-round ratios new / base, the figure to
trust on a noisy machine.

    python benchmarks/engine_ab.py --base HEAD~1                   # the working tree against a revision
    python benchmarks/engine_ab.py --base v1.py --new v2.py        # two files
    python benchmarks/engine_ab.py --base HEAD~3 --rule stdp --phase sample --batch 50 --steps 250

Throughput is that of `python -m lsm_core bench` (snapshot-steps/s in the init phase, sample-ms/s in the
sample phase), on the same liquid (`--dims`, 784 inputs, `Network.generate(seed)`) and the same inputs
(the first MNIST training images).  Both builds share the rest of the package, so a revision whose
engine needs other files of its own cannot be loaded this way.  Each build is loaded from a copy in the
system's temporary directory, named by its hash: numba compiles a build on its first use (about a
minute per build and rule) and caches it there for the next run.  `--base HEAD` on an unchanged tree
times one build against itself: the spread of its ratio is this machine's noise.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lsm_core.cli.bench import BENCH_PARAMS, bench_inputs, bench_weight_scale  # noqa: E402
from lsm_core.config import PAPER  # noqa: E402
from lsm_core.engines.interface import SimParams, synapse_weights  # noqa: E402
from lsm_core.model.network import Network, parse_dims  # noqa: E402
from lsm_core.model.randomness import sample_keys  # noqa: E402

ENGINE_FILE = "lsm_core/engines/event_driven.py"


def engine_source(spec: str) -> str:
    """A build's source: `spec` is a path to a copy of the engine module, or a git revision of this repository."""
    path = pathlib.Path(spec)
    if path.is_file():
        return path.read_text()
    shown = subprocess.run(["git", "-C", str(REPO), "show", f"{spec}:{ENGINE_FILE}"], capture_output=True, text=True)
    if shown.returncode != 0:
        raise SystemExit(f"engine_ab: {spec!r} is neither a file nor a git revision with {ENGINE_FILE} "
                         f"({shown.stderr.strip()})")
    return shown.stdout


def load_build(source: str):
    """The engine module with this source, imported from a copy in the temporary directory named by the
    source's hash (so that numba's cache beside it serves later runs of the same build)."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    name = f"engine_ab_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    folder = pathlib.Path(tempfile.gettempdir()) / "lsm_core_engine_ab"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    if not path.is_file() or path.read_text() != source:
        path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module                    # registered before it runs, as numba's cache needs
    spec.loader.exec_module(module)
    return module


def make_runner(module, net, weights, rule: str, phase: str, inputs, steps: int):
    """keys -> the build's outputs (a dict of arrays) for one call."""
    if rule == "static":
        simulator = module.EventLiquidSimulator(net, weights)
        return lambda keys: {"counts": simulator.run(inputs, keys, steps=steps)[0]}
    simulator = module.EventPlasticSimulator(net, weights, rule, phase, SimParams(**BENCH_PARAMS[rule]))

    def run(keys):
        out = simulator.run(inputs, keys, steps=steps, record=False)
        return {"counts": out.counts, "weights": out.weights, "trace": out.trace, "calcium": out.calcium}
    return run


def compare(reference: dict, other: dict) -> dict:
    """Whether two builds' outputs are equal, array by array (and the share of equal spike counts)."""
    same = {key: bool(np.array_equal(reference[key], other[key])) for key in reference}
    return {"identical": all(same.values()), "arrays": same,
            "counts_equal_fraction": float(np.mean(reference["counts"] == other["counts"]))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="git revision or file of the reference build")
    parser.add_argument("--new", default=str(REPO / ENGINE_FILE),
                        help="git revision or file of the build to compare (default: the working tree's)")
    parser.add_argument("--rule", default="nalsm", choices=("static", "stdp", "nalsm", "apstdp"))
    parser.add_argument("--phase", default="init", choices=("init", "sample"))
    parser.add_argument("--batch", type=int, default=250,
                        help="snapshots of one stream (init phase) or rows (sample phase); default 250")
    parser.add_argument("--steps", type=int, default=None, help="ms per sample (default: 20 init, 250 sample)")
    parser.add_argument("--dims", default="10x10x10", type=parse_dims)
    parser.add_argument("--repeats", type=int, default=12, help="timed rounds (default 12)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    if args.rule == "static" and args.phase == "init":
        parser.error("the static rule has no init phase; use --phase sample")
    steps = args.steps or (PAPER.protocol.init_duration_ms if args.phase == "init" else PAPER.protocol.duration_ms)

    builds = {label: load_build(engine_source(spec)) for label, spec in (("base", args.base), ("new", args.new))}
    net = Network.generate(dims=args.dims, n_input=784, seed=args.seed)
    weights = synapse_weights(net, bench_weight_scale(args.rule))
    inputs = bench_inputs(784, args.batch, steps, args.seed)
    runners = {label: make_runner(module, net, weights, args.rule, args.phase, inputs, steps)
               for label, module in builds.items()}

    first_keys = sample_keys(args.seed, "train", np.arange(args.batch))
    compile_s, first = {}, {}
    for label, run in runners.items():
        start = time.perf_counter()
        first[label] = run(first_keys)
        compile_s[label] = round(time.perf_counter() - start, 1)
    agreement = compare(first["base"], first["new"])

    seconds = {label: [] for label in runners}
    for round_ in range(args.repeats):
        keys = sample_keys(args.seed + round_ + 1, "train", np.arange(args.batch))
        for label in (("base", "new") if round_ % 2 == 0 else ("new", "base")):
            start = time.perf_counter()
            runners[label](keys)
            seconds[label].append(time.perf_counter() - start)
    work = args.batch * steps
    result = {
        "rule": args.rule, "phase": args.phase, "batch": args.batch, "steps": steps, "repeats": args.repeats,
        "unit": "steps/s" if args.phase == "init" else "sample-ms/s", "base": args.base, "new": args.new,
        "first_call_s": compile_s, **agreement,
        "mean_rate_hz": round(float(first["base"]["counts"].mean()) * 1000.0 / steps, 2),
        "best": {label: round(work / min(s), 1) for label, s in seconds.items()},
        "median": {label: round(work / float(np.median(s)), 1) for label, s in seconds.items()},
        "ratio_new_over_base": round(float(np.median(np.array(seconds["base"]) / np.array(seconds["new"]))), 3),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.rule} {args.phase}, {args.batch} x {steps} ms, {args.repeats} rounds; "
          f"mean rate {result['mean_rate_hz']} Hz")
    print("outputs identical" if agreement["identical"] else
          f"outputs DIFFER: {agreement['arrays']}, {100 * agreement['counts_equal_fraction']:.1f} % of counts equal")
    for label in runners:
        spec = args.base if label == "base" else args.new
        print(f"  {label:<5} {result['best'][label]:>12,.0f} best  {result['median'][label]:>12,.0f} median "
              f"{result['unit']}   (first call {compile_s[label]} s)  {spec}")
    print(f"  new / base, median of the rounds: {result['ratio_new_over_base']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
