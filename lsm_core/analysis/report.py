"""Reading run folders back (docs/file-formats.md#the-run-folder) and the `python -m lsm_core report`
sub-command.

`collect_run(version, output_root)` turns one `ver_<VERSION>/` folder into a flat record: its status
(complete, or how far an unfinished run got), the result the paper reports (test accuracy at the epoch of
best validation accuracy), the best validation accuracy, the final training accuracy, the model, dataset
(marked when simulated), liquid size and number, prompted scalars, the mean test firing rate
(summary.json), the branching factor (branching.json) and wall times per phase (timings.json).
`format_runs` prints several records as text, Markdown or CSV; `plot_validation_curves` draws their
validation accuracy against the epoch.

Aggregation (`report --group-by`): `group_runs` gathers records into groups by model, dataset, liquid
size, liquid number and/or prompted scalars, optionally keeping per liquid only the run whose swept
scalar(s) gave the best validation accuracy (`--best-of`), and matches each group with the paper's
published numbers (`paper_results.py`); `format_groups` prints the groups' means and sample sds,
`plot_groups` draws accuracy against a swept scalar beside the paper's curve.  Reading a run folder back
(`open_run`, `run_config`, `load_run_network`) lives in `runs/folder.py`, shared with the other analysis
tools (`branching`, `kernel-quality`).

Nothing here imports TensorFlow, so a report takes well under a second per run.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from lsm_core.analysis import paper_results
from lsm_core.config import MODELS, RunConfig
from lsm_core.errors import UserError
from lsm_core.runs.checks import history_rows
from lsm_core.runs.folder import (
    MANIFEST_NAME,
    Manifest,
    parse_history_csv,
    parse_version,
    run_config,
    run_folder_path,
)
from lsm_core.runs.lock import STALE_AFTER_S, folder_owner
from lsm_core.storage import load_npz

__all__ = [
    "FORMATS",
    "GROUP_FIELDS",
    "Group",
    "RunRecord",
    "collect_run",
    "format_csv",
    "format_groups",
    "format_runs",
    "format_table",
    "group_runs",
    "is_simulated",
    "parse_best_of",
    "parse_group_keys",
    "parse_version",
    "parse_versions",
    "plot_groups",
    "plot_validation_curves",
    "report_command",
    "swept_scalar",
]

SPLITS = ("valid", "test", "train")
PHASES = ("init", "spike_counts", "readout")       # wall-time columns; spike_counts sums the splits
FORMATS = ("text", "md", "csv")
GROUP_FIELDS = ("model", "dataset", "n_res", "net_num")   # group keys besides the prompted scalars


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


def _history(text: str | None) -> list:
    """(epoch, train_acc, valid_acc, test_acc) rows of history.csv's text; [] when there is none.
    ValueError when the text is not a readout history."""
    if text is None:
        return []
    rows = parse_history_csv(text)
    history_rows(rows)
    return [(row["epoch"], row["train_acc"], row["valid_acc"], row["test_acc"]) for row in rows]


class _CheckedReader:
    """Reads a run folder's files for the report, checked against the run's manifest.json: the files
    the report uses in full (SHA-256 and format), every other recorded file by its size alone (cheap,
    and enough to see a file deleted or cut short).  `damaged` lists the files that failed."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.manifest = Manifest(folder / MANIFEST_NAME)
        self.damaged: list = []

    def read(self, name: str, parse):
        """parse(text) of file `name`, or None when it does not exist (and is not recorded) or is damaged."""
        return self._read(name, lambda path: parse(path.read_text(encoding="utf-8")))

    def read_npz(self, name: str, use):
        """use(arrays) of npz file `name`, or None when it does not exist (and is not recorded) or is damaged."""
        return self._read(name, lambda path: use(load_npz(path)))

    def _read(self, name: str, load):
        path = self.folder / name
        if self.manifest.problem(name, path):
            self.damaged.append(name)
            return None
        try:
            return load(path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, IndexError):
            self.damaged.append(name)
            return None

    def check_sizes(self) -> None:
        """Add every recorded file that is missing or has another size than its record."""
        self.damaged += [name for name in self.manifest.resized(self.folder) if name not in self.damaged]

    @property
    def status(self) -> str:
        return "damaged: " + ", ".join(self.damaged)


