"""Expected run times from one stored measurement: the sweep files' "expected time" lines and the README's
table of run times are written from `benchmarks/estimates.json`, never typed.

    python benchmarks/estimates.py measure                        # this machine: every case the sweeps need
    python benchmarks/estimates.py add-run train_data/ver_1800    # a finished run's phase times
    python benchmarks/estimates.py write                          # sweeps/*.toml and README.md from the file
    python benchmarks/estimates.py write --check                  # exit 1 where a file disagrees (a test)

A run's time is the sum of its phases, for the RunConfig its sweep builds (protocol sizes, liquid, batch):

* init phase: init samples x 20 ms / the init rule's snapshot-steps per second (`bench --phase init`);
* spike counts: (train + valid + test) x duration / the sample rule's sample-ms per second (`bench` at the
  run's batch, capped at 250);
* readout: epochs x seconds per epoch (`readout.time_epochs` at the run's batch and number of features).

`bench` liquids are generated with every weight at the model's bench magnitude, and they fire faster than
a trained liquid (a NALSM-8000 bench liquid 16.8 Hz, the run's 4.3 Hz); so where a finished run of the same
model, input size, liquid size and batch was added with `add-run`, its measured phase times are used
instead and the line says "measured".  Everything is for the machine named in the file.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lsm_core.config import DATASETS, MODELS, PAPER  # noqa: E402
from lsm_core.model.network import format_dims  # noqa: E402

STORE = REPO / "benchmarks" / "estimates.json"
README = REPO / "README.md"
SWEEPS = REPO / "sweeps"
MAX_BENCH_BATCH = 250
LINE_PREFIX = "# expected time on a 2-core CPU:"
TABLE_BEGIN = "<!-- run-time estimates: written by benchmarks/estimates.py from benchmarks/estimates.json -->"
TABLE_END = "<!-- end of run-time estimates -->"
SWEEPS_BEGIN = "<!-- sweep table: written by benchmarks/estimates.py from benchmarks/estimates.json -->"
SWEEPS_END = "<!-- end of sweep table -->"


# ----------------------------------------------------------------------------------------------
# What a run needs
# ----------------------------------------------------------------------------------------------

def run_key(config) -> dict:
    """The measurements a run's estimate depends on: its model, input size, liquid and batch."""
    return {"model": config.model, "n_input": DATASETS[config.dataset].n_input, "dims": format_dims(config.dims),
            "batch": config.batch_size}


def needed_cases(config) -> list:
    """(kind, key) of every measurement for one run: bench records and the readout epoch."""
    spec, n_input, dims = MODELS[config.model], DATASETS[config.dataset].n_input, format_dims(config.dims)
    cases = [("sample", {"rule": spec.sample_rule, "dims": dims, "n_input": n_input,
                         "batch": min(config.batch_size, MAX_BENCH_BATCH), "steps": config.duration_ms})]
    if spec.has_init_phase:
        cases.append(("init", {"rule": spec.init_rule, "dims": dims, "n_input": n_input, "batch": 250,
                               "steps": PAPER.protocol.init_duration_ms}))
    n_res = 1
    for side in config.dims:
        n_res *= side
    cases.append(("readout", {"n_features": n_res, "batch_size": config.batch_size}))
    return cases


@functools.lru_cache(maxsize=None)
def sweep_configs(path: pathlib.Path) -> tuple:
    """The RunConfig of every run of a sweep file (read once per process: every table asks again)."""
    from lsm_core.runs.sweep import load_sweep

    return tuple(run.config() for run in load_sweep(path).runs)


def estimated_sweeps() -> list:
    """The sweep files that carry an "expected time" line (the paper's grids; not the demo)."""
    return [path for path in sorted(SWEEPS.glob("*.toml")) if LINE_PREFIX in path.read_text()]


def _matches(record: dict, key: dict) -> bool:
    return all(record.get(name) == value for name, value in key.items())


# ----------------------------------------------------------------------------------------------
# Estimating
# ----------------------------------------------------------------------------------------------

def phase_seconds(config, store: dict) -> tuple[dict, str]:
    """({"init", "spike_counts", "readout"} seconds, source) of one run: a measured run of the same key
    where one was added, else the bench figures."""
    key = run_key(config)
    runs = [run for run in store.get("runs", []) if _matches(run, key)]
    if runs:
        phases = {name: sum(run["phases"][name] for run in runs) / len(runs) for name in ("init", "spike_counts",
                                                                                              "readout")}
        return phases, "measured"
    phases = {"init": 0.0}
    for kind, case in needed_cases(config):
        found = [r for r in store["bench"] if r.get("kind") == kind and _matches(r, case)]
        if not found:
            raise SystemExit(f"estimates.py: {STORE.name} has no {kind} measurement for {case}; "
                             f"run `python benchmarks/estimates.py measure` first.")
        record = found[-1]
        if kind == "init":
            phases["init"] = config.init_samples * PAPER.protocol.init_duration_ms / record["sample_ms_per_s"]
        elif kind == "sample":
            samples = config.train_samples + config.valid_samples + config.test_samples
            phases["spike_counts"] = samples * config.duration_ms / record["sample_ms_per_s"]
        else:
            phases["readout"] = config.readout_epochs * record["per_epoch_s"]
    return phases, "bench"


