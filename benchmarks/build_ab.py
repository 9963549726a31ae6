"""Two builds of one module of the package, timed against each other in one process, in alternation.

On a shared machine the speed of one build drifts by tens of per cent within minutes (other tenants,
the clock), so two builds timed one after the other, or in two processes, cannot be told apart at the
level of a few per cent.  This script loads both builds of a module into one process as two modules (a
git revision's is taken with `git show`), checks that they give the same results on the same inputs,
then runs them in turn, `--repeats` rounds, the order swapped every round.  It prints each build's best
and median throughput and the median of the per-round ratios new / base, the figure to trust on a noisy
machine.  Two modules can be compared:

* `--module engine` (the default), `lsm_core/engines/event_driven.py`: the throughput of
  `python -m lsm_core bench` (snapshot-steps/s in the init phase, sample-ms/s in the sample phase) on the
  same liquid (`--dims`, 784 inputs, `Network.generate(seed)`) and inputs (the first MNIST training
  images); the same spike counts and, for a learning rule, final weights, trace and calcium.
* `--module readout`, `lsm_core/analysis/readout.py`: epochs/s of the paper's readout training
  (`--epochs` epochs in chunks of `--chunk`, Adadelta, batches of `--batch`) on random spike counts of the paper's
  sizes (`--features` inputs, 50,000 / 10,000 / 10,000 samples); the same history rows and final state.

    python benchmarks/build_ab.py --base HEAD~1                   # the working tree's engine against a revision
    python benchmarks/build_ab.py --base v1.py --new v2.py        # two files
    python benchmarks/build_ab.py --base HEAD~3 --rule stdp --phase sample --batch 50 --steps 250
    python benchmarks/build_ab.py --module readout --base HEAD~1 --repeats 6

Both builds share the rest of the package, so a revision whose module needs other files of its own cannot
be loaded this way.  Each build is loaded from a copy in the system's temporary directory, named by its
hash: numba compiles an engine build on its first use (about half a minute per build and rule) and caches it
there for the next run.  `--base HEAD` on an unchanged tree times one build against itself: the spread of
its ratio is this machine's noise.
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
from lsm_core.config import N_CLASSES, PAPER  # noqa: E402
from lsm_core.engines.interface import SimParams, synapse_weights  # noqa: E402
from lsm_core.model.network import Network, parse_dims  # noqa: E402
from lsm_core.model.randomness import sample_keys  # noqa: E402
from lsm_core.runs.folder import HISTORY_COLUMNS  # noqa: E402

MODULE_FILES = {"engine": "lsm_core/engines/event_driven.py", "readout": "lsm_core/analysis/readout.py"}


def module_source(spec: str, module_file: str) -> str:
    """A build's source: `spec` is a path to a copy of the module, or a git revision of this repository."""
    path = pathlib.Path(spec)
    if path.is_file():
        return path.read_text()
    shown = subprocess.run(["git", "-C", str(REPO), "show", f"{spec}:{module_file}"], capture_output=True, text=True)
    if shown.returncode != 0:
        raise SystemExit(f"build_ab: {spec!r} is neither a file nor a git revision with {module_file} "
                         f"({shown.stderr.strip()})")
    return shown.stdout


def load_build(source: str, module: str):
    """The module with this source, imported from a copy in the temporary directory named by the source's
    hash (so that numba's cache beside it serves later runs of the same build)."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    name = f"{module}_ab_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    folder = pathlib.Path(tempfile.gettempdir()) / "lsm_core_build_ab"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    if not path.is_file() or path.read_text() != source:
        path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded                    # registered before it runs, as numba's cache needs
    spec.loader.exec_module(loaded)
    return loaded


# ----------------------------------------------------------------------------------------------
# What one round runs: (round -> outputs) per build, and the work it does
# ----------------------------------------------------------------------------------------------

def engine_case(args, builds: dict) -> dict:
    """The event-driven engine on bench's liquid and inputs; work in snapshot-steps or sample-ms."""
    if args.rule == "static" and args.phase == "init":
        raise SystemExit("build_ab: the static rule has no init phase; use --phase sample")
    steps = args.steps or (PAPER.protocol.init_duration_ms if args.phase == "init" else PAPER.protocol.duration_ms)
    net = Network.generate(dims=args.dims, n_input=784, seed=args.seed)
    weights = synapse_weights(net, bench_weight_scale(args.rule))
    inputs = bench_inputs(784, args.batch, steps, args.seed)

    def runner(module):
        if args.rule == "static":
            simulator = module.EventLiquidSimulator(net, weights)
            return lambda keys: {"counts": simulator.run(inputs, keys, steps=steps)[0]}
        params = SimParams(**BENCH_PARAMS[args.rule])
        simulator = module.EventPlasticSimulator(net, weights, args.rule, args.phase, params)

        def run(keys):
            out = simulator.run(inputs, keys, steps=steps, record=False)
            return {"counts": out.counts, "weights": out.weights, "trace": out.trace, "calcium": out.calcium}
        return run

    runners = {label: runner(module) for label, module in builds.items()}
    return {
        "title": f"{args.rule} {args.phase}, {args.batch} x {steps} ms",
        "unit": "steps/s" if args.phase == "init" else "sample-ms/s", "work": args.batch * steps,
        "rounds": {label: (lambda round_, run=run: run(sample_keys(args.seed + round_, "train", np.arange(args.batch))))
                   for label, run in runners.items()},
        "describe": lambda outputs: f"mean rate {float(outputs['counts'].mean()) * 1000.0 / steps:.2f} Hz",
    }