def _json_mapping(text: str) -> dict:
    content = json.loads(text)
    if not isinstance(content, dict):
        raise ValueError("not a JSON object")
    return content


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
    net_num: int | None = None        # the liquid: networks/Network_<NET_NUM>.npz
    scalars: dict = dataclasses.field(default_factory=dict)
    test_acc_at_best: float | None = None
    best_epoch: int | None = None
    best_valid_acc: float | None = None
    final_train_acc: float | None = None
    epochs: int = 0                   # readout epochs in history.csv
    readout_epochs: int | None = None   # epochs asked for
    times_s: dict = dataclasses.field(default_factory=dict)   # PHASES + "total"
    rate_hz: float | None = None      # mean firing rate over the test split (summary.json), Hz
    branching: float | None = None    # branching factor (branching.json), None: not computed
    readouts: dict = dataclasses.field(default_factory=dict)   # added readouts: "ridge:counts" -> test acc at best
    history: list = dataclasses.field(default_factory=list, repr=False)   # (epoch, train, valid, test)

    @property
    def complete(self) -> bool:
        """Finished (summary.json says so); only complete runs enter a group's statistics."""
        return self.status == "complete"

    @property
    def dataset_label(self) -> str:
        return f"{self.dataset} (simulated)" if self.simulated and self.dataset else self.dataset

    @property
    def label(self) -> str:
        parts = [f"ver_{self.version}", self.model, self.dataset_label, self.liquid]
        parts += [f"{k}={v}" for k, v in self.scalars.items()]
        return " ".join(p for p in parts if p)