def duration(seconds: float) -> str:
    """A rounded duration for people: 40 s, 6.4 min, 2 h 5 min, 31 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60.0
    if minutes < 10:
        return f"{minutes:.1f} min"
    if minutes < 120:
        return f"{minutes:.0f} min"
    hours = minutes / 60.0
    return f"{int(hours)} h {int(round(minutes - 60 * int(hours))):d} min" if hours < 10 else f"{hours:.0f} h"


def sweep_line(path: pathlib.Path, store: dict) -> str:
    """The "expected time" comment line of a sweep file."""
    return f"{LINE_PREFIX} {sweep_summary(path, store)[1]}"


def sweep_summary(path: pathlib.Path, store: dict) -> tuple[float, str]:
    """(total seconds, the words after the "expected time" prefix) of a sweep file."""
    estimates = [phase_seconds(config, store) for config in sweep_configs(path)]
    total = sum(sum(phases.values()) for phases, _ in estimates)
    per_run = total / len(estimates)
    mean = {name: sum(p[name] for p, _ in estimates) / len(estimates) for name in ("init", "spike_counts",
                                                                                     "readout")}
    sources = sorted({source for _, source in estimates})
    parts = ([f"init {duration(mean['init'])}"] if mean["init"] else []) + [
        f"spike counts {duration(mean['spike_counts'])}", f"readout {duration(mean['readout'])}"]
    return total, (f"about {duration(total)}: {len(estimates)} runs x about {duration(per_run)} "
                   f"({', '.join(parts)}; {' and '.join(sources)}, {store['machine']['date']}).")


def sweep_table(store: dict) -> str:
    """The README's table of the sweep files: models and datasets, runs, VERSIONs, expected time."""
    from lsm_core.runs.sweep import load_sweep

    lines = [SWEEPS_BEGIN, "| sweep file | models, datasets | runs | VERSIONs | 2-core CPU |", "|---|---|---|---|---|"]
    for path in estimated_sweeps():
        sweep = load_sweep(path)
        what = ", ".join(dict.fromkeys(f"{run.model} {DATASETS[run.dataset].title}" for run in sweep.runs))
        total, _ = sweep_summary(path, store)
        lines.append(f"| `{path.name}` | {what} | {len(sweep.runs)} | {sweep.runs[0].version}–{sweep.runs[-1].version} "
                     f"| about {duration(total)} |")
    lines.append(SWEEPS_END)
    return "\n".join(lines)


