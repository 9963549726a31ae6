"""Readouts of a finished run, side by side, from its stored spike counts: the `python -m lsm_core readout`
command and summary.json's `readouts` list (docs/evaluation.md#readouts-side-by-side).

A run stores each split's reservoir spike counts (counts_<split>.npz).  Any readout can be fitted on them
afterwards without simulating again.  Each readout's result goes to a file of its own,
readout_<readout>_<features>[_<targets>].npz, and to one entry of summary.json's `readouts`:

    {"readout": "ridge", "features": "counts", "targets": "onehot", "test_acc_at_best": 0.93,
     "best_valid_acc": 0.94, "train_acc_at_best": 0.95, "lambda": 0.001, "seconds": 1.2,
     "file": "readout_ridge_counts.npz"}

The paper's readout, trained by the run itself, has the entry {"readout": "paper", "features":
"counts", ...}.  `--readout paper` trains it again on other features (time bins), from zero and without
checkpoints.  A new entry replaces the one with the same readout, features and targets.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from lsm_core.errors import UserError

READOUTS = ("ridge", "paper")
FEATURES_HELP = ("counts (each neuron's spikes over the whole sample), bins (the time bins the run stored, "
                 "concatenated) or bins:K (coarsened to K bins; K must divide the stored number)")
SPLITS = ("train", "valid", "test")


def parse_features(text: str) -> tuple:
    """("counts", None), ("bins", None) or ("bins", K) from "counts", "bins" or "bins:K"."""
    name, _, k = str(text).partition(":")
    if name == "counts" and not k:
        return "counts", None
    if name == "bins" and (not k or (k.isdigit() and int(k) >= 1)):
        return "bins", int(k) if k else None
    raise UserError(f"--features {text!r} is not known; choose {FEATURES_HELP}.")


def features_of(counts: np.ndarray, features: str) -> np.ndarray:
    """The readout's input from stored counts int [n, N_res] or [n, K, N_res] (K time bins):
    "counts" -> [n, N_res] totals; "bins" -> [n, K, N_res]; "bins:K'" -> [n, K', N_res], each new bin the sum
    of K / K' consecutive stored bins."""
    name, k = parse_features(features)
    stored = counts if counts.ndim == 3 else counts[:, None, :]
    if name == "counts":
        return stored.sum(axis=1)
    bins = stored.shape[1]
    if k is None or k == bins:
        return stored
    if bins % k:
        raise UserError(f"--features {features}: the run stored {bins} time bin(s) per sample, which cannot be "
                        f"merged into {k}; choose K among {[d for d in range(1, bins + 1) if bins % d == 0]}, or "
                        f"make a run with --count-bins {k} (or a multiple of it).")
    return stored.reshape(stored.shape[0], k, bins // k, stored.shape[2]).sum(axis=2)


DEFAULT_TARGETS = {"ridge": "onehot", "paper": "soft"}


def readout_label(readout: str, features: str, targets: str) -> str:
    """How report heads a readout's column: "ridge:counts", "paper:bins:5", "ridge:counts/soft"."""
    return f"{readout}:{features}" + ("" if targets == DEFAULT_TARGETS.get(readout) else f"/{targets}")


def readout_file(readout: str, features: str, targets: str) -> str:
    """readout_<readout>_<features>.npz (":" dropped), with _<targets> when not the readout's usual ones."""
    suffix = "" if targets == DEFAULT_TARGETS.get(readout) else f"_{targets}"
    return f"readout_{readout}_{features.replace(':', '')}{suffix}.npz"


def merge_entry(entries, entry: dict) -> list:
    """summary.json's `readouts` with `entry` added, replacing the one of the same readout, features and
    targets; ordered by readout, then features."""
    key = (entry["readout"], entry["features"], entry.get("targets", "onehot"))
    kept = [e for e in (entries or []) if isinstance(e, dict)
            and (e.get("readout"), e.get("features"), e.get("targets", "onehot")) != key]
    return sorted(kept + [entry], key=lambda e: (e.get("readout") != "paper", str(e.get("readout")),
                                                str(e.get("features")), str(e.get("targets", ""))))


def _check_summary(summary) -> None:
    if not isinstance(summary, dict) or not summary.get("complete"):
        raise ValueError("it does not describe a finished run")


def add_readout(folder, config, readout: str, features: str, targets: str = "onehot", epochs: int | None = None,
                log=print) -> dict:
    """Fit `readout` on the run's stored `features`, write its file and its summary.json entry; returns the
    entry.  `folder` is the run's RunFolder (holding the run lock when it writes).  `epochs`: the paper
    readout's (default: the run's)."""
    from lsm_core.runs import checks as run_checks

    parse_features(features)
    if readout not in READOUTS:
        raise UserError(f"--readout {readout!r} is not known; choose {', '.join(READOUTS)}.")
    if readout == "paper" and features == "counts":
        raise UserError("the run trained the paper's readout on the counts itself (its summary.json); choose "
                        "--features bins or bins:K for the paper's readout on time bins, or --readout ridge.")
    summary = folder.read_json("summary.json", _check_summary)
    if summary is None:
        raise UserError(f"{folder.path} has no summary.json: the run has not finished. Re-run its script with "
                        f"the same answers to complete it, then add readouts.")
    data = {}
    for split in SPLITS:
        n = config.split_sizes[split]
        arrays = folder.read_npz(f"counts_{split}.npz",
                                 run_checks.counts(0, n, None, config.duration_ms, config.count_bins))
        if arrays is None:
            raise UserError(f"{folder.path / f'counts_{split}.npz'} does not exist; re-run the run's script with "
                            f"the same answers to complete it.")
        data[split] = (features_of(arrays["counts"], features), arrays["labels"])
    started = time.perf_counter()
    if readout == "ridge":
        arrays, entry = _ridge(data, targets, log)
    else:
        targets = "soft"
        arrays, entry = _paper(data, config.batch_size, epochs or config.readout_epochs)
    name = readout_file(readout, features, targets)
    folder.save_npz(name, **arrays)
    entry = {"readout": readout, "features": features, "targets": targets, **entry,
             "seconds": round(time.perf_counter() - started, 3), "file": name}
    summary["readouts"] = merge_entry(summary.get("readouts"), entry)
    folder.write_json("summary.json", summary)
    return entry


def _ridge(data: dict, targets: str, log) -> tuple:
    from lsm_core.analysis.ridge import fit_ridge

    fitted = fit_ridge(data["train"], data["valid"], targets=targets, log=log)
    return fitted.to_arrays(), {
        "test_acc_at_best": fitted.accuracy(*data["test"]), "best_valid_acc": float(fitted.valid_accs[fitted.chosen]),
        "train_acc_at_best": fitted.accuracy(*data["train"]), "lambda": float(fitted.lambdas[fitted.chosen]),
        "n_features": int(fitted.weights.shape[0])}


def _paper(data: dict, batch_size: int, epochs: int) -> tuple:
    """The paper's readout (normalised features, soft targets, Adadelta) on the flattened features."""
    from lsm_core.analysis.readout import best_epoch, normalise_counts, train_readout
    from lsm_core.progress import progress_bar
    from lsm_core.runs.folder import HISTORY_COLUMNS

    features = {s: (normalise_counts(x.reshape(len(x), -1), batch_size), y) for s, (x, y) in data.items()}
    with progress_bar(epochs, "readout", "epoch") as bar:
        state, history = train_readout(features["train"], features["valid"], features["test"], batch_size=batch_size,
                                       epochs=epochs, on_epochs=lambda _, rows: bar.update(len(rows)))
    best = best_epoch(history)
    arrays = dict(best_weights=state.best_weights, best_bias=state.best_bias, best_epoch=np.int64(state.best_epoch),
                  history=np.array([[row[k] for k in HISTORY_COLUMNS] for row in history], np.float64))
    return arrays, {"test_acc_at_best": float(best["test_acc"]), "best_valid_acc": float(best["valid_acc"]),
                    "train_acc_at_best": float(best["train_acc"]), "best_epoch": int(best["epoch"]),
                    "epochs": int(epochs), "n_features": int(features["train"][0].shape[1])}


def _positive_int(text: str) -> int:
    if not str(text).isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def readout_command(argv) -> int:
    """`python -m lsm_core readout VERSION`: fit a readout on a finished run's stored spike counts."""
    from lsm_core.runs.folder import RERUN_TO_REPAIR, RunFolder, open_run, parse_version, run_config
    from lsm_core.runs.lock import RunLock

    parser = argparse.ArgumentParser(
        prog="python -m lsm_core readout",
        description="Fit another readout on a finished run's stored spike counts, without simulating again "
                    "(docs/evaluation.md#readouts-side-by-side).  The result goes to its own file in the run "
                    "folder and to summary.json's `readouts`, which `report` shows.")
    parser.add_argument("version", metavar="VERSION", help="run number")
    parser.add_argument("--readout", choices=READOUTS, default="ridge",
                        help="ridge: closed-form ridge regression, penalty chosen by validation accuracy "
                             "(default); paper: the paper's readout (Adadelta, soft targets) trained again "
                             "from zero on time bins")
    parser.add_argument("--features", default="counts", help=f"the readout's input: {FEATURES_HELP}")
    parser.add_argument("--targets", choices=("onehot", "soft"), default="onehot",
                        help="ridge's targets: one-hot (default) or the paper's soft targets")
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help="paper readout: epochs (default: the run's readout epochs)")
    parser.add_argument("--output-root", metavar="DIR", default=None,
                        help="folder of the ver_<VERSION> run folders (default: ./train_data, or $LSM_CORE_OUTPUT_ROOT)")
    args = parser.parse_args(list(argv))
    version = parse_version(args.version)
    parse_features(args.features)
    folder_path, params = open_run(version, args.output_root)
    config = replace(run_config(params, args.output_root), output_root=str(folder_path.parent))
    with RunLock(folder_path) as lock:      # one writer per run folder: not beside a run or another tool
        folder = RunFolder(config, guard=lock.check, repair=RERUN_TO_REPAIR)
        entry = add_readout(folder, config, args.readout, args.features, args.targets, args.epochs)
    print(f"run {version}: {entry['readout']} readout on {entry['features']} ({entry['n_features']} features, "
          f"{entry['targets']} targets): test accuracy {100 * entry['test_acc_at_best']:.2f} % at the best "
          f"validation accuracy {100 * entry['best_valid_acc']:.2f} % ("
          + (f"lambda {entry['lambda']:g}" if "lambda" in entry else f"epoch {entry['best_epoch']}") + "), "
          f"{entry['seconds']:.1f} s; written to {folder_path / entry['file']} and summary.json")
    return 0