def _finite(value) -> float | None:
    """`value` as a float when it is a finite number, else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


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


def _status(files: _CheckedReader, config: RunConfig, summary, epochs: int) -> str:
    """Where an unfinished run stands, from the files it has written so far (a damaged init checkpoint is
    added to `files.damaged`)."""
    folder = files.folder
    if config.model_spec.has_init_phase and not (folder / "W_INI.npz").exists():
        done = files.read_npz("init_state.npz", lambda arrays: int(arrays["done"])) or 0
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


def collect_run(version: int, output_root=None, stale_after: float = STALE_AFTER_S) -> RunRecord:
    """The report record of run VERSION; never raises for missing or unfinished runs (see `status`).

    A run that a live process holds (its lock, runs/lock.py) has the status "running (host, PID): ..."
    followed by how far it got.
    """
    record = _collect_run(version, output_root)
    owner = folder_owner(run_folder_path(version, output_root), stale_after) if record.status != "complete" else None
    if owner is not None:
        progress = "starting" if record.status in ("missing", "no params.json") else record.status
        record.status = f"running ({owner.host}, {owner.pid}): {progress}"
    return record


def _collect_run(version: int, output_root=None) -> RunRecord:
    folder = run_folder_path(version, output_root)
    if not folder.is_dir():
        return RunRecord(version, "missing")
    files = _CheckedReader(folder)
    params = files.read("params.json", _json_mapping)
    if files.damaged:
        return RunRecord(version, files.status)
    if params is None:
        return RunRecord(version, "no params.json")
    try:
        config = run_config(params)
    except (UserError, TypeError, ValueError):
        return RunRecord(version, "unreadable params.json")
    summary = files.read("summary.json", _json_mapping)
    history = files.read("history.csv", _history) or []
    timings = files.read("timings.json", _json_mapping)
    branching = files.read("branching.json", _json_mapping)
    files.check_sizes()
    record = RunRecord(version, "", model=config.model, dataset=config.dataset,
                       simulated=is_simulated(params) or is_simulated(summary),
                       liquid="x".join(str(int(d)) for d in config.dims), net_num=config.net_num,
                       n_res=int(np.prod(config.dims)) if all(config.dims) else None,
                       scalars=dict(config.scalars), epochs=len(history), readout_epochs=config.readout_epochs,
                       times_s=_phase_times(timings), history=history)
    if isinstance(summary, dict):
        if isinstance(summary.get("n_res"), int):
            record.n_res = summary["n_res"]
        rates = summary.get("mean_rate_hz")
        record.rate_hz = _finite(rates.get("test")) if isinstance(rates, dict) else None
        record.readouts = _added_readouts(summary.get("readouts"))
    record.branching = _finite(branching.get("mean")) if isinstance(branching, dict) else None
    if history:
        valid = [row[2] for row in history]
        best = max(range(len(history)), key=lambda k: (valid[k] if not math.isnan(valid[k]) else -1.0, -k))
        record.best_epoch, _, record.best_valid_acc, record.test_acc_at_best = history[best]
        record.final_train_acc = history[-1][1]
    status = _status(files, config, summary, len(history))
    record.status = files.status if files.damaged else status
    return record


# ----------------------------------------------------------------------------------------------
# Output: one table renderer for text, Markdown and CSV
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Column:
    """One column of a table: `title` heads it in text and Markdown, `name` in CSV (None: not in that format);
    `text(row)` gives the cell shown to people, `value(row)` the CSV cell (None: empty)."""

    title: str | None
    name: str | None
    text: Callable | None = None
    value: Callable | None = None
    left: bool = False                # text column (left-aligned); numbers are right-aligned


def _render(columns: Sequence[_Column], rows: Sequence, fmt: str, notes: Sequence[str] = ()) -> str:
    """`rows` as an aligned text table, a GitHub pipe table (`md`) or CSV; `notes` are lines under a text or
    Markdown table (CSV carries what they say in its columns).  Text and Markdown end without a newline,
    CSV with one."""
    if fmt == "csv":
        shown = [c for c in columns if c.name is not None]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([c.name for c in shown])
        for row in rows:
            writer.writerow(["" if (v := c.value(row)) is None else v for c in shown])
        return buffer.getvalue()
    shown = [c for c in columns if c.title is not None]
    lines = [[c.title for c in shown]] + [[c.text(row) for c in shown] for row in rows]
    if fmt == "md":
        def md_line(cells):
            return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

        out = [md_line(lines[0]), "|" + "|".join(":---" if c.left else "---:" for c in shown) + "|"]
        out += [md_line(line) for line in lines[1:]]
        return "\n".join(out + ([""] + list(notes) if notes else []))
    widths = [max(len(line[k]) for line in lines) for k in range(len(shown))]
    out = ["  ".join(cell.ljust(w) if c.left else cell.rjust(w) for c, cell, w in zip(shown, line, widths))
           .rstrip() for line in lines]
    return "\n".join(out + list(notes))


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


def _fmt_num(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _seconds(value):
    return None if value is None else round(float(value), 3)


def _added_readouts(entries) -> dict:
    """summary.json's `readouts` other than the run's own, as {"ridge:counts": test accuracy at best}
    (`readouts.readout_label`)."""
    from lsm_core.analysis.readouts import readout_label

    found = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("readout"), str) \
                or (entry["readout"] == "paper" and entry.get("features") == "counts"):
            continue
        label = readout_label(entry["readout"], str(entry.get("features")), str(entry.get("targets", "")))
        found[label] = _finite(entry.get("test_acc_at_best"))
    return found


def _run_columns(records: Sequence[RunRecord]) -> list:
    """The per-run table: text headers as before, CSV names with units (fractions, seconds)."""
    scalar_columns = [_Column(name, name, lambda r, n=name: _fmt(r.scalars.get(n)), lambda r, n=name: r.scalars.get(n))
                      for name in _scalar_names(records)]
    time_columns = [_Column(f"{p}_time", f"{p}_s", lambda r, p=p: _fmt_time(r.times_s.get(p)),
                            lambda r, p=p: _seconds(r.times_s.get(p))) for p in PHASES + ("total",)]
    time_columns[-1] = dataclasses.replace(time_columns[-1], title="total_time")
    labels = sorted({label for r in records for label in r.readouts})
    readout_columns = [_Column(f"{label}%", "test_acc_" + "".join(c if c.isalnum() else "_" for c in label),
                               lambda r, k=label: _fmt_pct(r.readouts.get(k)), lambda r, k=label: r.readouts.get(k))
                       for label in labels]
    return [
        _Column("VERSION", "version", lambda r: str(r.version), lambda r: r.version),
        _Column("status", "status", lambda r: r.status, lambda r: r.status, left=True),
        _Column("model", "model", lambda r: r.model or "-", lambda r: r.model, left=True),
        _Column("dataset", "dataset", lambda r: r.dataset_label or "-", lambda r: r.dataset, left=True),
        _Column(None, "simulated", value=lambda r: int(r.simulated)),
        _Column("liquid", "liquid", lambda r: r.liquid or "-", lambda r: r.liquid),
        _Column("N_res", "n_res", lambda r: _fmt(r.n_res), lambda r: r.n_res),
        *scalar_columns,
        _Column("test%@best", "test_acc_at_best", lambda r: _fmt_pct(r.test_acc_at_best), lambda r: r.test_acc_at_best),
        _Column("best_epoch", "best_epoch", lambda r: _fmt(r.best_epoch), lambda r: r.best_epoch),
        _Column("best_valid%", "best_valid_acc", lambda r: _fmt_pct(r.best_valid_acc), lambda r: r.best_valid_acc),
        *readout_columns,
        _Column("final_train%", "final_train_acc", lambda r: _fmt_pct(r.final_train_acc),
                lambda r: r.final_train_acc),
        _Column("epochs", "epochs", lambda r: f"{r.epochs}/{r.readout_epochs}" if r.readout_epochs is not None else "-",
                lambda r: r.epochs),
        _Column(None, "readout_epochs", value=lambda r: r.readout_epochs),
        *time_columns,
        _Column("net_num", "net_num", lambda r: _fmt(r.net_num), lambda r: r.net_num),
        _Column("rate_Hz", "rate_hz", lambda r: _fmt_num(r.rate_hz, 2), lambda r: r.rate_hz),
        _Column("branching", "branching", lambda r: _fmt_num(r.branching, 3), lambda r: r.branching),
    ]


def format_runs(records: Sequence[RunRecord], fmt: str = "text") -> str:
    """One line per run as text (aligned; accuracies in %, times as 12.3s / 4m05s / 2h10m), Markdown or CSV
    (accuracies as fractions, times in seconds, empty where not known)."""
    return _render(_run_columns(records), records, fmt)


def format_table(records: Sequence[RunRecord]) -> str:
    """`format_runs(records, "text")`."""
    return format_runs(records, "text")


def format_csv(records: Sequence[RunRecord]) -> str:
    """`format_runs(records, "csv")`."""
    return format_runs(records, "csv")


def plot_validation_curves(records: Sequence[RunRecord], path) -> Path:
    """Validation accuracy (%) against the epoch for every record with a history, on one figure
    (written atomically); each run's best validation epoch is marked."""
    from lsm_core.analysis import plots

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
# Groups of runs (--group-by, --best-of, --paper)
# ----------------------------------------------------------------------------------------------

