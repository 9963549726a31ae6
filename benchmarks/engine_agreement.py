"""How closely the two engines agree at the paper's sizes: spike trains sample by sample, mean rates, and
the accuracy of whole (moderate-size) runs of every model.

The event-driven engine ("events") and the dense XLA engine ("xla") simulate the same model with the same
input draws; they differ only in floating-point rounding (the synaptic current is summed in another order,
in float64 by the event engine).  In a recurrent liquid one rounding difference at the threshold moves a
spike, and the two trains then part ways.  This script measures:

* ``spikes``: for each rule, B samples of 250 ms on a 1000-neuron liquid with MNIST inputs (the sample
  phase; for the plastic rules also the init phase as a stream of 20 ms snapshots): the fraction of
  samples whose rasters are identical, the first millisecond at which a sample's rasters differ (median
  and minimum over samples), and the mean rates of both engines with their relative difference.
* ``runs``: whole runs of each model through the run pipeline (`lsm_core.runs.pipeline.run`), the same
  moderate-size protocol on both engines and for several seeds: test accuracy at the best validation
  epoch and mean rate, so that the engine difference can be set against the seed-to-seed spread.

    python benchmarks/engine_agreement.py spikes --batch 50
    python benchmarks/engine_agreement.py runs --seeds 1 2 3 --json

Everything is written under a temporary directory that is deleted at the end.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "datasets"   # the repository's shipped MNIST

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RULES = {      # rule -> (simulate params, weight magnitude): the paper's values where the paper has them
    "static": ({}, 1.0),
    "stdp": ({}, 3.0),
    "nalsm": ({"astro_w": 0.015}, 3.0),
    "apstdp": ({"rate_threshold": 37.0, "rate_range": 21.0}, 1.0),
}
MODEL_SCALARS = {
    "LSM": {"INTIAL_ABS_W_SCLR": 1.0},
    "LSM_STDP": {},
    "NALSM": {"ASTRO_W_SCALING": 0.015},
    "LSM_APSTDP": {"INTIAL_ABS_W_SCLR": 1.0, "STDP_NEURON_RATE_THESHOLD": 37.0, "STDP_NEURON_RATE_RANGE": 21.0},
}


def first_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per sample (rasters [B, T, N]): the first step at which the rasters differ, T where they never do."""
    differs = (a != b).any(axis=2)
    return np.where(differs.any(axis=1), differs.argmax(axis=1), a.shape[1])


def spike_agreement(batch: int, steps: int, seed: int) -> list:
    from lsm_core import Network, simulate
    from lsm_core.data.encoding import image_probabilities
    from lsm_core.data.images import load_image_dataset

    net = Network.generate(dims=(10, 10, 10), n_input=784, seed=seed)
    images = load_image_dataset("mnist", DATA_DIR, verify=False).x_train[:batch]
    inputs = image_probabilities(images)
    cases = [(rule, "sample") for rule in ("static", "stdp", "nalsm")] + [(r, "init") for r in ("stdp", "nalsm", "apstdp")]
    rows = []
    for rule, phase in cases:
        params, scale = RULES[rule]
        length = steps if phase == "sample" else 20
        results, seconds = {}, {}
        for engine in ("xla", "events"):
            simulate(net, inputs[:2], rule=rule, phase=phase, weight_scale=scale, params=params, seed=seed,
                     steps=length, engine=engine)                              # compile
            start = time.perf_counter()
            results[engine] = simulate(net, inputs, rule=rule, phase=phase, weight_scale=scale, params=params,
                                       seed=seed, steps=length, engine=engine)
            seconds[engine] = time.perf_counter() - start
        a, b = results["xla"].spikes, results["events"].spikes
        if phase == "init":           # one stream: once a snapshot differs, the ones after it inherit it
            a, b = a.reshape(1, -1, a.shape[2]), b.reshape(1, -1, b.shape[2])
        first = first_difference(a, b)
        rate = {e: float(r.counts.mean()) * 1000.0 / length for e, r in results.items()}
        rows.append({
            "rule": rule, "phase": phase, "samples": batch, "ms": length,
            "identical_samples": float((first == a.shape[1]).mean()) if phase == "sample" else None,
            "first_difference_median_ms": float(np.median(first)), "first_difference_min_ms": int(first.min()),
            "stream_ms": int(a.shape[1]),
            "rate_xla_hz": rate["xla"], "rate_events_hz": rate["events"],
            "rate_difference": abs(rate["events"] - rate["xla"]) / rate["xla"],
            "max_weight_difference": float(np.abs(results["xla"].synapse_weights - results["events"].synapse_weights).max()),
            "seconds_xla": seconds["xla"], "seconds_events": seconds["events"],
        })
    return rows


