"""The branching factor of a liquid's spiking and the `python -m lsm_core branching` sub-command.

Definition (docs/evaluation.md#branching-factor), as the paper's tool computes it: each sample of T ms
has a buffer of `margin` ms at both ends (25 ms), and a spike of reservoir neuron i at step t counts
when margin + window <= t < T - margin - window (29 <= t < 221 for 250 ms, a 25 ms buffer and 4 ms
windows), so that both of its windows lie inside [margin, T - margin).  For each counted spike the ratio

    (spikes of i's reservoir targets in [t+1, t+1+window)) / max(1, spikes of i's reservoir sources in [t-window, t))

is averaged over the neuron's counted spikes, then over the neurons that have counted spikes, then over
the samples.  Near 1 means activity is passed on undamped and unamplified (edge of chaos); above 1 it
grows, below 1 it dies out.  A synapse listed twice counts twice.

The computation is vectorised per sample: windowed spike counts come from cumulative sums over time and
the sums over targets and sources from one sparse matrix product each, so it costs O(T * (N + n_syn))
per sample (20 samples of a 1000-neuron liquid, 250 ms: well under a second).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import sparse

from lsm_core.cli.scripts import int_option
from lsm_core.config import EVALUATION
from lsm_core.errors import UserError

__all__ = [
    "DEFAULT_MARGIN_MS",
    "DEFAULT_WINDOW_MS",
    "BranchingResult",
    "branching_command",
    "branching_factor",
    "plot_branching",
]

DEFAULT_MARGIN_MS = EVALUATION.branching_margin_ms    # buffer at both ends of the sample (25 ms)
DEFAULT_WINDOW_MS = EVALUATION.branching_window_ms    # source and target windows (4 ms)
RASTER_SPLITS = ("valid", "test", "train")


@dataclass(frozen=True, eq=False)
class BranchingResult:
    """Branching factors of a batch of rasters.

    per_neuron: float64 [samples, N]: the neuron's ratio averaged over its counted spikes (those at
    `first_ms` <= t < `stop_ms`), NaN for a neuron without such spikes.  spikes: int64 [samples, N], the
    spikes that were averaged.  margin, window: the settings; steps: T, the samples' length in ms.
    """

    per_neuron: np.ndarray
    spikes: np.ndarray
    margin: int
    window: int
    steps: int = 0

    @property
    def first_ms(self) -> int:
        """The first step whose spikes count: margin + window (29 with the paper's settings)."""
        return self.margin + self.window

    @property
    def stop_ms(self) -> int:
        """The first step whose spikes no longer count: T - margin - window (221 for 250 ms samples)."""
        return self.steps - self.margin - self.window

    @property
    def per_sample(self) -> np.ndarray:
        """float64 [samples]: mean over the neurons with counted spikes (NaN: none had any)."""
        valid = np.isfinite(self.per_neuron)
        total = np.where(valid, self.per_neuron, 0.0).sum(axis=1)
        count = valid.sum(axis=1)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    @property
    def valid_samples(self) -> np.ndarray:
        values = self.per_sample
        return values[np.isfinite(values)]

    @property
    def mean(self) -> float:
        """The branching factor: mean over samples (NaN when no sample has a counted spike)."""
        values = self.valid_samples
        return float(values.mean()) if values.size else float("nan")

    def spread(self) -> dict:
        """std (population), min and max of the per-sample values."""
        values = self.valid_samples
        if not values.size:
            return {"std": float("nan"), "min": float("nan"), "max": float("nan")}
        return {"std": float(values.std()), "min": float(values.min()), "max": float(values.max())}

    def summary(self) -> dict:
        """JSON-ready numbers: mean, spread, per-sample values (None: no spike), counts."""
        return {"mean": self.mean, **self.spread(),
                "per_sample": [None if not np.isfinite(v) else float(v) for v in self.per_sample],
                "samples": int(self.per_neuron.shape[0]), "samples_with_spikes": int(self.valid_samples.size),
                "neurons_counted_per_sample": [int(n) for n in np.isfinite(self.per_neuron).sum(axis=1)],
                "spikes_counted": int(self.spikes.sum()), "margin_ms": self.margin, "window_ms": self.window,
                "counted_from_ms": self.first_ms, "counted_before_ms": max(self.stop_ms, self.first_ms)}


def branching_factor(raster, post, pre, margin: int = DEFAULT_MARGIN_MS,
                     window: int = DEFAULT_WINDOW_MS) -> BranchingResult:
    """Branching factor of reservoir rasters (docs/evaluation.md#branching-factor).

    raster: bool [samples, T, N] (or [T, N]), spikes of the N reservoir neurons at each 1 ms step.
    post, pre: int [n_syn], the reservoir-to-reservoir synapses (post <- pre), indices into N.
    margin: the buffer in ms at both ends of a sample; window: ms of the source window [t - window, t)
    and of the target window [t + 1, t + 1 + window).  A spike at t counts when
    margin + window <= t < T - margin - window, so that both its windows lie inside [margin, T - margin):
    with the paper's 25 ms and 4 ms on 250 ms samples, spikes at 29 <= t < 221 count, their sources are
    looked for from t = 25 on and their targets up to t = 224.
    """
    spikes = np.asarray(raster)
    if spikes.ndim == 2:
        spikes = spikes[np.newaxis]
    if spikes.ndim != 3:
        raise ValueError(f"raster must be [samples, T, N] or [T, N], got shape {spikes.shape}")
    n_samples, n_steps, n = spikes.shape
    post = np.asarray(post, np.int64).reshape(-1)
    pre = np.asarray(pre, np.int64).reshape(-1)
    if post.shape != pre.shape:
        raise ValueError(f"post and pre differ in length: {post.shape[0]} and {pre.shape[0]}")
    if post.size and (min(post.min(), pre.min()) < 0 or max(post.max(), pre.max()) >= n):
        raise ValueError(f"synapse indices must lie in [0, {n}) (the raster's neurons)")
    margin, window = int(margin), int(window)
    if margin < 0 or window < 1:
        raise ValueError(f"margin must be >= 0 and window >= 1, got {margin} and {window}")

    # forward[j, i] = number of synapses j -> i; forward @ x sums x over targets, forward.T @ x over sources
    forward = sparse.csr_matrix((np.ones(post.size), (pre, post)), shape=(n, n))
    backward = forward.T.tocsr()
    first, stop = margin + window, n_steps - margin - window      # counted spikes: first <= t < stop
    times = np.arange(first, max(stop, first))
    per_neuron = np.full((n_samples, n), np.nan)
    counted = np.zeros((n_samples, n), np.int64)
    if times.size == 0 or n == 0:
        return BranchingResult(per_neuron, counted, margin, window, n_steps)
    ahead_lo, ahead_hi = times + 1, times + 1 + window            # inside [margin, T - margin) by construction
    behind_lo, behind_hi = times - window, times
    cumulative = np.zeros((n, n_steps + 1))
    for b in range(n_samples):
        s = spikes[b].T                                       # [N, T]
        np.cumsum(s, axis=1, out=cumulative[:, 1:])           # cumulative[:, t] = spikes before step t
        ahead = cumulative[:, ahead_hi] - cumulative[:, ahead_lo]      # [N, len(times)]
        behind = cumulative[:, behind_hi] - cumulative[:, behind_lo]
        target_spikes = forward @ ahead
        source_spikes = backward @ behind
        fired = s[:, times].astype(bool)
        ratio = np.where(fired, target_spikes / np.maximum(source_spikes, 1.0), 0.0)
        counted[b] = fired.sum(axis=1)
        per_neuron[b] = np.where(counted[b] > 0, ratio.sum(axis=1) / np.maximum(counted[b], 1), np.nan)
    return BranchingResult(per_neuron, counted, margin, window, n_steps)


def plot_branching(result: BranchingResult, path, title: str = "") -> Path:
    """Histogram of the per-neuron values (all samples pooled), the mean and 1 (critical) marked."""
    from lsm_core.analysis import plots

    values = result.per_neuron[np.isfinite(result.per_neuron)]
    with plots._figure(path, figsize=(7, 4.2)) as fig:
        ax = fig.add_subplot(1, 1, 1)
        if values.size:
            ax.hist(values, bins=min(60, max(10, values.size // 20)), color="tab:purple", alpha=0.75,
                    label=f"{values.size} neuron-samples")
            ax.axvline(1.0, color="0.3", ls=":", lw=1.2, label="1 (critical)")
            ax.axvline(result.mean, color="tab:red", lw=1.5, label=f"mean over samples {result.mean:.3f}")
            ax.legend(fontsize=9)
        else:
            ax.text(0.5, 0.5, f"no reservoir spike at {result.first_ms} <= t < {result.stop_ms} ms", ha="center",
                    va="center", transform=ax.transAxes)
        ax.set_xlabel(f"branching ratio per neuron (spikes at {result.first_ms} <= t < {result.stop_ms} ms; "
                      f"windows {result.window} ms, buffers {result.margin} ms)")
        ax.set_ylabel("neurons x samples")
        ax.grid(alpha=0.3)
        ax.set_title(title or "Branching factor")
    return Path(path)


def branching_command(argv) -> int:
    """`python -m lsm_core branching VERSION`: branching factor from the run's stored rasters."""
    from lsm_core.runs.folder import (
        RERUN_TO_REPAIR,
        RunFolder,
        load_run_network,
        open_run,
        parse_version,
        run_config,
    )
    from lsm_core.storage import atomic_write_json

    parser = argparse.ArgumentParser(
        prog="python -m lsm_core branching",
        description="Branching factor of a run's liquid (docs/evaluation.md#branching-factor), from the spike "
                    "rasters stored in its rasters.npz (20 samples per 10,000 of each split).  A spike at t counts "
                    "when MARGIN + WINDOW <= t < T - MARGIN - WINDOW (29 <= t < 221 ms for 250 ms samples, as in "
                    "the paper's tool).  Prints the mean over samples, its spread and the value of each split used "
                    "(the splits differ), and writes branching.json and branching.png into the run folder.")
    parser.add_argument("version", metavar="VERSION", help="run number")
    parser.add_argument("--output-root", metavar="DIR", default=None,
                        help="folder of the ver_<VERSION> run folders (default: ./train_data, or $LSM_CORE_OUTPUT_ROOT)")
    parser.add_argument("--networks-dir", metavar="DIR", default=None,
                        help="folder of the run's Network_<NET_NUM>.npz (default: the one the run used)")
    parser.add_argument("--split", choices=("all",) + RASTER_SPLITS, default="all",
                        help="rasters of which split to use (default: all stored rasters; the value of each "
                             "split is reported too)")
    parser.add_argument("--margin", type=int_option(0), default=DEFAULT_MARGIN_MS, metavar="MS",
                        help=f"buffer at both ends of each sample: spikes count from MARGIN + WINDOW ms to "
                             f"T - MARGIN - WINDOW ms (default: {DEFAULT_MARGIN_MS})")
    parser.add_argument("--window", type=int_option(1), default=DEFAULT_WINDOW_MS, metavar="MS",
                        help=f"length of the source and target windows in ms (default: {DEFAULT_WINDOW_MS})")
    args = parser.parse_args(list(argv))
    version = parse_version(args.version)

    folder, params = open_run(version, args.output_root)
    config = replace(run_config(params, args.output_root), output_root=str(folder.parent))
    path = folder / "rasters.npz"
    rasters = RunFolder(config, repair=RERUN_TO_REPAIR).read_npz(path.name)   # checked against the manifest
    if rasters is None:
        raise UserError(f"{path} does not exist: the run has not finished a split's spike counts yet. Re-run "
                        f"its script with the same answers to complete it, then try again.")
    splits = [s for s in (RASTER_SPLITS if args.split == "all" else (args.split,))
              if len(rasters.get(f"{s}_spikes", ()))]
    if not splits:
        raise UserError(f"{path} holds no rasters of the {args.split} split(s); choose --split among: "
                        + (", ".join(s for s in RASTER_SPLITS if len(rasters.get(f'{s}_spikes', ()))) or "none")
                        + ".")
    net = load_run_network(config, params, args.networks_dir)
    stored = rasters[f"{splits[0]}_spikes"].shape[-1]
    if stored != net.n_neurons:
        raise UserError(f"the rasters have {stored} neurons but the run's liquid has {net.n_neurons}; "
                        f"the network file does not belong to this run.")
    raster = np.concatenate([rasters[f"{s}_spikes"][:, :, :net.n_res] for s in splits])
    syn = net.synapses()
    reservoir = (syn.pre < net.n_res) & (syn.post < net.n_res)
    steps, reach = raster.shape[1], args.margin + args.window
    if steps - reach <= reach:
        largest = (steps - 2 * args.window - 1) // 2
        raise UserError(f"the samples last {steps} ms, so margins of {args.margin} ms and windows of {args.window} ms "
                        f"leave no time to count spikes in (they count at {reach} <= t < {steps - reach}); "
                        + (f"choose --margin {largest} or less." if largest >= 0 else
                           f"choose a --window below {(steps + 1) // 2}."))

    start = time.perf_counter()
    result = branching_factor(raster, syn.post[reservoir], syn.pre[reservoir], args.margin, args.window)
    elapsed = time.perf_counter() - start

    spread = result.spread()
    by_split = _by_split(result, splits, [len(rasters[f"{s}_spikes"]) for s in splits])
    named = _and_list(splits) + (" split" if len(splits) == 1 else " splits")
    if result.valid_samples.size:
        print(f"branching factor of VERSION {version} ({named}): {result.mean:.4f}  (over samples: std "
              f"{spread['std']:.4f}, min {spread['min']:.4f}, max {spread['max']:.4f}; {result.valid_samples.size} "
              f"of {raster.shape[0]} samples with counted spikes)")
    else:
        print(f"branching factor of VERSION {version} ({named}): undefined - no reservoir spike at "
              f"{result.first_ms} <= t < {result.stop_ms} ms")
    if len(splits) > 1:
        print("by split: " + "; ".join(
            f"{s} {'-' if part['mean'] is None else format(part['mean'], '.4f')} ({part['samples']} samples)"
            for s, part in by_split.items()))
    print(f"{raster.shape[0]} samples ({', '.join(splits)}) x {steps} ms x {net.n_res} neurons; spikes counted at "
          f"{result.first_ms} <= t < {result.stop_ms} ms (buffers {args.margin} ms, windows {args.window} ms): "
          f"{int(result.spikes.sum())} spikes; computed in {elapsed:.2f} s")
    record = {"version": version, "model": config.model, "dataset": config.dataset, "splits": splits,
              "by_split": by_split,
              "sample_index": {s: rasters[f"{s}_index"].tolist() for s in splits if f"{s}_index" in rasters},
              "n_res": net.n_res, "reservoir_synapses": int(reservoir.sum()), "duration_ms": int(raster.shape[1]),
              **result.summary(), "elapsed_s": round(elapsed, 4)}
    atomic_write_json(folder / "branching.json", record)
    plot_branching(result, folder / "branching.png",
                   title=f"{config.model} on {config.dataset_title}, VERSION {version}: branching factor")
    print(f"wrote {folder / 'branching.json'} and {folder / 'branching.png'}")
    return 0


def _by_split(result: BranchingResult, splits, sizes) -> dict:
    """{split: {"mean", "samples", "samples_with_spikes"}} of the splits whose rasters were concatenated, in
    that order, `sizes` samples each (mean None: no sample of the split had a counted spike)."""
    out, start = {}, 0
    for split, size in zip(splits, sizes):
        values = result.per_sample[start:start + size]
        values = values[np.isfinite(values)]
        out[split] = {"mean": float(values.mean()) if values.size else None, "samples": int(size),
                      "samples_with_spikes": int(values.size)}
        start += size
    return out


def _and_list(names) -> str:
    """"valid", "valid and test", "valid, test and train"."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