def _known_scalars(records: Sequence[RunRecord]) -> list:
    """Every prompted scalar name: the models' prompts, then any other name the runs have."""
    names = []
    for spec in MODELS.values():
        names += [p.name for p in spec.prompts if p.name not in names]
    return names + [name for name in _scalar_names(records) if name not in names]


def _split_names(text) -> list:
    names = []
    for part in str(text or "").split(","):
        if part.strip() and part.strip() not in names:
            names.append(part.strip())
    return names


def parse_group_keys(text: str, records: Sequence[RunRecord] = ()) -> list:
    """--group-by KEYS -> the key names in order; an unknown or missing key is a UserError naming the allowed ones."""
    allowed = list(GROUP_FIELDS) + _known_scalars(records)
    keys = _split_names(text)
    unknown = [key for key in keys if key not in allowed]
    if unknown or not keys:
        raise UserError(f"--group-by: unknown key {', '.join(repr(k) for k in unknown) or '(none given)'}; "
                        f"group by a comma-separated list of: {', '.join(allowed)}.")
    return keys


def parse_best_of(text, group_keys: Sequence[str], records: Sequence[RunRecord] = ()) -> list:
    """--best-of SCALARS -> scalar names; a name that is not a prompted scalar, or is also a group key, is a
    UserError."""
    names = _split_names(text)
    allowed = _known_scalars(records)
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise UserError(f"--best-of: {', '.join(repr(n) for n in unknown)} is not a prompted scalar; choose among: "
                        f"{', '.join(allowed)}.")
    clash = [name for name in names if name in group_keys]
    if clash:
        raise UserError(f"--best-of {', '.join(clash)} is also in --group-by: a scalar is either a group key "
                        f"(one row per value) or chosen per liquid (--best-of), not both.")
    return names


def swept_scalar(group_keys: Sequence[str]) -> str:
    """The one scalar among the group keys (the x axis of `plot_groups`); otherwise a UserError."""
    scalars = [key for key in group_keys if key not in GROUP_FIELDS]
    if len(scalars) != 1:
        raise UserError(f"--plot with --group-by draws accuracy against one swept scalar, so --group-by needs "
                        f"exactly one prompted scalar among its keys (it has "
                        f"{', '.join(scalars) if scalars else 'none'}); e.g. --group-by model,dataset,n_res,"
                        f"ASTRO_W_SCALING.")
    return scalars[0]


def _key_value(record: RunRecord, key: str):
    if key in GROUP_FIELDS:
        return getattr(record, key)
    return record.scalars.get(key)