def readme_table(store: dict) -> str:
    """The README's table: one row per distinct run of the sweep files (model, dataset, liquid, batch)."""
    rows, seen = [], set()
    for path in estimated_sweeps():
        for config in sweep_configs(path):
            key = (config.model, config.dataset, format_dims(config.dims), config.batch_size)
            if key in seen:
                continue
            seen.add(key)
            phases, source = phase_seconds(config, store)
            rows.append((key, phases, source))
    machine = store["machine"]
    lines = [TABLE_BEGIN,
             f"Expected time of one paper-protocol run, event-driven engine, on {machine['cpu']} "
             f"({machine['cores']} cores), from `benchmarks/estimates.json` ({machine['date']}, commit "
             f"{machine['commit']}); \"measured\": the phases of a finished run of that model, input size, "
             f"liquid and batch, else `bench` figures (bench liquids fire faster than trained ones, so those "
             f"are upper bounds). Regenerate with `python benchmarks/estimates.py measure` and `write`.",
             "",
             "| model | dataset | liquid | batch | init | spike counts | readout | total | from |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (model, dataset, dims, batch), phases, source in rows:
        init = duration(phases["init"]) if phases["init"] else "—"
        lines.append(f"| {model} | {DATASETS[dataset].title} | {dims} | {batch} | {init} | "
                     f"{duration(phases['spike_counts'])} | {duration(phases['readout'])} | "
                     f"**{duration(sum(phases.values()))}** | {source} |")
    lines.append(TABLE_END)
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# The commands
# ----------------------------------------------------------------------------------------------

def _load() -> dict:
    if not STORE.is_file():
        raise SystemExit(f"estimates.py: {STORE} does not exist yet; run `python benchmarks/estimates.py measure`.")
    return json.loads(STORE.read_text())


def _save(store: dict) -> None:
    STORE.write_text(json.dumps(store, indent=1, sort_keys=True) + "\n")


def _machine() -> dict:
    cpu = platform.processor() or "CPU"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    return {"cpu": cpu, "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "commit": commit}


def measure(repeats: int) -> None:
    """Every bench case and readout size the sweep files need, on this machine, into the store (its
    measured runs are kept)."""
    from lsm_core.analysis.readout import time_epochs
    from lsm_core.cli.bench import run_bench
    from lsm_core.model.network import parse_dims

    cases = []
    for path in estimated_sweeps():
        for config in sweep_configs(path):
            for case in needed_cases(config):
                if case not in cases:
                    cases.append(case)
    old = json.loads(STORE.read_text()) if STORE.is_file() else {}
    records = []
    for number, (kind, case) in enumerate(cases, 1):
        start = time.perf_counter()
        if kind == "readout":
            result = time_epochs(n_features=case["n_features"], batch_size=case["batch_size"], epochs=10)
            record = {"kind": kind, **case, "per_epoch_s": round(result["per_epoch_s"], 4)}
        else:
            result = run_bench(case["rule"], kind, parse_dims(case["dims"]), case["batch"], case["steps"],
                               case["n_input"], repeats, engine="events")
            record = {"kind": kind, **case, "sample_ms_per_s": result["sample_ms_per_s"],
                      "mean_rate_hz": result["mean_rate_hz"]}
        records.append(record)
        print(f"[{number}/{len(cases)}] {record} ({time.perf_counter() - start:.0f} s)", flush=True)
    _save({"machine": _machine(), "bench": records, "runs": old.get("runs", [])})


def add_run(folder: pathlib.Path) -> None:
    """A finished run's phase times (timings.json) under its key (params.json) into the store."""
    params = json.loads((folder / "params.json").read_text())
    timings = json.loads((folder / "timings.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    config = params["run"]["config"]
    entry = {"model": config["model"], "n_input": DATASETS[config["dataset"]].n_input,
             "dims": format_dims(tuple(config["dims"])), "batch": config["batch_size"],
             "version": config["version"], "dataset": config["dataset"],
             "phases": {"init": timings.get("init", 0.0),
                        "spike_counts": sum(v for k, v in timings.items() if k.startswith("spike_counts")),
                        "readout": timings.get("readout", 0.0)},
             "test_acc_at_best": summary["test_acc_at_best"]}
    store = _load()
    store["runs"] = [run for run in store.get("runs", []) if run.get("version") != entry["version"]] + [entry]
    _save(store)
    print(json.dumps(entry))


def write(check: bool) -> int:
    """Rewrite the sweep files' lines and the README's table; with `check`, only say what differs."""
    store = _load()
    changed = []
    for path in estimated_sweeps():
        text = path.read_text()
        line = sweep_line(path, store)
        new = re.sub(rf"^{re.escape(LINE_PREFIX)}.*$", lambda _: line, text, count=1, flags=re.M)
        if new != text:
            changed.append(path)
            if not check:
                path.write_text(new)
    text = new = README.read_text()
    for first, last, block in ((TABLE_BEGIN, TABLE_END, readme_table(store)),
                               (SWEEPS_BEGIN, SWEEPS_END, sweep_table(store))):
        begin, end = new.find(first), new.find(last)
        if begin < 0 or end < 0:
            raise SystemExit(f"estimates.py: {README.name} has no markers {first!r} ... {last!r}.")
        new = new[:begin] + block + new[end + len(last):]
    if new != text:
        changed.append(README)
        if not check:
            README.write_text(new)
    for path in changed:
        print(f"{'differs' if check else 'written'}: {path.relative_to(REPO)}")
    return 1 if check and changed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    measure_parser = commands.add_parser("measure", help="bench every case the sweeps need, on this machine")
    measure_parser.add_argument("--repeats", type=int, default=2)
    add = commands.add_parser("add-run", help="a finished run folder's phase times")
    add.add_argument("folder", type=pathlib.Path)
    write_parser = commands.add_parser("write", help="the sweep files' lines and the README's table")
    write_parser.add_argument("--check", action="store_true", help="change nothing; exit 1 where a file differs")
    args = parser.parse_args(argv)
    if args.command == "measure":
        measure(args.repeats)
        return 0
    if args.command == "add-run":
        add_run(args.folder)
        return 0
    return write(args.check)


if __name__ == "__main__":
    sys.exit(main())
