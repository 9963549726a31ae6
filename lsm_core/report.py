"""Reading run folders back (SPEC 5) and the `python -m lsm_core report` sub-command.

`collect_run(version, output_root)` turns one `ver_<VERSION>/` folder into a flat record: its status
(complete, or how far an unfinished run got), the result the paper reports (test accuracy at the epoch of
best validation accuracy), the best validation accuracy, the final training accuracy, the model, dataset
(marked when simulated), liquid size, prompted scalars and wall times per phase (timings.json).
`format_table` / `format_csv` print several records; `plot_validation_curves` draws their validation
accuracy against the epoch.  Reading a run folder back (`open_run`, `run_config`, `load_run_network`)
lives in `runfolder.py`, shared with the other analysis tools (`branching`, `kernel-quality`).

Nothing here imports TensorFlow, so a report takes well under a second per run.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lsm_core.config import RunConfig
from lsm_core.errors import UserError
from lsm_core.runfolder import read_history_csv, run_config, run_folder_path
from lsm_core.storage import read_json_file

__all__ = [
    "RunRecord",
    "collect_run",
    "format_csv",
    "format_table",
    "is_simulated",
    "parse_version",
    "parse_versions",
    "plot_validation_curves",
    "report_command",
]

SPLITS = ("valid", "test", "train")
PHASES = ("init", "spike_counts", "readout")       # wall-time columns; spike_counts sums the splits


# ----------------------------------------------------------------------------------------------
# Run folders
# ----------------------------------------------------------------------------------------------

def is_simulated(params) -> bool:
    """True when params.json marks the data as simulated: a truthy value under any key containing
    "simulated" (e.g. `dataset_simulated`), or a string containing "simulated" under a key containing
    "dataset" (e.g. a dataset name "nmnist-simulated"), at any depth."""
    if isinstance(params, dict):
        for key, value in params.items():
            key = str(key).lower()
            if "simulated" in key and not isinstance(value, (dict, list)) and value:
                return True
            if "dataset" in key and isinstance(value, str) and "simulated" in value.lower():
                return True
            if is_simulated(value):
                return True
    elif isinstance(params, list):
        return any(is_simulated(value) for value in params)
    return False


def _history(path: Path) -> list:
    """(epoch, train_acc, valid_acc, test_acc) rows of history.csv; [] when missing or unreadable."""
    try:
        rows = read_history_csv(path)
    except (OSError, ValueError, KeyError):
        return []
    return [(row["epoch"], row["train_acc"], row["valid_acc"], row["test_acc"]) for row in rows]


# ----------------------------------------------------------------------------------------------
# One run -> one record
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class RunRecord:
    """One row of the report.  Accuracies are fractions in [0, 1]; None where not known (yet)."""

    version: int
    status: str                       # "complete", "missing", "init 40%", "spike counts 10%", "readout 12/200", ...
    model: str = ""
    dataset: str = ""
    simulated: bool = False
    liquid: str = ""                  # e.g. "10x10x10"
    n_res: int | None = None
    scalars: dict = dataclasses.field(default_factory=dict)
    test_acc_at_best: float | None = None
    best_epoch: int | None = None
    best_valid_acc: float | None = None
    final_train_acc: float | None = None
    epochs: int = 0                   # readout epochs in history.csv
    readout_epochs: int | None = None   # epochs asked for
    times_s: dict = dataclasses.field(default_factory=dict)   # PHASES + "total"
    history: list = dataclasses.field(default_factory=list, repr=False)   # (epoch, train, valid, test)

    @property
    def dataset_label(self) -> str:
        return f"{self.dataset} (simulated)" if self.simulated and self.dataset else self.dataset

    @property
    def label(self) -> str:
        parts = [f"ver_{self.version}", self.model, self.dataset_label, self.liquid]
        parts += [f"{k}={v}" for k, v in self.scalars.items()]
        return " ".join(p for p in parts if p)


def _phase_times(timings) -> dict:
    if not isinstance(timings, dict):
        return {}
    values = {k: float(v) for k, v in timings.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out = {"init": values.get("init"),
           "spike_counts": sum(v for k, v in values.items() if k.startswith("spike_counts")) or None,
           "readout": values.get("readout")}
    out = {k: v for k, v in out.items() if v is not None}
    if values:
        out["total"] = sum(values.values())
    return out


def _status(folder: Path, config: RunConfig, summary, epochs: int) -> str:
    """Where an unfinished run stands, from the files it has written so far."""
    if config.model_spec.has_init_phase and not (folder / "W_INI.npz").exists():
        done = 0
        try:
            with np.load(folder / "init_state.npz", allow_pickle=False) as state:
                done = int(state["done"])
        except (OSError, ValueError, KeyError):
            pass
        return f"init {100.0 * done / max(config.init_samples, 1):.0f}%"
    sizes = config.split_sizes
    if not all((folder / f"counts_{s}.npz").exists() for s in SPLITS):
        block = max(config.batch_size * config.batches_per_block, 1)
        done = sum(sizes[s] if (folder / f"counts_{s}.npz").exists()
                   else block * len(list((folder / "blocks").glob(f"{s}_block_*.npz"))) for s in SPLITS)
        return f"spike counts {100.0 * done / max(sum(sizes.values()), 1):.0f}%"
    if epochs < config.readout_epochs:
        return f"readout {epochs}/{config.readout_epochs}"
    if not isinstance(summary, dict) or not summary.get("complete"):
        return "finishing"                  # readout done; readout.npz, plots or summary.json not yet written
    return "complete"


def collect_run(version: int, output_root=None) -> RunRecord:
    """The report record of run VERSION; never raises for missing or unfinished runs (see `status`)."""
    folder = run_folder_path(version, output_root)
    if not folder.is_dir():
        return RunRecord(version, "missing")
    params = read_json_file(folder / "params.json")
    if not isinstance(params, dict):
        return RunRecord(version, "no params.json")
    try:
        config = run_config(params)
    except (UserError, TypeError, ValueError):
        return RunRecord(version, "unreadable params.json")
    summary = read_json_file(folder / "summary.json")
    history = _history(folder / "history.csv")
    record = RunRecord(version, "", model=config.model, dataset=config.dataset,
                       simulated=is_simulated(params) or is_simulated(summary),
                       liquid="x".join(str(int(d)) for d in config.dims),
                       n_res=int(np.prod(config.dims)) if all(config.dims) else None,
                       scalars=dict(config.scalars), epochs=len(history), readout_epochs=config.readout_epochs,
                       times_s=_phase_times(read_json_file(folder / "timings.json")), history=history)
    if isinstance(summary, dict) and isinstance(summary.get("n_res"), int):
        record.n_res = summary["n_res"]
    if history:
        valid = [row[2] for row in history]
        best = max(range(len(history)), key=lambda k: (valid[k] if not math.isnan(valid[k]) else -1.0, -k))
        record.best_epoch, _, record.best_valid_acc, record.test_acc_at_best = history[best]
        record.final_train_acc = history[-1][1]
    record.status = _status(folder, config, summary, len(history))
    return record


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------

def _scalar_names(records: Sequence[RunRecord]) -> list:
    names = []
    for record in records:
        names += [name for name in record.scalars if name not in names]
    return names


def _fmt_time(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    minutes = whole // 60
    if minutes < 60:
        return f"{minutes}m{whole % 60:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _fmt_pct(value) -> str:
    return "-" if value is None or math.isnan(value) else f"{100.0 * value:.2f}"


def _fmt(value) -> str:
    return "-" if value is None else str(value)


def format_table(records: Sequence[RunRecord]) -> str:
    """An aligned text table, one line per run; accuracies in %, times as 12.3s / 4m05s / 2h10m."""
    scalars = _scalar_names(records)
    header = (["VERSION", "status", "model", "dataset", "liquid", "N_res"] + scalars
              + ["test%@best", "best_epoch", "best_valid%", "final_train%", "epochs"]
              + [f"{p}_time" for p in PHASES] + ["total_time"])
    lines = [header]
    for r in records:
        epochs = f"{r.epochs}/{r.readout_epochs}" if r.readout_epochs is not None else "-"
        lines.append([str(r.version), r.status, r.model or "-", r.dataset_label or "-", r.liquid or "-",
                      _fmt(r.n_res)] + [_fmt(r.scalars.get(name)) for name in scalars]
                     + [_fmt_pct(r.test_acc_at_best), _fmt(r.best_epoch), _fmt_pct(r.best_valid_acc),
                        _fmt_pct(r.final_train_acc), epochs]
                     + [_fmt_time(r.times_s.get(p)) for p in PHASES] + [_fmt_time(r.times_s.get("total"))])
    widths = [max(len(line[k]) for line in lines) for k in range(len(header))]
    left = {1, 2, 3}                        # text columns; numbers are right-aligned
    out = ["  ".join(cell.ljust(w) if k in left else cell.rjust(w) for k, (cell, w) in enumerate(zip(line, widths)))
           .rstrip() for line in lines]
    return "\n".join(out)


def format_csv(records: Sequence[RunRecord]) -> str:
    """CSV with a header line; accuracies as fractions, times in seconds, empty where not known."""
    scalars = _scalar_names(records)
    header = (["version", "status", "model", "dataset", "simulated", "liquid", "n_res"] + scalars
              + ["test_acc_at_best", "best_epoch", "best_valid_acc", "final_train_acc", "epochs",
                 "readout_epochs"] + [f"{p}_s" for p in PHASES] + ["total_s"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)

    def cell(value):
        return "" if value is None else value

    for r in records:
        times = [cell(None if r.times_s.get(p) is None else round(r.times_s[p], 3)) for p in PHASES + ("total",)]
        writer.writerow([r.version, r.status, r.model, r.dataset, int(r.simulated), r.liquid, cell(r.n_res)]
                        + [cell(r.scalars.get(name)) for name in scalars]
                        + [cell(r.test_acc_at_best), cell(r.best_epoch), cell(r.best_valid_acc),
                           cell(r.final_train_acc), r.epochs, cell(r.readout_epochs)] + times)
    return buffer.getvalue()


def plot_validation_curves(records: Sequence[RunRecord], path) -> Path:
    """Validation accuracy (%) against the epoch for every record with a history, on one figure
    (written atomically); each run's best validation epoch is marked."""
    from lsm_core import plots

    with plots._figure(path, figsize=(8, 4.8)) as fig:
        ax = fig.add_subplot(1, 1, 1)
        drawn = 0
        for r in records:
            if not r.history:
                continue
            epochs = np.array([row[0] for row in r.history], np.float64)
            valid = 100.0 * np.array([row[2] for row in r.history], np.float64)
            line, = ax.plot(epochs, valid, lw=1.2, marker="." if len(epochs) < 30 else None,
                            label=f"{r.label} (best {100.0 * r.best_valid_acc:.2f}% at {r.best_epoch})")
            ax.plot([r.best_epoch], [100.0 * r.best_valid_acc], "o", ms=7, mfc="none", color=line.get_color())
            drawn += 1
        if drawn:
            ax.legend(fontsize=8, loc="lower right")
        else:
            ax.text(0.5, 0.5, "no run has trained epochs yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
        ax.set_title("Validation accuracy")
    return Path(path)


# ----------------------------------------------------------------------------------------------
# Command
# ----------------------------------------------------------------------------------------------

def parse_version(text: str) -> int:
    """One VERSION argument -> int (a non-negative whole number); bad text is a UserError."""
    try:
        value = int(str(text).strip())
    except ValueError:
        value = -1
    if value < 0:
        raise UserError(f"bad VERSION {text!r}: give the run number, a non-negative whole number such as 12.")
    return value


def parse_versions(texts: Sequence[str]) -> list:
    """VERSION arguments -> ints in the order given, without repeats; "3-7" is the range 3, 4, ..., 7."""
    versions = []
    for text in texts:
        first, dash, last = str(text).strip().partition("-")
        if dash and first:
            lo, hi = parse_version(first), parse_version(last)
            if hi < lo:
                raise UserError(f"bad VERSION range {text!r}: the first number must not exceed the second.")
        else:
            lo = hi = parse_version(text)
        versions += [v for v in range(lo, hi + 1) if v not in versions]
    return versions


def report_command(argv) -> int:
    """`python -m lsm_core report VERSION [VERSION ...]`: results of runs as a table or CSV."""
    parser = argparse.ArgumentParser(
        prog="python -m lsm_core report",
        description="Results of one or several runs: test accuracy at the epoch of best validation accuracy, "
                    "that epoch, the best validation and final training accuracy, model, dataset, liquid, "
                    "prompted scalars and wall times per phase.  Unfinished or missing runs are listed with "
                    "their status.")
    parser.add_argument("versions", nargs="+", metavar="VERSION", help="run numbers; a range such as 12-15 "
                                                                       "stands for 12, 13, 14, 15")
    parser.add_argument("--output-root", metavar="DIR", default=None,
                        help="folder of the ver_<VERSION> run folders (default: the repository's train_data/)")
    parser.add_argument("--csv", action="store_true", help="print CSV instead of an aligned table")
    parser.add_argument("--plot", metavar="FILE", default=None,
                        help="also draw the validation-accuracy curves of the runs into FILE (e.g. curves.png)")
    args = parser.parse_args(list(argv))
    records = [collect_run(v, args.output_root) for v in parse_versions(args.versions)]
    print(format_csv(records) if args.csv else format_table(records), end="" if args.csv else "\n")
    if args.plot:
        try:
            path = plot_validation_curves(records, args.plot)
        except (OSError, ValueError) as exc:      # ValueError: a file suffix Matplotlib cannot write
            raise UserError(f"cannot write the plot {args.plot} ({getattr(exc, 'strerror', None) or exc}); "
                            f"choose a writable path ending in .png, .pdf or .svg.") from None
        print(f"validation curves: {path}", file=sys.stderr)
    return 0