def _norm(value):
    """A group-key value with float noise removed (0.1 + 0.2 and 0.3 fall in one group)."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.12g}")
    return value


def _order(value) -> tuple:
    """Sort key of a group-key value: numbers, then text, then missing."""
    if value is None:
        return (2, 0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0, str(value))


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _common(values):
    """The one value all of `values` share (floats within a tolerance), else None."""
    values = list(values)
    if values and values[0] is not None and all(_same(values[0], v) for v in values[1:]):
        return values[0]
    return None


@dataclasses.dataclass(frozen=True)
class _Stat:
    """Mean, sample sd (ddof=1; None for n < 2) and n of the known values."""

    mean: float | None
    sd: float | None
    n: int

    @classmethod
    def of(cls, values) -> _Stat:
        values = np.array([v for v in values if v is not None and math.isfinite(v)], np.float64)
        if not values.size:
            return cls(None, None, 0)
        return cls(float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else None, int(values.size))


@dataclasses.dataclass
class Group:
    """Runs sharing the values of the group keys (and real or simulated data).

    runs: every run of the group in VERSION order; counted: the complete runs that enter the statistics
    (with --best-of only the best-validation run per liquid); best_of: the scalars chosen per liquid;
    paper: the matching published row (paper_results), None when there is none.
    """

    key: dict
    simulated: bool
    runs: list
    counted: list
    best_of: tuple = ()
    paper: paper_results.PublishedResult | None = None

    @property
    def incomplete(self) -> int:
        return sum(not r.complete for r in self.runs)

    @property
    def test_acc(self) -> _Stat:
        return _Stat.of(r.test_acc_at_best for r in self.counted)

    @property
    def valid_acc(self) -> _Stat:
        return _Stat.of(r.best_valid_acc for r in self.counted)

    @property
    def rate_hz(self) -> _Stat:
        return _Stat.of(r.rate_hz for r in self.counted)

    @property
    def branching(self) -> _Stat:
        return _Stat.of(r.branching for r in self.counted)

    def time_s(self, phase: str) -> float | None:
        """Mean wall time of `phase` (one of PHASES or "total") over the counted runs that have it."""
        return _Stat.of(r.times_s.get(phase) for r in self.counted).mean

    @property
    def picked(self) -> str:
        """The --best-of values kept, most frequent first: "1.0 ×4, 0.9 ×3" ("37/23 ×6" for two scalars)."""
        if not self.best_of:
            return ""
        counts = Counter("/".join(_fmt(r.scalars.get(name)) for name in self.best_of) for r in self.counted)
        return ", ".join(f"{value} ×{n}" for value, n in counts.most_common())

    @property
    def paper_diff_sd(self) -> float | None:
        """(our mean - published mean) / published sd, accuracies in %; None without both or with sd 0."""
        ours = self.test_acc.mean
        if self.paper is None or ours is None or not self.paper.acc_sd > 0:
            return None
        return (100.0 * ours - self.paper.acc_mean) / self.paper.acc_sd


def group_runs(records: Sequence[RunRecord], keys: Sequence[str], best_of: Sequence[str] = ()) -> list:
    """Records -> Groups sorted by their key values.  Runs on simulated data never share a group with real-data
    runs.  Records without a readable run folder (no model) are left out.  With `best_of`, the counted runs of a
    group are, per liquid (net_num), the complete run with the best validation accuracy (ties: the earlier
    VERSION); without, all its complete runs."""
    by_key = {}
    for record in sorted((r for r in records if r.model), key=lambda r: r.version):
        identity = tuple(_norm(_key_value(record, key)) for key in keys) + (record.simulated,)
        by_key.setdefault(identity, []).append(record)
    groups = []
    for identity in sorted(by_key, key=lambda ident: tuple(_order(v) for v in ident)):
        runs = by_key[identity]
        complete = [r for r in runs if r.complete and r.test_acc_at_best is not None]
        chosen = [name for name in best_of if any(name in r.scalars for r in runs)]
        if chosen:
            best = {}
            for r in complete:                      # VERSION order: a tie keeps the earlier VERSION
                valid = r.best_valid_acc if r.best_valid_acc is not None and not math.isnan(r.best_valid_acc) \
                    else -math.inf
                if r.net_num not in best or valid > best[r.net_num][0]:
                    best[r.net_num] = (valid, r)
            complete = sorted((r for _, r in best.values()), key=lambda r: r.version)
        group = Group({key: _key_value(runs[0], key) for key in keys}, identity[-1], runs, complete, tuple(chosen))
        group.paper = _published(group)
        groups.append(group)
    return groups


def _published(group: Group):
    """The paper row for a group: model, dataset and n_res in common, the scalars with one value in all the
    group's counted runs (all its runs when none is counted yet), and the scalars chosen per liquid."""
    runs = group.counted or group.runs
    model, dataset, n_res = (_common(getattr(r, name) for r in runs) for name in ("model", "dataset", "n_res"))
    if model is None or dataset is None or n_res is None:
        return None
    fixed = {}
    for name in _scalar_names(runs):
        if name not in group.best_of and all(name in r.scalars for r in runs):
            value = _common(r.scalars[name] for r in runs)
            if value is not None:
                fixed[name] = value
    return paper_results.match(model, dataset, n_res, fixed, group.best_of)


def _fmt_stat(stat: _Stat, scale: float = 1.0, digits: int = 2, show_n: bool = False) -> str:
    """ "95.96 ± 0.13", "95.80 ± -" for n = 1, "-" for n = 0; " (n=3)" added with show_n."""
    if stat.mean is None:
        return "-"
    sd = "-" if stat.sd is None else f"{scale * stat.sd:.{digits}f}"
    return f"{scale * stat.mean:.{digits}f} ± {sd}" + (f" (n={stat.n})" if show_n else "")


def _fraction(value):
    """A CSV accuracy or rate: rounded to drop float noise, None stays None."""
    return None if value is None else round(float(value), 10)