def run_agreement(seeds, models, sizes: dict) -> list:
    from lsm_core.config import RunConfig
    from lsm_core.runs import pipeline

    rows = []
    with tempfile.TemporaryDirectory(prefix="engine_agreement_") as tmp:
        version = 1
        for model in models:
            for seed in seeds:
                for engine in ("xla", "events"):
                    config = RunConfig(model=model, dataset="mnist", gpu="cpu", version=version, net_num=seed,
                                       batch_size=sizes["batch"], batches_per_block=1, scalars=MODEL_SCALARS[model],
                                       train_samples=sizes["train"], valid_samples=sizes["valid"],
                                       test_samples=sizes["test"], init_samples=sizes["init"],
                                       readout_epochs=sizes["epochs"], seed=seed, dims=(10, 10, 10),
                                       output_root=str(Path(tmp) / "train_data"), data_dir=str(DATA_DIR),
                                       networks_dir=str(Path(tmp) / "networks"), engine=engine)
                    version += 1
                    start = time.perf_counter()
                    summary = pipeline.run(config, log=lambda message: None)
                    rows.append({"model": model, "seed": seed, "engine": engine,
                                 "test_acc_at_best": summary["test_acc_at_best"],
                                 "mean_rate_hz": summary["mean_rate_hz"]["test"],
                                 "wall_s": time.perf_counter() - start,
                                 "timings_s": summary["timings_s"]})
                    print(f"{model:<11} seed {seed}  {engine:<6}  test {100 * summary['test_acc_at_best']:.2f} %  "
                          f"rate {summary['mean_rate_hz']['test']:.2f} Hz  {rows[-1]['wall_s']:.0f} s", flush=True)
    return rows


def summarise_runs(rows) -> list:
    table = []
    for model in dict.fromkeys(r["model"] for r in rows):
        line = {"model": model}
        for engine in ("xla", "events"):
            acc = np.array([r["test_acc_at_best"] for r in rows if r["model"] == model and r["engine"] == engine])
            rate = np.array([r["mean_rate_hz"] for r in rows if r["model"] == model and r["engine"] == engine])
            line[engine] = {"acc_mean": float(acc.mean()), "acc_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                            "rate_mean": float(rate.mean())}
        pairs = [(r, s) for r in rows for s in rows if r["model"] == s["model"] == model and r["seed"] == s["seed"]
                 and r["engine"] == "xla" and s["engine"] == "events"]
        line["acc_difference_per_seed"] = [s["test_acc_at_best"] - r["test_acc_at_best"] for r, s in pairs]
        line["rate_difference_per_seed"] = [(s["mean_rate_hz"] - r["mean_rate_hz"]) / r["mean_rate_hz"] for r, s in pairs]
        table.append(line)
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("spikes", "runs", "all"))
    parser.add_argument("--batch", type=int, default=50, help="spikes: samples per case (default 50)")
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                        help="runs: seeds, one liquid each (default 1 2 3)")
    parser.add_argument("--models", nargs="+", default=list(MODEL_SCALARS), choices=list(MODEL_SCALARS))
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--valid", type=int, default=500)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--init", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args(argv)
    out = {}
    if args.part in ("spikes", "all"):
        out["spikes"] = spike_agreement(args.batch, args.steps, args.seeds[0])
        print(f"{'rule':<7} {'phase':<7} {'identical':>9} {'first diff ms (median/min)':>27} "
              f"{'rate xla':>9} {'rate events':>11} {'rel. diff':>9}")
        for r in out["spikes"]:
            identical = "-" if r["identical_samples"] is None else f"{100 * r['identical_samples']:.0f} %"
            print(f"{r['rule']:<7} {r['phase']:<7} {identical:>9} "
                  f"{r['first_difference_median_ms']:>16.0f} / {r['first_difference_min_ms']:<8d} "
                  f"{r['rate_xla_hz']:>9.3f} {r['rate_events_hz']:>11.3f} {100 * r['rate_difference']:>8.3f}%")
    if args.part in ("runs", "all"):
        sizes = dict(batch=50, train=args.train, valid=args.valid, test=args.test, init=args.init, epochs=args.epochs)
        out["runs"] = run_agreement(args.seeds, args.models, sizes)
        out["runs_summary"] = summarise_runs(out["runs"])
        for line in out["runs_summary"]:
            x, e = line["xla"], line["events"]
            print(f"{line['model']:<11} xla {100 * x['acc_mean']:.2f} ± {100 * x['acc_std']:.2f} %  "
                  f"events {100 * e['acc_mean']:.2f} ± {100 * e['acc_std']:.2f} %  rates {x['rate_mean']:.2f} / "
                  f"{e['rate_mean']:.2f} Hz")
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
