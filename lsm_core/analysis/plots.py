"""The run folder's figures (docs/file-formats.md#figures): accuracy curves, a spike raster, weight
histograms, a time trace.

Every function draws one figure, writes it atomically as a PNG (`atomic_savefig`) and closes it, so no
figure stays open however many runs a process makes.  Matplotlib's non-interactive Agg backend is used;
this module never imports TensorFlow.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from lsm_core.storage import atomic_savefig

__all__ = ["plot_accuracy", "plot_raster", "plot_trace", "plot_weight_histograms"]

_COLOURS = {"train": "tab:blue", "valid": "tab:orange", "test": "tab:green",
            "exc": "tab:red", "inh": "tab:blue", "input": "0.45"}
_DPI = 120


@contextmanager
def _figure(path, **kwargs):
    """A new figure that is saved to `path` on success and closed in every case."""
    fig = plt.figure(layout="constrained", **kwargs)
    try:
        yield fig
        atomic_savefig(fig, Path(path), dpi=_DPI)
    finally:
        plt.close(fig)


def _column(rows: Sequence, name: str) -> np.ndarray:
    return np.asarray([float(row[name]) for row in rows], dtype=np.float64)


def plot_accuracy(history_rows: Sequence[Mapping], path, title: str = "") -> Path:
    """Training, validation and test accuracy (%) against the epoch; the best validation epoch is marked
    and its test accuracy written beside it (the result the paper reports)."""
    rows = list(history_rows)
    with _figure(path, figsize=(8, 4.8)) as fig:
        ax = fig.add_subplot(1, 1, 1)
        if rows:
            epochs = _column(rows, "epoch")
            for key, label in (("train", "training"), ("valid", "validation"), ("test", "test")):
                acc = 100.0 * _column(rows, f"{key}_acc")
                ax.plot(epochs, acc, color=_COLOURS[key], lw=1.2, label=label,
                        marker="." if len(rows) < 30 else None)
            valid = _column(rows, "valid_acc")
            if np.isfinite(valid).any():
                k = int(np.nanargmax(valid))    # first epoch of the highest validation accuracy
                best_e, best_v, best_t = epochs[k], 100.0 * valid[k], 100.0 * float(rows[k]["test_acc"])
                ax.axvline(best_e, color="0.6", ls=":", lw=1)
                ax.plot([best_e], [best_v], "o", ms=8, mfc="none", mec=_COLOURS["valid"],
                        label=f"best validation: epoch {int(best_e)}")
                if np.isfinite(best_t):
                    ax.plot([best_e], [best_t], "*", ms=11, color=_COLOURS["test"])
                    ax.annotate(f"test {best_t:.2f}% at epoch {int(best_e)}\n(validation {best_v:.2f}%)",
                                xy=(best_e, best_t), xytext=(0.55, 0.2), textcoords="axes fraction",
                                arrowprops={"arrowstyle": "->", "color": "0.3"}, fontsize=9)
            if len(rows) > 1:
                ax.set_xlim(epochs.min(), epochs.max())
            ax.legend(loc="lower right" if len(rows) < 2 else "center right", fontsize=9)
        else:
            ax.text(0.5, 0.5, "no epochs trained yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.set_title(title or "Readout accuracy")
    return Path(path)


def plot_raster(spikes, path, n_exc: int, n_inh: int, title: str = "", dt_ms: float = 1.0) -> Path:
    """Dot raster of one sample (time in ms on x, neuron index on y; excitatory, inhibitory and input
    neurons in different colours) with the population firing rates (Hz) below.

    spikes: bool [T, N] with neurons ordered excitatory, inhibitory, input (docs/model.md#conventions).
    """
    s = np.asarray(spikes).astype(bool)
    if s.ndim != 2:
        raise ValueError(f"spikes must be [T, N], got shape {s.shape}")
    n_steps, n = s.shape
    n_exc, n_inh = int(n_exc), int(n_inh)
    groups = [("excitatory", "exc", 0, min(n_exc, n)),
              ("inhibitory", "inh", min(n_exc, n), min(n_exc + n_inh, n)),
              ("input", "input", min(n_exc + n_inh, n), n)]
    time_ms = (np.arange(n_steps) + 1) * dt_ms     # spikes of step t drawn at t ms
    with _figure(path, figsize=(9, 7)) as fig:
        ax, ax_rate = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
        for label, key, lo, hi in groups:
            if hi <= lo:
                continue
            t_idx, n_idx = np.nonzero(s[:, lo:hi])
            ax.scatter(time_ms[t_idx], n_idx + lo, s=1.5, marker=".", lw=0, color=_COLOURS[key],
                       label=f"{label} ({hi - lo})", rasterized=True)
            rate_hz = s[:, lo:hi].mean(axis=1) * (1000.0 / dt_ms)
            ax_rate.plot(time_ms, rate_hz, color=_COLOURS[key], lw=1, label=label)
        for boundary in (n_exc, n_exc + n_inh):
            if 0 < boundary < n:
                ax.axhline(boundary - 0.5, color="0.8", lw=0.6)
        ax.set_ylim(-0.5, max(n, 1) - 0.5)
        ax.set_xlim(0, max(n_steps, 1) * dt_ms + dt_ms)
        ax.set_ylabel("neuron index")
        ax.legend(loc="upper right", fontsize=8, markerscale=6, framealpha=0.8)
        total = int(s[:, :min(n_exc + n_inh, n)].sum())
        ax.set_title(title or f"Spike raster ({total} reservoir spikes)")
        ax_rate.set_xlabel("time (ms)")
        ax_rate.set_ylabel("rate (Hz)")
        ax_rate.grid(alpha=0.3)
    return Path(path)


def plot_weight_histograms(before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray], path,
                           title: str = "", bins: int = 60) -> Path:
    """Histograms of the synaptic weights of each class (e.g. "E→res", "I→res", "input→res") before and
    after the init phase, one panel per class, with shared bins per panel."""
    names = list(before) + [name for name in after if name not in before]
    with _figure(path, figsize=(4.2 * max(len(names), 1), 3.8)) as fig:
        if not names:
            ax = fig.add_subplot(1, 1, 1)
            ax.text(0.5, 0.5, "no synapses", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        for k, name in enumerate(names):
            ax = fig.add_subplot(1, len(names), k + 1)
            pair = [np.asarray(d.get(name, ()), np.float64).ravel() for d in (before, after)]
            pair = [v[np.isfinite(v)] for v in pair]
            values = np.concatenate(pair)
            if values.size:
                lo, hi = float(values.min()), float(values.max())
                if hi - lo < 1e-12:
                    lo, hi = lo - 0.5, hi + 0.5
                edges = np.linspace(lo, hi, bins + 1)
                for v, label, colour in ((pair[0], "before init", "0.5"), (pair[1], "after init", "tab:purple")):
                    if v.size:
                        ax.hist(v, bins=edges, histtype="stepfilled" if label == "before init" else "step",
                                alpha=0.5 if label == "before init" else 1.0, color=colour, lw=1.3,
                                label=f"{label} (n={v.size})")
                ax.set_yscale("log")
                ax.legend(fontsize=8)
            else:
                ax.text(0.5, 0.5, "no synapses", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(name)
            ax.set_xlabel("weight (model units)")
            ax.set_ylabel("synapses (count)" if k == 0 else "")
            ax.grid(alpha=0.3)
        if title:
            fig.suptitle(title)
    return Path(path)


def plot_trace(values, path, ylabel: str, title: str = "", dt_ms: float = 1.0,
               xlabel: str = "time (ms)", row_labels: Sequence[str] | None = None) -> Path:
    """A time trace [T], or several [B, T] (each row drawn thinly, with their mean when B > 1)."""
    v = np.asarray(values, np.float64)
    if v.ndim == 1:
        v = v[np.newaxis]
    if v.ndim != 2:
        raise ValueError(f"values must be [T] or [B, T], got shape {np.shape(values)}")
    time_ms = (np.arange(v.shape[1]) + 1) * dt_ms
    with _figure(path, figsize=(8, 4)) as fig:
        ax = fig.add_subplot(1, 1, 1)
        if v.shape[0] == 1:
            ax.plot(time_ms, v[0], lw=1.2, color="tab:purple",
                    label=row_labels[0] if row_labels else None)
        else:
            for b in range(v.shape[0]):
                ax.plot(time_ms, v[b], lw=0.7, alpha=0.35 if row_labels is None else 0.9,
                        label=row_labels[b] if row_labels else None)
            ax.plot(time_ms, v.mean(axis=0), lw=1.8, color="k", label=f"mean of {v.shape[0]}")
        if row_labels or v.shape[0] > 1:
            ax.legend(fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.set_title(title)
    return Path(path)