def _group_columns(groups: Sequence[Group], keys: Sequence[str], paper: bool) -> list:
    """The grouped table: text and Markdown cells in %, CSV columns as fractions and seconds."""
    def dataset(g):                     # simulated data stays marked, in CSV too
        return f"{g.key['dataset']} (simulated)" if g.simulated else g.key["dataset"]

    def key_column(key):
        if key == "dataset":
            return _Column("dataset", "dataset", lambda g: dataset(g) or "-", dataset, left=True)
        return _Column(key, key, lambda g: _fmt(g.key[key]), lambda g: g.key[key], left=(key == "model"))

    def stat_columns(title, name, attr, scale, digits):
        return [_Column(title, None, lambda g: _fmt_stat(getattr(g, attr), scale, digits)),
                _Column(None, f"{name}_mean", value=lambda g: _fraction(getattr(g, attr).mean)),
                _Column(None, f"{name}_sd", value=lambda g: _fraction(getattr(g, attr).sd))]

    columns = [key_column(key) for key in keys]
    if "dataset" not in keys and any(g.simulated for g in groups):
        columns.append(_Column("data", None, lambda g: "simulated" if g.simulated else "real", left=True))
    columns += [
        _Column(None, "simulated", value=lambda g: int(g.simulated)),
        _Column("n", "n", lambda g: str(len(g.counted)), lambda g: len(g.counted)),
        _Column("incomplete", "incomplete", lambda g: str(g.incomplete), lambda g: g.incomplete),
        _Column(None, "versions", value=lambda g: " ".join(str(r.version) for r in g.counted)),
        *stat_columns("test%@best", "test_acc", "test_acc", 100.0, 2),
        *stat_columns("best_valid%", "valid_acc", "valid_acc", 100.0, 2),
        *stat_columns("rate_Hz", "rate_hz", "rate_hz", 1.0, 2),
        _Column("branching", None, lambda g: _fmt_stat(g.branching, 1.0, 3, show_n=g.branching.n > 0)),
        _Column(None, "branching_mean", value=lambda g: _fraction(g.branching.mean)),
        _Column(None, "branching_sd", value=lambda g: _fraction(g.branching.sd)),
        _Column(None, "branching_n", value=lambda g: g.branching.n),
        _Column("wall", "wall_s_mean", lambda g: _fmt_time(g.time_s("total")), lambda g: _seconds(g.time_s("total"))),
        *[_Column(p, f"{p}_s_mean", lambda g, p=p: _fmt_time(g.time_s(p)), lambda g, p=p: _seconds(g.time_s(p)))
          for p in PHASES],
    ]
    if any(g.best_of for g in groups):
        columns += [
            _Column("picked", None, lambda g: g.picked or "-", left=True),
            _Column(None, "selection", value=lambda g: (
                f"{', '.join(g.best_of)} chosen per liquid by validation accuracy (the paper chose by test "
                f"accuracy): {g.picked}") if g.best_of else "")]
    if paper:
        def paper_acc(g):
            if g.paper is None:
                return "-"
            n = "?" if g.paper.n is None else g.paper.n
            return f"{g.paper.acc_mean:.2f} ± {g.paper.acc_sd:.2f} (n={n})" + (" †" if g.simulated else "")

        def paper_value(attr, scale=1.0):
            return lambda g: None if g.paper is None or getattr(g.paper, attr) is None \
                else _fraction(scale * getattr(g.paper, attr))

        columns += [
            _Column("paper test%", None, paper_acc),
            _Column(None, "paper_test_acc_mean", value=paper_value("acc_mean", 0.01)),
            _Column(None, "paper_test_acc_sd", value=paper_value("acc_sd", 0.01)),
            _Column(None, "paper_n", value=lambda g: None if g.paper is None else g.paper.n),
            _Column("Δ/sd_paper", "paper_diff_sd",
                    lambda g: "-" if g.paper_diff_sd is None else f"{g.paper_diff_sd:+.2f}",
                    lambda g: None if g.paper_diff_sd is None else round(g.paper_diff_sd, 4)),
            _Column("paper branching", None, lambda g: "-" if g.paper is None or g.paper.branching_mean is None
                    else f"{g.paper.branching_mean:.3f} ± {g.paper.branching_sd:.3f}"),
            _Column(None, "paper_branching_mean", value=paper_value("branching_mean")),
            _Column(None, "paper_branching_sd", value=paper_value("branching_sd")),
            _Column(None, "paper_row", value=lambda g: None if g.paper is None else g.paper.label),
            _Column(None, "paper_note", value=lambda g: None if g.paper is None else "; ".join(filter(None, (
                "published on the real recordings; this group ran on simulated data" if g.simulated else "",
                g.paper.note))) or None),
        ]
    return columns


def _group_notes(groups: Sequence[Group], paper: bool, left_out: Sequence[RunRecord]) -> list:
    """The lines under a grouped text or Markdown table."""
    notes = []
    best_of = sorted({name for g in groups for name in g.best_of})
    if best_of:
        notes.append(f"best-of {', '.join(best_of)}: per liquid (net_num) only the run whose value gave the best "
                     f"validation accuracy is counted (ties: the earlier VERSION); values picked in column "
                     f"'picked'. The paper chose by test accuracy.")
    if paper:
        notes.append(f"paper: {paper_results.SOURCE}; Δ/sd_paper = (our mean - published mean) / published sd.")
        if any(g.simulated and g.paper for g in groups):
            notes.append("† published on the real recordings; this group ran on simulated data, so the "
                         "comparison is indicative only.")
        for row in dict.fromkeys(g.paper for g in groups if g.paper is not None and g.paper.note):
            notes.append(f"paper {row.label}: {row.note}.")
    if left_out:
        notes.append("not grouped (no readable run folder): "
                     + ", ".join(f"ver_{r.version} ({r.status})" for r in left_out) + ".")
    return notes


