"""Kernel quality of a liquid (docs/evaluation.md#kernel-quality) and the `python -m lsm_core kernel-quality`
sub-command.

* SP (separation property): the mean over `draws` random draws of the rank of the count matrix
  [N_res, per_class x classes] of `per_class` random test samples of every class (paper: 100 per class,
  1000 draws).  Larger is better: the liquid maps different inputs to independent states.
* AP (approximation property): the same ranks on counts of noisy test inputs (the same random sample sets
  as for SP, so that SP - AP compares like with like).  Smaller is better: noise
  does not multiply the states.  MNIST / Fashion-MNIST: Gaussian pixel noise of standard deviation 125 on
  the 0-255 scale, rounded and clipped to [0, 255] (`noisy_images`), then the usual encoding
  (docs/model.md#images-as-bernoulli-inputs) applied to the noisy test split as to any split: each image
  divided by its pixel sum, then all 10,000 noisy test images by their one largest value (so the
  brightest noisy pixel has probability 1 per ms, as in the clean test split; the noise is drawn for the
  whole split, so a sample's input does not depend on --test-samples).  N-MNIST: one Gaussian time
  shift of standard deviation 10 ms per sample, reflected at the ends of the recording
  (`draw_time_shifts`, `shift_events`).

Ranks (`kernel_ranks`): the rank of an integer count matrix M equals that of its Gram matrix on the
smaller side (M M^T or M^T M), which is computed exactly (integer sums, in float32 while every partial sum
stays below 2^24, else float64) and factorised by Cholesky with complete pivoting (`gram_rank`, LAPACK
dpstrf): about 0.05 s per draw for a 1000-neuron liquid on one core against 0.35 s for an SVD, with the same
ranks as numpy.linalg.matrix_rank (SVD) and as exact integer ranks on real count matrices.  Eigenvalues
of the Gram matrix are not used: they square the condition number and miss small singular values (999
instead of 1000 in about 1 draw in 10 of a real 1000-neuron liquid).  A rank below its bound is
confirmed by an SVD of M itself.  Neurons that never fire in the pool are left out first.  The matrix
products and factorisations use NumPy's BLAS threads: on a machine whose cores are busy with other work,
OPENBLAS_NUM_THREADS=1 is much faster (measured under load: 39 s instead of 250 s for the paper's 1000
draws on a 1000-neuron liquid).

Noisy counts are simulated with the run's own liquid, W_INI and model rules through the pipeline's batch
simulator, block by block like any other split (blocks/noisy_test_block_*.npz, then
counts_noisy_test.npz), so an interrupted kernel-quality run resumes.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from lsm_core.cli.scripts import int_option
from lsm_core.config import EVALUATION, PAPER
from lsm_core.errors import DamagedFile, UserError
from lsm_core.runs import checks as run_checks

__all__ = [
    "DRAWS",
    "NOISE_STD",
    "PER_CLASS",
    "SHIFT_STD_MS",
    "draw_samples",
    "draw_time_shifts",
    "gram_rank",
    "kernel_quality_command",
    "kernel_rank",
    "kernel_ranks",
    "noisy_images",
    "noisy_test_counts",
    "noisy_test_inputs",
    "shift_events",
]

NOISE_STD = EVALUATION.kernel_noise_std          # pixel noise, 0-255 scale (docs/evaluation.md#ap-and-the-noise)
SHIFT_STD_MS = EVALUATION.kernel_shift_std_ms    # N-MNIST time shift (docs/evaluation.md#ap-and-the-noise)
PER_CLASS = EVALUATION.kernel_per_class          # test samples per class in one draw
DRAWS = EVALUATION.kernel_draws                  # random draws averaged
NOISY_SPLIT = "noisy_test"
# How the noisy images are encoded, as the noise settings stamp of counts_noisy_test.npz says it.  The stamp
# is compared with the stored one on resume; counts stored with the stamp's earlier wording of the same
# encoding (_OLD_IMAGE_ENCODING, which named a section of a specification outside the repository) are
# accepted as made with the same settings (`_same_stamp`).
_IMAGE_ENCODING = ("the image encoding of docs/model.md#images-as-bernoulli-inputs on the noisy test split: "
                   "/ pixel sum, / the split's largest value")
_OLD_IMAGE_ENCODING = "SPEC 3.3 on the noisy test split: / pixel sum, / the split's largest value"
_SEED_STREAMS = {"noise": 1, "draws": 2}     # sub-streams of the run seed (np.random.default_rng([seed, 5, k]))


# ----------------------------------------------------------------------------------------------
# Noise (pure)
# ----------------------------------------------------------------------------------------------

def noisy_images(images, rng: np.random.Generator, std: float = NOISE_STD) -> np.ndarray:
    """Images plus Gaussian pixel noise of standard deviation `std` (0-255 scale), rounded to the nearest
    integer and clipped to [0, 255]: uint8, the shape of `images` (uint8 pixels, any shape)."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise ValueError(f"images must be uint8 pixels 0..255, got dtype {x.dtype}")
    noisy = x.astype(np.float64) + rng.normal(0.0, float(std), size=x.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def draw_time_shifts(n_samples: int, rng: np.random.Generator, std_ms: float = SHIFT_STD_MS) -> np.ndarray:
    """One Gaussian time shift per sample, standard deviation `std_ms`: int64 µs [n_samples]."""
    return np.rint(rng.normal(0.0, 1000.0 * float(std_ms), size=int(n_samples))).astype(np.int64)


def shift_events(t_us, shift_us: int, end_us: int = 1000 * PAPER.protocol.nmnist_recording_ms) -> np.ndarray:
    """Event timestamps (µs, [n_events]) moved by `shift_us` and reflected back into the recording
    [0, end_us): a timestamp pushed past either end is mirrored at that end (about -1/2 µs and
    end_us - 1/2 µs, so that integer µs stay integer and inside the recording: -1 -> 0, end_us -> end_us - 1;
    a shift longer than the recording keeps reflecting).  Returns int64 [n_events] in the given order
    (re-sort by time if needed)."""
    end = int(end_us)
    if end < 1:
        raise ValueError(f"end_us must be at least 1, got {end_us}")
    moved = np.mod(np.asarray(t_us, np.int64) + int(shift_us), 2 * end)
    return np.where(moved < end, moved, 2 * end - 1 - moved)


# ----------------------------------------------------------------------------------------------
# Ranks (pure)
# ----------------------------------------------------------------------------------------------

def draw_samples(labels, per_class: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices int64 [draws, per_class x classes]: for every draw, `per_class` distinct random samples
    of each class present in `labels` (class by class, in increasing class order)."""
    labels = np.asarray(labels).reshape(-1)
    classes, sizes = np.unique(labels, return_counts=True)
    if per_class < 1 or draws < 1:
        raise UserError(f"per-class samples and draws must be at least 1, got {per_class} and {draws}.")
    if classes.size == 0:
        raise UserError("there are no samples to draw from.")
    if sizes.min() < per_class:
        small = ", ".join(f"{c} ({n})" for c, n in zip(classes, sizes) if n < per_class)
        raise UserError(f"a draw takes {per_class} samples of every class, but the counts hold fewer for class "
                        f"{small}. Choose --per-class {int(sizes.min())} or less, or a run with more test "
                        f"samples.")
    parts = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        keys = rng.random((int(draws), members.size))
        parts.append(members[np.argsort(keys, axis=1)[:, :per_class]])      # a random subset per draw
    return np.concatenate(parts, axis=1)


def _gram_dtype(counts: np.ndarray, inner: int):
    """float32 when every entry of the Gram matrix (sums of `inner` products) is exact in it."""
    peak = float(np.abs(counts).max()) if counts.size else 0.0
    return np.float32 if peak * peak * inner < 2.0 ** 24 else np.float64


def gram_rank(gram: np.ndarray) -> int:
    """Numerical rank of a symmetric positive semi-definite matrix [n, n]: Cholesky factorisation with
    complete pivoting (LAPACK dpstrf, float64), stopping when the largest remaining pivot is below
    n x eps x the largest diagonal entry (LAPACK's default tolerance)."""
    from scipy.linalg import lapack

    gram = np.asarray(gram, np.float64)
    if gram.size == 0 or not gram.diagonal().any():
        return 0
    _, _, rank, info = lapack.dpstrf(gram, lower=1, tol=-1.0)
    if info < 0:
        raise ValueError(f"dpstrf rejected argument {-info}")
    return int(rank)


def kernel_ranks(counts, index) -> np.ndarray:
    """Ranks int64 [draws] of the count matrices counts[index[d]] (counts: [samples, N] integer spike
    counts, index: int [draws, columns]), as numpy.linalg.matrix_rank would give them, but faster.

    The exact integer Gram matrix on the smaller side goes through `gram_rank`; a draw whose rank comes
    out below its bound (the smaller of its non-silent neurons and non-empty samples) is checked with
    the SVD of the count matrix itself (numpy.linalg.matrix_rank), since the Gram matrix squares the
    condition number.  Neurons that never fire in `counts` are left out first.
    """
    counts = np.asarray(counts)
    index = np.atleast_2d(np.asarray(index, np.int64))
    active = counts[:, np.any(counts != 0, axis=0)]          # silent neurons add nothing to any rank
    n_draws, columns = index.shape
    n_active = active.shape[1]
    ranks = np.zeros(n_draws, np.int64)
    if n_active == 0 or columns == 0:
        return ranks
    exact = active.astype(_gram_dtype(active, max(n_active, columns)))
    for d, rows in enumerate(index):
        m = exact[rows]                                       # [columns, N_active]
        rank = gram_rank(m.T @ m if n_active <= columns else m @ m.T)
        bound = min(int(np.count_nonzero(m.any(axis=0))), int(np.count_nonzero(m.any(axis=1))))
        ranks[d] = rank if rank >= bound else np.linalg.matrix_rank(m.astype(np.float64))
    return ranks


def kernel_rank(counts, labels, per_class: int = PER_CLASS, draws: int = DRAWS,
                rng: np.random.Generator | None = None) -> tuple:
    """(mean, std) over `draws` random draws of the rank of the count matrix of `per_class` random
    samples of every class (docs/evaluation.md#sp).  counts: [samples, N_res]; labels: [samples]."""
    rng = np.random.default_rng() if rng is None else rng
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[0] != np.asarray(labels).reshape(-1).shape[0]:
        raise ValueError(f"counts must be [samples, N_res] with one label per sample, got {counts.shape} "
                         f"and {np.shape(labels)}")
    ranks = kernel_ranks(counts, draw_samples(labels, per_class, draws, rng))
    return float(ranks.mean()), float(ranks.std())


# ----------------------------------------------------------------------------------------------
# Noisy test inputs and their spike counts
# ----------------------------------------------------------------------------------------------

def _seed_rng(seed: int, stream: str) -> np.random.Generator:
    """The generator of one sub-stream of the run seed under the "noisy_test" split id."""
    from lsm_core.model.randomness import SPLIT_IDS

    return np.random.default_rng([int(seed), SPLIT_IDS[NOISY_SPLIT], _SEED_STREAMS[stream]])


@dataclass(frozen=True, eq=False)
class _ShiftedRecordings:
    """Test recordings, each moved in time by its own shift (µs) and reflected at its ends: the
    recording spans [0, max(300 ms, its last event + 1 µs)), so an unshifted recording is unchanged."""

    split: object              # events.EventSplit
    shifts_us: np.ndarray      # int64 [n]

    @property
    def labels(self) -> np.ndarray:
        return self.split.labels

    def __len__(self) -> int:
        return len(self.split)

    def inputs(self, rows, duration_ms: int, start_ms=0) -> np.ndarray:
        from lsm_core.data.events import N_CHANNELS, bin_events

        rows = np.asarray(rows, np.int64).reshape(-1)
        out = np.zeros((len(rows), int(duration_ms), N_CHANNELS), np.uint8)
        for i, row in enumerate(rows.tolist()):
            events = self.split.events(row)
            end_us = max(1000 * PAPER.protocol.nmnist_recording_ms, int(events.t.max()) + 1 if events.n_events else 0)
            t = shift_events(events.t, int(self.shifts_us[row]), end_us)
            moved = events._replace(t=t)
            out[i] = bin_events(moved, int(duration_ms), int(start_ms))
        return out


def noisy_test_inputs(config, noise_std: float = NOISE_STD, shift_std_ms: float = SHIFT_STD_MS,
                      log: Callable[[str], None] = print) -> tuple:
    """(split, settings) of the run's whole noisy test split: a split object with `inputs(rows, duration_ms)`
    and `labels` as the pipeline's splits have, and the noise settings as a dict.  The noise is drawn
    from the run seed for every test sample of the dataset, so it does not depend on --test-samples."""
    from lsm_core.data.encoding import ImageSplit
    from lsm_core.data.run_data import load_run_data

    data = load_run_data(config.dataset, config.data_dir, simulated=getattr(config, "dataset_simulated", False),
                         log=log)
    test = data.splits["test"]
    if config.dataset_spec.mode == "image":
        noisy = noisy_images(np.asarray(test.pixels), _seed_rng(config.seed, "noise"), noise_std)
        settings = {"kind": "gaussian pixel noise", "std": float(noise_std), "scale": "0-255",
                    "clipped": [0, 255], "rounded": True,
                    "encoding": _IMAGE_ENCODING}
        return ImageSplit.of_images(noisy, test.labels), settings
    shifts = draw_time_shifts(len(test), _seed_rng(config.seed, "noise"), shift_std_ms)
    settings = {"kind": "gaussian time shift per recording", "std_ms": float(shift_std_ms),
                "reflected": "at 0 and at max(300 ms, last event)"}
    return _ShiftedRecordings(test, shifts), settings


def noisy_test_counts(config, folder, net, weights, split, settings: dict, log: Callable[[str], None],
                      devices=None) -> dict:
    """Reservoir spike counts of the first `config.test_samples` samples of the noisy `split`, simulated
    like the run's test split (same liquid, weights, rules, batch and block sizes) but with the noisy
    inputs and the "noisy_test" input keys; written block by block (blocks/noisy_test_block_*.npz),
    then joined into counts_noisy_test.npz.  Returns {"counts", "labels", "index", "settings"}; stored
    counts made with other `settings` are a UserError."""
    import json

    from lsm_core.model.randomness import sample_keys
    from lsm_core.progress import progress_bar
    from lsm_core.runs.pipeline import batch_simulator

    stamp = json.dumps(settings, sort_keys=True)
    final = folder.counts_file(NOISY_SPLIT)
    batch, per_block = config.batch_size, config.batches_per_block
    block_size = batch * per_block
    n_blocks = config.test_samples // block_size

    def checked(name: str, first: int, n: int):
        """The noisy counts file `name` after its checks, or None (not there, or damaged: deleted)."""
        try:
            return folder.read_npz(name, run_checks.counts(first, n, net.n_res, config.duration_ms))
        except DamagedFile as exc:
            log(f"{final.name if name == final.name else name} is damaged ({exc.reason}): simulating it again.")
            folder.remove(name)
            return None

    whole = checked(final.name, 0, n_blocks * block_size)
    blocks = {} if whole is not None else {
        b: checked(folder.name_of(folder.block_file(NOISY_SPLIT, b)), b * block_size, block_size)
        for b in range(n_blocks)}
    done = [b for b, part in blocks.items() if part is not None]
    stored = [whole] if whole is not None else [blocks[b] for b in done]
    if not all(_same_stamp(str(part.get("settings")), stamp) for part in stored):
        raise UserError(f"{folder.path} already holds noisy test counts made with other noise settings. Give "
                        f"the same settings again, or add --recompute-noisy to delete them and simulate anew.")
    if whole is not None:
        return whole
    todo = [b for b in range(n_blocks) if b not in done]
    if todo:
        log(f"noisy test counts: {len(todo) * block_size} samples to simulate"
            + (f" ({len(done) * block_size} already done)" if done else ""))
        simulate_batch = batch_simulator(config, net, weights, devices, log)
        none = np.zeros(0, np.int64)
        with progress_bar(len(todo) * block_size, "noisy test counts", "sample") as bar:
            for block in todo:
                parts = []
                for b in range(per_block):
                    index = np.arange(block * block_size + b * batch, block * block_size + (b + 1) * batch)
                    counts, _, _ = simulate_batch(split.inputs(index, config.duration_ms),
                                                  sample_keys(config.seed, NOISY_SPLIT, index), none)
                    parts.append(counts)
                    bar.set_postfix(rate_hz=f"{counts.mean() * 1000.0 / config.duration_ms:.1f}", refresh=False)
                    bar.update(batch)
                index = np.arange(block * block_size, (block + 1) * block_size)
                folder.save_block(NOISY_SPLIT, block, counts=np.concatenate(parts).astype(np.int32),
                                  labels=split.labels[index], index=index, settings=np.array(stamp))
    blocks = [folder.load_block(NOISY_SPLIT, b) for b in range(n_blocks)]
    data = {"counts": np.concatenate([b["counts"] for b in blocks]),
            "labels": np.concatenate([b["labels"] for b in blocks]),
            "index": np.concatenate([b["index"] for b in blocks]), "settings": np.array(stamp)}
    folder.save_npz(final.name, **data)
    for b in range(n_blocks):
        folder.remove_block(NOISY_SPLIT, b)
    return data


def _same_stamp(stored: str, stamp: str) -> bool:
    """Whether the noise settings stamp `stored` (read from a counts file) is the current `stamp`, with the
    earlier wording of the image encoding read as today's: the same settings, only described differently."""
    import json

    return stored.replace(json.dumps(_OLD_IMAGE_ENCODING), json.dumps(_IMAGE_ENCODING)) == stamp


def _delete_noisy_counts(folder) -> None:
    folder.remove(folder.counts_file(NOISY_SPLIT).name)
    for path in folder.blocks_dir.glob(f"{NOISY_SPLIT}_block_*.npz"):
        folder.remove(folder.name_of(path))


# ----------------------------------------------------------------------------------------------
# Command
# ----------------------------------------------------------------------------------------------

def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: 0 or more")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lsm_core kernel-quality",
        description="Kernel quality of a run's liquid (docs/evaluation.md#kernel-quality): SP, the mean "
                    "rank of the spike-count matrix of PER_CLASS random test samples per class over DRAWS "
                    "draws (from counts_test.npz), and AP, the same on counts of noisy test inputs (MNIST / "
                    "Fashion-MNIST: Gaussian pixel noise; N-MNIST: a Gaussian time shift per recording), "
                    "simulated with the run's liquid, W_INI and rules into counts_noisy_test.npz (resumable).  "
                    "Writes kernel_quality.json into the run folder.  Larger SP and smaller AP are better.")
    add = parser.add_argument
    add("version", metavar="VERSION", help="run number")
    add("--output-root", metavar="DIR", help="folder of the ver_<VERSION> run folders (default: train_data/)")
    add("--networks-dir", metavar="DIR", help="folder of the run's Network_<NET_NUM>.npz (default: the run's)")
    add("--data-dir", metavar="DIR", help="dataset folder (default: the run's)")
    add("--gpu", metavar="ANSWER", default=None,
        help="device for the noisy counts, as the GPU prompt takes it (0, 0,1, cpu; default: the run's answer)")
    add("--per-class", type=int_option(1), default=PER_CLASS, metavar="N",
        help=f"test samples of each class in one draw (default: {PER_CLASS})")
    add("--draws", type=int_option(1), default=DRAWS, metavar="N",
        help=f"random draws averaged (default: {DRAWS})")
    add("--noise-std", type=_non_negative, default=NOISE_STD, metavar="X",
        help=f"MNIST / Fashion-MNIST pixel noise, 0-255 scale (default: {NOISE_STD:g})")
    add("--shift-std-ms", type=_non_negative, default=SHIFT_STD_MS, metavar="MS",
        help=f"N-MNIST time shift per recording (default: {SHIFT_STD_MS:g})")
    add("--seed", type=int_option(0), default=None, metavar="N",
        help="seed of the random draws (default: from the run's seed; the noise always comes from the run's seed)")
    add("--sp-only", action="store_true", help="compute SP only (no simulation)")
    add("--recompute-noisy", action="store_true", help="delete stored noisy test counts and simulate them anew")
    return parser


def _ranks_timed(counts, labels, per_class: int, draws: int, seed_rng) -> tuple:
    start = time.perf_counter()
    index = draw_samples(labels, per_class, draws, seed_rng)
    ranks = kernel_ranks(counts, index)
    return ranks, time.perf_counter() - start


def kernel_quality_command(argv) -> int:
    """`python -m lsm_core kernel-quality VERSION`: SP and AP of a run; writes kernel_quality.json."""
    from lsm_core.cli.prompts import parse_gpu
    from lsm_core.runs.folder import RERUN_TO_REPAIR, RunFolder, open_run, parse_version, run_config
    from lsm_core.runs.lock import RunLock

    args = _parser().parse_args(list(argv))
    version = parse_version(args.version)
    folder_path, params = open_run(version, args.output_root)
    config = run_config(params, args.output_root)
    config = replace(config, output_root=str(folder_path.parent),
                     networks_dir=args.networks_dir or config.networks_dir,
                     data_dir=args.data_dir or config.data_dir,
                     gpu=parse_gpu(args.gpu) if args.gpu is not None else config.gpu)
    with RunLock(folder_path) as lock:      # one writer per run folder: not beside a run or another tool
        _kernel_quality(version, config, params, args, RunFolder(config, guard=lock.check, repair=RERUN_TO_REPAIR))
    return 0


def _kernel_quality(version: int, config, params: dict, args, folder) -> None:
    """SP (and AP unless --sp-only) of the run in `folder`, into kernel_quality.json."""
    from lsm_core.runs.folder import RunLog
    from lsm_core.runs.pipeline import total_counts

    test_file = folder.counts_file("test")
    test = folder.read_npz(test_file.name, run_checks.counts(0, config.test_samples, _n_res(params),
                                                             config.duration_ms, config.count_bins))
    if test is None:
        raise UserError(f"{test_file} does not exist: the run has not finished its test spike counts. Re-run its "
                        f"script with the same answers to complete them, then try again.")
    test = dict(test, counts=total_counts(test["counts"]))      # time bins (--count-bins) add up to totals
    seed = config.seed if args.seed is None else args.seed
    log = RunLog(folder.file("run.log"))
    ranks_sp, sp_s = _ranks_timed(test["counts"], test["labels"], args.per_class, args.draws,
                                  _seed_rng(seed, "draws"))
    result = {"version": version, "model": config.model, "dataset": config.dataset,
              "dataset_simulated": bool(getattr(config, "dataset_simulated", False)),
              "n_res": int(test["counts"].shape[1]), "test_samples": int(test["counts"].shape[0]),
              "per_class": args.per_class, "draws": args.draws, "draw_seed": seed,
              "columns": int(args.per_class * np.unique(test["labels"]).size),
              "sp_mean": float(ranks_sp.mean()), "sp_std": float(ranks_sp.std()),
              "timings_s": {"sp_ranks": round(sp_s, 3)}}
    log(f"kernel quality of VERSION {version}: {args.draws} draws of {args.per_class} test samples per class")
    log(f"SP = {result['sp_mean']:.2f} +- {result['sp_std']:.2f} (rank; {result['columns']} columns, "
        f"{result['n_res']} neurons; {sp_s:.1f} s)")

    if not args.sp_only:
        if args.recompute_noisy:
            _delete_noisy_counts(folder)
        noisy, settings, noisy_s = _noisy_counts(config, folder, params, args, log)
        if not np.array_equal(noisy["labels"], test["labels"]):
            raise UserError(f"the labels of {folder.counts_file(NOISY_SPLIT)} differ from those of counts_test.npz; "
                            f"add --recompute-noisy to simulate the noisy test counts anew.")
        ranks_ap, ap_s = _ranks_timed(noisy["counts"], noisy["labels"], args.per_class, args.draws,
                                      _seed_rng(seed, "draws"))     # the same sample sets as for SP
        result.update(ap_mean=float(ranks_ap.mean()), ap_std=float(ranks_ap.std()), noise=settings)
        result["timings_s"].update(ap_ranks=round(ap_s, 3), noisy_counts=round(noisy_s, 3))
        log(f"AP = {result['ap_mean']:.2f} +- {result['ap_std']:.2f} (rank on noisy test inputs; {ap_s:.1f} s)")
    folder.write_json("kernel_quality.json", result)
    log(f"wrote {folder.file('kernel_quality.json')}")


def _n_res(params: dict) -> int | None:
    """The run's reservoir size from the liquid's dims in params.json (None when not recorded)."""
    dims = (params.get("identity") or {}).get("dims")
    return int(np.prod(dims)) if dims else None


def _noisy_counts(config, folder, params, args, log) -> tuple:
    """Load or simulate the noisy test counts: (data, settings, seconds spent)."""
    import sys

    from lsm_core.engines.devices import apply_gpu_choice, check_devices
    from lsm_core.runs.folder import load_run_network

    start = time.perf_counter()
    if "tensorflow" not in sys.modules:        # the device must be chosen before TensorFlow starts
        apply_gpu_choice(config.gpu)
    from lsm_core.runs import pipeline

    net = load_run_network(config, params)
    syn = net.synapses()
    saved = folder.read_npz("W_INI.npz", run_checks.weights(syn.post, syn.pre, net.n_neurons))
    if saved is not None:
        weights = saved["weights"]
    elif not config.model_spec.has_init_phase:
        weights = pipeline.start_weights(config, net)
    else:
        raise UserError(f"{folder.file('W_INI.npz')} does not exist: the run's init phase has not finished. Re-run "
                        f"its script with the same answers to complete it, then try again.")
    split, settings = noisy_test_inputs(config, args.noise_std, args.shift_std_ms, log)
    final = folder.counts_file(NOISY_SPLIT)
    if not final.exists():
        devices = check_devices(config.gpu, False, log)
        log(f"noisy test counts on {', '.join(devices)}: {settings['kind']}")
    data = noisy_test_counts(config, folder, net, weights, split, settings, log, pipeline.compute_devices(config))
    return data, settings, time.perf_counter() - start