def readout_case(args, builds: dict) -> dict:
    """The paper's readout training on random counts of the paper's sizes; work in epochs."""
    rng = np.random.default_rng(args.seed)
    reference = builds["base"]

    def split(n):
        counts = rng.poisson(2.0, size=(n, args.features))
        return reference.normalise_counts(counts, args.batch), rng.integers(0, N_CLASSES, n)

    sets = (split(50000), split(10000), split(10000))

    def runner(module):
        def run(round_):
            state, history = module.train_readout(*sets, batch_size=args.batch, epochs=args.epochs,
                                                  chunk_epochs=args.chunk)
            return {"history": np.array([[row[key] for key in HISTORY_COLUMNS] for row in history]),
                    **{name: np.asarray(getattr(state, name)) for name in state._fields if name != "best_valid_acc"}}
        return run

    return {"title": f"readout, {args.features} features, {args.epochs} epochs in chunks of {args.chunk}",
            "unit": "epochs/s", "work": args.epochs,
            "rounds": {label: runner(module) for label, module in builds.items()},
            "describe": lambda outputs: "final validation accuracy "
                        f"{outputs['history'][-1][HISTORY_COLUMNS.index('valid_acc')]:.4f}"}


CASES = {"engine": engine_case, "readout": readout_case}


def compare(reference: dict, other: dict) -> dict:
    """Whether two builds' outputs are equal, array by array (and the share of equal values in the first)."""
    same = {key: bool(np.array_equal(reference[key], other[key])) for key in reference}
    first = next(iter(reference))
    return {"identical": all(same.values()), "arrays": same,
            "first_equal_fraction": float(np.mean(reference[first] == other[first]))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", default="engine", choices=sorted(MODULE_FILES),
                        help="the module whose builds are compared (default: engine)")
    parser.add_argument("--base", required=True, help="git revision or file of the reference build")
    parser.add_argument("--new", default=None,
                        help="git revision or file of the build to compare (default: the working tree's)")
    parser.add_argument("--repeats", type=int, default=12, help="timed rounds (default 12)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--batch", type=int, default=250,
                        help="engine: snapshots of one stream (init phase) or rows (sample phase); readout: its batch "
                             "size; default 250")
    engine = parser.add_argument_group("--module engine")
    engine.add_argument("--rule", default="nalsm", choices=("static", "stdp", "nalsm", "apstdp"))
    engine.add_argument("--phase", default="init", choices=("init", "sample"))
    engine.add_argument("--steps", type=int, default=None, help="ms per sample (default: 20 init, 250 sample)")
    engine.add_argument("--dims", default="10x10x10", type=parse_dims)
    readout = parser.add_argument_group("--module readout")
    readout.add_argument("--epochs", type=int, default=100, help="epochs per round (default 100)")
    readout.add_argument("--chunk", type=int, default=25, help="epochs per compiled call (default 25)")
    readout.add_argument("--features", type=int, default=1000, help="readout inputs (default 1000)")
    args = parser.parse_args(argv)
    module_file = MODULE_FILES[args.module]
    new_spec = args.new or str(REPO / module_file)

    builds = {label: load_build(module_source(spec, module_file), args.module)
              for label, spec in (("base", args.base), ("new", new_spec))}
    case = CASES[args.module](args, builds)
    rounds = case["rounds"]

    first_call_s, first = {}, {}
    for label, run in rounds.items():
        start = time.perf_counter()
        first[label] = run(0)
        first_call_s[label] = round(time.perf_counter() - start, 1)
    agreement = compare(first["base"], first["new"])

    seconds = {label: [] for label in rounds}
    for round_ in range(args.repeats):
        for label in (("base", "new") if round_ % 2 == 0 else ("new", "base")):
            start = time.perf_counter()
            rounds[label](round_ + 1)
            seconds[label].append(time.perf_counter() - start)
    work = case["work"]
    result = {
        "module": args.module, "case": case["title"], "repeats": args.repeats, "unit": case["unit"],
        "base": args.base, "new": new_spec, "first_call_s": first_call_s, **agreement,
        "outputs": case["describe"](first["base"]),
        "best": {label: round(work / min(s), 1) for label, s in seconds.items()},
        "median": {label: round(work / float(np.median(s)), 1) for label, s in seconds.items()},
        "ratio_new_over_base": round(float(np.median(np.array(seconds["base"]) / np.array(seconds["new"]))), 3),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{case['title']}, {args.repeats} rounds; {result['outputs']}")
    print("outputs identical" if agreement["identical"] else
          f"outputs DIFFER: {agreement['arrays']}, {100 * agreement['first_equal_fraction']:.1f} % of the first "
          f"array's values equal")
    for label in rounds:
        spec = args.base if label == "base" else new_spec
        print(f"  {label:<5} {result['best'][label]:>12,.1f} best  {result['median'][label]:>12,.1f} median "
              f"{result['unit']}   (first call {first_call_s[label]} s)  {spec}")
    print(f"  new / base, median of the rounds: {result['ratio_new_over_base']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