def format_groups(groups: Sequence[Group], keys: Sequence[str], fmt: str = "text", paper: bool = False,
                  left_out: Sequence[RunRecord] = ()) -> str:
    """One line per group: n (complete runs counted), incomplete runs, mean ± sd of the test accuracy at the best
    validation epoch, of the best validation accuracy, of the mean test firing rate and of the branching factor,
    mean wall times; with `paper` the published numbers beside.  Text and Markdown in % with notes under the
    table; CSV as fractions and seconds (the notes' content is in its `selection` and `paper_note` columns)."""
    notes = _group_notes(groups, paper, left_out) if fmt != "csv" else ()
    return _render(_group_columns(groups, keys, paper), groups, fmt, notes)


def _series_label(key: dict, simulated: bool, swept: str) -> str:
    parts = []
    for name, value in key.items():
        if name == swept:
            continue
        if name == "dataset":
            parts.append(f"{value} (simulated)" if simulated else str(value))
        elif name == "n_res":
            parts.append(f"{value} neurons")
        elif name == "net_num":
            parts.append(f"liquid {value}")
        else:
            parts.append(str(value))
    if "dataset" not in key and simulated:
        parts.append("(simulated data)")
    return " ".join(parts) or "runs"


def plot_groups(groups: Sequence[Group], keys: Sequence[str], path) -> Path:
    """Test accuracy (%) at the best validation epoch against the swept scalar (the one scalar among `keys`),
    mean ± sd per group, one series per combination of the other keys; beside each series, dashed, the paper's
    published grid for the model, dataset and size its groups matched.  Written atomically."""
    from lsm_core.analysis import plots

    swept = swept_scalar(keys)
    series = {}
    for g in groups:
        if g.key[swept] is not None and g.test_acc.mean is not None:
            ident = tuple((k, _norm(v)) for k, v in g.key.items() if k != swept) + (g.simulated,)
            series.setdefault(ident, []).append(g)
    with plots._figure(path, figsize=(8, 5)) as fig:
        ax = fig.add_subplot(1, 1, 1)
        drawn_paper, xs_all = set(), []
        for members in series.values():
            members.sort(key=lambda g: float(g.key[swept]))
            x = np.array([float(g.key[swept]) for g in members])
            y = np.array([100.0 * g.test_acc.mean for g in members])
            err = np.array([100.0 * (g.test_acc.sd or 0.0) for g in members])
            n = [len(g.counted) for g in members]
            label = _series_label(members[0].key, members[0].simulated, swept)
            bars = ax.errorbar(x, y, yerr=err, marker="o", ms=5, capsize=3, lw=1.5,
                               label=f"{label} (ours, n={min(n)}–{max(n)})" if min(n) != max(n)
                               else f"{label} (ours, n={n[0]})")
            colour = bars[0].get_color()
            xs_all += list(x)
            for row in {(g.paper.model, g.paper.dataset, g.paper.n_res) for g in members
                        if g.paper is not None and g.paper.condition_map.keys() == {swept}}:
                if row in drawn_paper:
                    continue
                drawn_paper.add(row)
                grid = sorted((p for p in paper_results.PUBLISHED if (p.model, p.dataset, p.n_res) == row
                               and not p.best_of and p.condition_map.keys() == {swept}),
                              key=lambda p: p.condition_map[swept])
                px = np.array([p.condition_map[swept] for p in grid])
                real = ", real data" if members[0].simulated else ""
                ax.errorbar(px, [p.acc_mean for p in grid], yerr=[p.acc_sd for p in grid], color=colour, ls="--",
                            marker="s", mfc="none", ms=5, capsize=3, lw=1.2, alpha=0.8,
                            label=f"{row[0]} {row[1]} {row[2]} neurons (paper{real})")
                xs_all += list(px)
        if series:
            positive = [v for v in xs_all if v > 0]
            if len(positive) == len(xs_all) and max(positive) / min(positive) >= 20:
                ax.set_xscale("log")                # the values themselves as ticks, not powers of ten
                ticks = sorted(set(positive))
                ax.set_xticks(ticks, [f"{v:g}" for v in ticks], minor=False)
                ax.set_xticks([], minor=True)
            ax.legend(fontsize=8, loc="best")
        else:
            ax.text(0.5, 0.5, f"no complete run with a value of {swept}", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_xlabel(swept)
        ax.set_ylabel("test accuracy at best validation epoch (%)")
        ax.grid(alpha=0.3)
        ax.set_title(f"Accuracy against {swept} (mean ± sd over liquids)")
    return Path(path)


# ----------------------------------------------------------------------------------------------
# Command
# ----------------------------------------------------------------------------------------------

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


def _write_plot(draw, path) -> Path:
    """`draw()`, with a file Matplotlib cannot write turned into a UserError."""
    try:
        return draw()
    except (OSError, ValueError) as exc:      # ValueError: a file suffix Matplotlib cannot write
        raise UserError(f"cannot write the plot {path} ({getattr(exc, 'strerror', None) or exc}); "
                        f"choose a writable path ending in .png, .pdf or .svg.") from None


def report_command(argv) -> int:
    """`python -m lsm_core report VERSION [VERSION ...]`: results of runs, one per line or aggregated in groups."""
    parser = argparse.ArgumentParser(
        prog="python -m lsm_core report",
        description="Results of one or several runs: test accuracy at the epoch of best validation accuracy, "
                    "that epoch, the best validation and final training accuracy, model, dataset, liquid, "
                    "prompted scalars, mean firing rate, branching factor and wall times per phase.  Unfinished "
                    "or missing runs are listed with their status.  With --group-by, one line per group of "
                    "runs: mean ± sample sd over its complete runs, optionally beside the paper's numbers.")
    parser.add_argument("versions", nargs="*", metavar="VERSION", help="run numbers; a range such as 12-15 "
                                                                       "stands for 12, 13, 14, 15")
    parser.add_argument("--sweep", metavar="NAME", action="append", default=[],
                        help="the runs of a sweep, by its name (its manifest <output-root>/sweeps/NAME.json); "
                             "may be repeated and combined with VERSIONs")
    parser.add_argument("--output-root", metavar="DIR", default=None,
                        help="folder of the ver_<VERSION> run folders (default: ./train_data, or $LSM_CORE_OUTPUT_ROOT)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="text (aligned, default), md (a GitHub table) or csv (fractions and seconds)")
    parser.add_argument("--csv", action="store_true", help="the same as --format csv")
    parser.add_argument("--group-by", metavar="KEYS", default=None,
                        help="aggregate the runs by these comma-separated keys: " + ", ".join(GROUP_FIELDS)
                             + " and prompted scalars such as ASTRO_W_SCALING or INTIAL_ABS_W_SCLR")
    parser.add_argument("--best-of", metavar="SCALARS", default=None,
                        help="with --group-by: per liquid (net_num) count only the run whose value(s) of these "
                             "scalars gave the best validation accuracy (the paper chose by test accuracy)")
    parser.add_argument("--paper", action="store_true",
                        help="with --group-by: the paper's published mean ± sd beside each matching group and "
                             "our difference in published sds")
    parser.add_argument("--plot", metavar="FILE", default=None,
                        help="also draw a figure into FILE (e.g. curves.png): the validation-accuracy curves of "
                             "the runs, or with --group-by the accuracy against the one swept scalar")
    args = parser.parse_args(list(argv))
    if args.csv and args.format not in (None, "csv"):
        raise UserError(f"--csv and --format {args.format} contradict each other; give one of them.")
    fmt = "csv" if args.csv else args.format or "text"
    if not args.versions and not args.sweep:
        raise UserError("name the runs: VERSIONs (e.g. 12 15-20) or --sweep NAME.")
    from lsm_core.runs.sweep import manifest_versions
    versions = parse_versions(args.versions)
    versions += [v for name in args.sweep for v in manifest_versions(name, args.output_root) if v not in versions]
    records = [collect_run(v, args.output_root) for v in versions]
    end = "" if fmt == "csv" else "\n"

    if args.group_by is None:
        if args.best_of is not None or args.paper:
            raise UserError("--best-of and --paper work on groups of runs: add --group-by, e.g. "
                            "--group-by model,dataset,n_res.")
        print(format_runs(records, fmt), end=end)
        if args.plot:
            path = _write_plot(lambda: plot_validation_curves(records, args.plot), args.plot)
            print(f"validation curves: {path}", file=sys.stderr)
        return 0

    keys = parse_group_keys(args.group_by, records)
    best_of = parse_best_of(args.best_of, keys, records)
    if args.plot:
        swept_scalar(keys)                      # refused before anything is printed
    groups = group_runs(records, keys, best_of)
    left_out = [r for r in records if not r.model]
    print(format_groups(groups, keys, fmt, paper=args.paper, left_out=left_out), end=end)
    if fmt == "csv" and left_out:
        print("not grouped (no readable run folder): " + ", ".join(f"ver_{r.version} ({r.status})"
                                                                  for r in left_out), file=sys.stderr)
    if args.plot:
        path = _write_plot(lambda: plot_groups(groups, keys, args.plot), args.plot)
        print(f"accuracy against {swept_scalar(keys)}: {path}", file=sys.stderr)
    return 0
