"""The run protocol (docs/model.md#the-protocol; its files: docs/file-formats.md#the-run-folder): spike
counts in blocks, readout training, outputs, resume.

`run(config)` is what every top-level script ends in.  It is written as a list of resumable
phases; each phase looks at the run folder, skips what is complete, and writes each finished unit
(a block of batches, a chunk of readout epochs) atomically before going on.
"""
from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import numpy as np

from lsm_core.analysis import plots
from lsm_core.analysis.readouts import merge_entry
from lsm_core.config import PAPER, RunConfig
from lsm_core.errors import DamagedFile, UserError, interruption, interruption_behind
from lsm_core.model.network import EXC, INH, INPUT, Network, ensure_network, format_dims, network_path
from lsm_core.model.randomness import sample_keys
from lsm_core.progress import progress_bar
from lsm_core.runs import checks as run_checks
from lsm_core.runs.folder import (
    HISTORY_COLUMNS,
    RunFolder,
    RunLog,
    history_to_csv,
    parse_history_csv,
    raster_rows,
    run_folder_path,
    run_identity,
)
from lsm_core.runs.lock import RunLock
from lsm_core.storage import file_sha256, read_json_file

SPLIT_ORDER = ("valid", "test", "train")      # the paper's order: validation, test, training


def run(config: RunConfig, log: Callable[[str], None] | None = None, lock: RunLock | None = None) -> dict:
    """Run (or resume) one benchmark; returns the summary dict (also in summary.json).

    The run holds its folder's lock (lock.py) from start to end, so a second process on the same
    VERSION stops at once (LockHeld, exit status 2) instead of writing beside it.  A caller that has
    already taken the lock (a sweep worker claiming the run) passes it as `lock` and keeps it.
    """
    if lock is None:
        with RunLock(run_folder_path(config.version, config.output_root or None)) as own_lock:
            return run(config, log, own_lock)
    position = Position()
    try:
        return _run(config, log, lock, position)
    except KeyboardInterrupt as exc:          # Ctrl-C or SIGTERM (cli.signals_stop_cleanly): say where
        _say_where(exc, position)
        raise
    except Exception as exc:                  # an error on the way out of an interruption is that interruption
        stopped = interruption_behind(exc)
        if stopped is None:
            raise
        _say_where(stopped, position)
        raise stopped from None


def _say_where(exc: KeyboardInterrupt, position: "Position") -> None:
    """Attach where the run stopped to the interruption and write it to run.log."""
    exc.where = f"interrupted by {interruption(exc)[0]} at {position.at}; re-run the same command to resume"
    if position.run_log is not None:
        try:
            RunLog(position.run_log, echo=False)(exc.where)
        except UserError:                   # run.log cannot be written (a full disk): stderr still says it
            pass


class Position:
    """Where a run is, for the message of an interruption: `at` ("spike counts, train block 3 of 40")
    and run.log once the run folder is open."""

    def __init__(self):
        self.at = "start-up (loading the data and the liquid)"
        self.run_log: Optional[Path] = None


def _run(config: RunConfig, log, lock: RunLock, position: Position) -> dict:
    started = time.perf_counter()
    config = settle_engine(config)
    if not 0.0 < config.astro_density <= 1.0:
        raise UserError(f"astro_density = {config.astro_density}: the fraction of neurons that feed the "
                        f"astrocyte lies in (0, 1]; choose a value in that range.")
    if not 1 <= config.count_bins <= config.duration_ms:
        raise UserError(f"count_bins = {config.count_bins}: a sample of {config.duration_ms} ms holds 1 to "
                        f"{config.duration_ms} time bins; choose a count in that range.")
    model = config.model_spec
    splits, data = _load_splits(config, log or print)   # missing data stops the run before anything is written
    net, folder, log, device_names = _open_run(config, log, data, lock)
    position.run_log = folder.file("run.log")
    timings = _read_timings(folder, log)
    w_start = start_weights(config, net)
    if model.has_init_phase:
        w_ini = _init_phase(config, folder, net, w_start, splits["init_pool"], timings, log, position)
    else:
        w_ini = w_start
        _save_weights(folder, "W_INI.npz", net, w_ini)
    devices = compute_devices(config)
    counts = _spike_count_phase(config, folder, net, w_ini, splits, timings, log, devices, position)
    rasters = _rasters(config, folder, net, w_ini, splits, log, devices, position)
    summary, history = _readout_phase(config, folder, counts, timings, log, position)
    position.at = "the plots"
    _plots(config, folder, net, w_start, w_ini, history, rasters, log)
    summary.update(model=model.name, dataset=config.dataset, dataset_title=config.dataset_title,
                   dataset_simulated=config.dataset_simulated, version=config.version,
                   net_num=config.net_num, liquid=format_dims(net.dims), n_res=net.n_res,
                   scalars=config.scalars, devices=device_names, timings_s=timings,
                   mean_rate_hz={s: float(total_counts(counts[s]["counts"]).mean() * 1000.0 / config.duration_ms)
                                 for s in SPLIT_ORDER},
                   complete=True)
    summary["readouts"] = merge_entry(_added_readouts(folder), {
        "readout": "paper", "features": "counts", "targets": "soft",
        "test_acc_at_best": summary["test_acc_at_best"], "best_valid_acc": summary["best_valid_acc"],
        "train_acc_at_best": summary["train_acc_at_best"], "best_epoch": summary["best_epoch"],
        "seconds": round(float(timings.get("readout", 0.0)), 3), "file": "readout.npz"})
    folder.write_json("summary.json", summary)
    log(f"done in {time.perf_counter() - started:.1f} s (this invocation).")
    log(f"TEST ACCURACY at the best validation epoch ({summary['best_epoch']}): "
        f"{100 * summary['test_acc_at_best']:.2f} % (validation {100 * summary['best_valid_acc']:.2f} %) "
        f"on {config.dataset_title}")
    return summary


def total_counts(counts: np.ndarray) -> np.ndarray:
    """Each sample's spike counts over the whole sample [n, N_res], from totals [n, N_res] or time bins
    [n, K, N_res] (what counts_<split>.npz holds with --count-bins K)."""
    return counts.sum(axis=1, dtype=counts.dtype) if counts.ndim == 3 else counts


def _added_readouts(folder: RunFolder) -> list:
    """The readouts added to a finished run afterwards (`python -m lsm_core readout`), kept when the run
    writes its summary again; none when summary.json is missing or damaged."""
    try:
        previous = folder.read_json("summary.json")
    except DamagedFile:
        return []
    entries = previous.get("readouts") if isinstance(previous, dict) else None
    return [e for e in entries or [] if isinstance(e, dict) and e.get("readout") != "paper"]


def _recovering(log, exc: DamagedFile, action: str) -> None:
    """The one log line of a recovery: which file, what is wrong with it, and what is done about it."""
    log(f"{Path(exc.path).name} is damaged ({exc.reason}): {action}.")


def _read_timings(folder: RunFolder, log) -> dict:
    """timings.json ({phase: seconds}); a damaged one restarts the tally (the times are not results)."""
    try:
        return folder.read_json("timings.json", run_checks.timings) or {}
    except DamagedFile as exc:
        _recovering(log, exc, "the times of earlier invocations are lost; timing again from now on")
        folder.remove("timings.json")
        return {}


def settle_engine(config: RunConfig) -> RunConfig:
    """`config` with its engine settled: "auto" becomes the engine of the run already in the folder (runs
    made before the event-driven engine existed used "xla"), else "xla" when the run uses a GPU and
    "events" on CPUs.  A run never changes engine on resumption; an explicit engine that differs from
    the folder's is refused when the folder is opened."""
    if config.engine != "auto":
        return config
    params = read_json_file(run_folder_path(config.version, config.output_root or None) / "params.json")
    recorded = params.get("identity") if isinstance(params, dict) else None
    if isinstance(recorded, dict) and not config.overwrite:
        return replace(config, engine=recorded.get("engine", "xla"))
    from lsm_core.engines.simulator import resolve_engine

    gpu = False
    if config.gpu != "cpu":
        import tensorflow as tf
        gpu = bool(tf.config.list_logical_devices("GPU"))
    return replace(config, engine=resolve_engine("auto", gpu=gpu))


ENGINE_NAMES = {"xla": "xla (compiled dense tensors)", "events": "events (event-driven, numba, CPU threads)"}


def _open_run(config: RunConfig, log, data, lock: RunLock):
    """Load or generate the liquid, open (or resume) the run folder, report the devices and the data.

    Returns (network, folder, log, device names).
    """
    from lsm_core.engines.devices import check_devices, tensorflow_versions

    early_messages = []                             # said before run.log exists
    net, generated = ensure_network(config.net_num, config.dataset_spec.n_input, dims=config.dims,
                                    networks_dir=config.networks_dir, log=early_messages.append)
    folder = RunFolder(config, guard=lock.check)
    identity = run_identity(config, net.dims, file_sha256(network_path(config.net_num, config.networks_dir)))
    resuming = folder.open(identity, {"run": _run_info(config, generated), "dataset": data.info}, config.overwrite)
    log = log or RunLog(folder.file("run.log"))
    log(f"=== {config.model} on {config.dataset_title} - VERSION {config.version} "
        f"({'resuming' if resuming else 'new run'}) in {folder.path}")
    if resuming and folder.manifest.status != "ok":
        log(f"manifest.json is {folder.manifest.status}: the run's files are checked by their format alone "
            f"and recorded in a new manifest as they are read")
    if lock.taken_over is not None:
        log(f"the previous owner of this run ({lock.taken_over.describe()}) is gone; its lock was taken over")
    for message in early_messages:
        log(message)
    for note in data.notes:
        log(f"data: {note}")
    devices = check_devices(config.gpu, config.require_gpu, log)
    log(f"devices used: {', '.join(devices)}; TensorFlow {tensorflow_versions()['tensorflow']}; "
        f"engine {ENGINE_NAMES[config.engine]}")
    log(f"liquid: {net.describe()}")
    log(f"seed {config.seed}; batch {config.batch_size} x {config.batches_per_block} batches per block; "
        f"{config.duration_ms} ms per sample; samples: " +
        ", ".join(f"{s} {config.split_sizes[s]}" for s in SPLIT_ORDER))
    if config.count_bins > 1:
        log(f"spike counts kept in {config.count_bins} time bins per sample")
    if config.astro_density != 1.0:
        log(f"astrocyte fed by {math.ceil(config.astro_density * net.n_res)} of {net.n_res} reservoir neurons and "
            f"{math.ceil(config.astro_density * net.n_input)} of {net.n_input} inputs (density "
            f"{config.astro_density}, drawn from the seed)")
    return net, folder, log, devices


# ----------------------------------------------------------------------------------------------
# Inputs, weights and provenance
# ----------------------------------------------------------------------------------------------

def _load_splits(config: RunConfig, say: Callable[[str], None]):
    """({split: the run's first n samples of it}, RunData) for the run's dataset, plus "init_pool" (the
    whole training pool the init phase draws from) for models with an init phase.  A split is an
    ImageSplit or EventSplit: `inputs(rows, duration_ms, start_ms)` gives one batch's simulator input,
    `labels` the labels.  A missing dataset is fetched where that can work (messages to `say`);
    otherwise, and for missing or damaged data, UserError stops the run here, before simulating."""
    from lsm_core.data.run_data import load_run_data

    data = load_run_data(config.dataset, config.data_dir, simulated=config.dataset_simulated, log=say)
    pools = data.splits
    unit = "recordings" if config.dataset_spec.mode == "event" else "samples"
    for split, option in (("train", "--train-samples"), ("valid", "--valid-samples"), ("test", "--test-samples")):
        if config.split_sizes[split] > len(pools[split]):
            raise UserError(f"{option} {config.split_sizes[split]} is more than the {len(pools[split])} {split} "
                            f"{unit} of {config.dataset_title}; give at most {len(pools[split])}.")
    splits = {split: pools[split].head(config.split_sizes[split]) for split in SPLIT_ORDER}
    if config.model_spec.has_init_phase:
        if config.init_samples > len(pools["train"]):
            raise UserError(f"--init-samples {config.init_samples} is more than the {len(pools['train'])} training "
                            f"{unit} the init phase draws from; give at most {len(pools['train'])}.")
        splits["init_pool"] = pools["train"]
    return splits, data


def _run_info(config: RunConfig, generated: bool) -> dict:
    from lsm_core.engines.devices import tensorflow_versions

    return {"config": asdict(config), "network_generated_now": generated, "versions": tensorflow_versions(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def start_weights(config: RunConfig, net: Network) -> np.ndarray:
    """The liquid's weights before any learning, float32 [n_syn]: sign x the model's magnitude
    (w_max for NALSM and LSM+STDP, INTIAL_ABS_W_SCLR for LSM and LSM+AP-STDP;
    docs/model.md#the-four-models)."""
    from lsm_core.engines.interface import synapse_weights

    prompt = config.model_spec.weight_scale_prompt
    scale = float(config.scalars[prompt]) if prompt else PAPER.plasticity.w_max
    return synapse_weights(net, scale)


def _sim_params(config: RunConfig, net: Network):
    """The model's prompted scalars as simulator parameters, with the astrocyte's mask (--astro-density)."""
    from lsm_core.engines.interface import SimParams

    scalars = config.scalars
    mask = astro_mask(config.seed, config.astro_density, net.n_res, net.n_input) \
        if config.astro_density != 1.0 else None
    return SimParams(astro_w=scalars.get("ASTRO_W_SCALING"),
                     rate_threshold=scalars.get("STDP_NEURON_RATE_THESHOLD"),
                     rate_range=scalars.get("STDP_NEURON_RATE_RANGE"),
                     astro_mask=None if mask is None else tuple(mask.tolist()))


ASTRO_MASK_STREAM = 7      # np.random.default_rng([seed, 7]): which neurons feed the astrocyte


def astro_mask(seed: int, density: float, n_res: int, n_input: int) -> np.ndarray:
    """The neurons that feed the astrocyte at connection density `density` (0 < D <= 1), float32 [N]:
    ceil(D * n_res) reservoir neurons (+1) and ceil(D * n_input) inputs (-1), drawn without replacement
    from the run seed; the others 0 (docs/model.md#the-astrocyte)."""
    rng = np.random.default_rng([int(seed), ASTRO_MASK_STREAM])
    mask = np.zeros(n_res + n_input, np.float32)
    mask[rng.choice(n_res, math.ceil(density * n_res), replace=False)] = 1.0
    mask[n_res + rng.choice(n_input, math.ceil(density * n_input), replace=False)] = -1.0
    return mask


def _save_weights(folder: RunFolder, name: str, net: Network, weights) -> None:
    syn = net.synapses()
    folder.save_npz(name, post=syn.post, pre=syn.pre, weights=np.asarray(weights, np.float32),
                    n_neurons=np.int64(net.n_neurons))


# ----------------------------------------------------------------------------------------------
# Phase: init (NALSM, LSM+STDP, LSM+AP-STDP)
# ----------------------------------------------------------------------------------------------

INIT_CHUNK = 250          # snapshots per compiled call and per checkpoint (5000 ms of the stream)


def _init_phase(config, folder: RunFolder, net, w_start, pool, timings, log, position=None) -> np.ndarray:
    """One stream of `init_samples` shuffled training samples, 20 ms each, batch 1
    (docs/model.md#the-init-phase);
    checkpointed every chunk so that an interrupted init resumes.  Returns W_INI [n_syn].  A damaged
    W_INI.npz is derived again from the checkpoint, a damaged checkpoint by starting the phase again."""
    syn = net.synapses()
    try:
        saved = folder.read_npz("W_INI.npz", run_checks.weights(syn.post, syn.pre, net.n_neurons))
        if saved is not None:
            return saved["weights"]
    except DamagedFile as exc:
        _recovering(log, exc, "deriving it again from the init phase's checkpoint")
        folder.remove("W_INI.npz")
    from lsm_core.engines.interface import StreamCarry
    from lsm_core.engines.simulator import plastic_simulator

    order = np.random.default_rng([config.seed, 4]).permutation(len(pool))[: config.init_samples]
    starts = _init_window_starts(config)
    duration = PAPER.protocol.init_duration_ms
    zeros = np.zeros((1, net.n_neurons), np.float32)
    carry, done = StreamCarry(w_start[np.newaxis], zeros, zeros), 0
    try:
        saved = folder.read_npz("init_state.npz", run_checks.init_state(net.n_syn, net.n_neurons,
                                                                        config.init_samples))
    except DamagedFile as exc:
        _recovering(log, exc, "running the init phase again from its start")
        folder.remove("init_state.npz")
        saved = None
    if saved is not None:
        carry = StreamCarry(saved["weights"].astype(np.float32), saved["trace"].astype(np.float32),
                            saved["calcium"].astype(np.float32))
        done = int(saved["done"])
    rule = config.model_spec.init_rule
    log(f"init phase: {rule} over {config.init_samples} shuffled training samples x {duration} ms, batch 1"
        + (f" (resuming after {done})" if done else ""))
    simulator = plastic_simulator(net, w_start, rule, "init", _sim_params(config, net), engine=config.engine)
    position = position or Position()
    with progress_bar(config.init_samples, "init phase", "sample", initial=done) as bar:
        while done < config.init_samples:
            position.at = f"the init phase, {done} of {config.init_samples} samples done"
            start_time = time.perf_counter()
            stream = np.arange(done, min(done + INIT_CHUNK, config.init_samples))
            run = simulator.run(pool.inputs(order[stream], duration, starts[stream]),
                                sample_keys(config.seed, "init", stream), steps=duration, record=False, start=carry)
            carry, done = StreamCarry(run.weights, run.trace, run.calcium), int(stream[-1]) + 1
            folder.save_npz("init_state.npz", weights=carry.weights, trace=carry.trace, calcium=carry.calcium,
                            done=np.int64(done))
            _add_time(folder, timings, "init", time.perf_counter() - start_time)
            bar.set_postfix(rate_hz=f"{run.counts.mean() * 1000.0 / duration:.1f}", refresh=False)
            bar.update(len(stream))
    _save_weights(folder, "W_INI.npz", net, carry.weights[0])
    return carry.weights[0]


def _init_window_starts(config: RunConfig) -> np.ndarray:
    """Start (ms) of each init snapshot's window, int64 [init_samples]: 0 for images; for event
    recordings a uniform integer in [1, 278] (docs/model.md#the-init-phase), one per snapshot, drawn from
    the run seed."""
    if config.dataset_spec.mode != "event":
        return np.zeros(config.init_samples, np.int64)
    rng = np.random.default_rng([config.seed, 4, 1])      # the init phase's stream (4), sub-stream 1
    return rng.integers(1, PAPER.protocol.nmnist_init_start_max, size=config.init_samples, endpoint=True)


# ----------------------------------------------------------------------------------------------
# Phase: spike counts
# ----------------------------------------------------------------------------------------------

def _raster_batch(start: int, batch_size: int, every: int = PAPER.protocol.raster_every) -> bool:
    """True for the batch holding sample 0, `every`, 2*`every`, ... of its split."""
    return (start + batch_size - 1) // every > (start - 1) // every


def compute_devices(config: RunConfig):
    """TensorFlow devices to split each batch over: every visible GPU when several were asked for."""
    import tensorflow as tf

    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    return gpus if config.gpu != "cpu" and len(gpus) > 1 else None


def _spike_count_phase(config, folder: RunFolder, net, weights, splits, timings, log, devices=None,
                       position=None) -> dict:
    """Simulate every split block by block; returns {split: {"counts", "labels", "index"}}.

    A damaged counts_<split>.npz is derived again by simulating that split only; a damaged block file
    by simulating that block again."""
    batch, per_block = config.batch_size, config.batches_per_block
    block_size = batch * per_block
    position = position or Position()
    stored = {split: _stored_counts(config, folder, net, splits[split], split, log) for split in SPLIT_ORDER}
    todo = {s: [b for b in range(config.split_sizes[s] // block_size)
                if not _has_good_block(config, folder, net, s, b, log)]
            for s in SPLIT_ORDER if stored[s] is None}
    remaining = sum(len(blocks) for blocks in todo.values()) * block_size
    if remaining:
        done = sum(config.split_sizes.values()) - remaining
        log(f"spike counts: {remaining} samples to simulate" + (f" ({done} already done)" if done else ""))
        simulate_batch = batch_simulator(config, net, weights, devices, log, config.count_bins)
        rows = raster_rows(batch)
        starts = [(split, block * block_size + b * batch) for split, blocks in todo.items() for block in blocks
                  for b in range(per_block)]                # every batch to simulate, in the order below
        batch_inputs = _read_ahead(lambda item: splits[item[0]].inputs(np.arange(item[1], item[1] + batch),
                                                                       config.duration_ms), starts)
        with progress_bar(remaining, "spike counts", "sample") as bar:
            for split, blocks in todo.items():
                data = splits[split]
                for block in blocks:
                    n_blocks = config.split_sizes[split] // block_size
                    position.at = f"the spike counts, {split} block {block + 1} of {n_blocks}"
                    start_time = time.perf_counter()
                    block_counts, rasters, raster_index, astro = [], [], [], []
                    for b in range(per_block):
                        start = block * block_size + b * batch
                        index = np.arange(start, start + batch)
                        record = rows if _raster_batch(start, batch) else ()
                        counts, raster, astro_rows = simulate_batch(
                            next(batch_inputs), sample_keys(config.seed, split, index), np.asarray(record, np.int64))
                        block_counts.append(counts)
                        if len(record):
                            rasters.append(raster)
                            raster_index.append(index[record])
                            astro.append(astro_rows)
                        rate = counts.sum() / counts.shape[0] / net.n_res * 1000.0 / config.duration_ms
                        bar.set_postfix(split=split, rate_hz=f"{rate:.1f}", refresh=False)
                        bar.update(batch)
                    index = np.arange(block * block_size, (block + 1) * block_size)
                    folder.save_block(split, block, counts=np.concatenate(block_counts).astype(np.int32),
                                      labels=data.labels[index], index=index,
                                      raster_spikes=_stack(rasters, (0, config.duration_ms, net.n_neurons), bool),
                                      raster_index=_stack(raster_index, (0,), np.int64),
                                      raster_astro=_stack(astro, (0, config.duration_ms), np.float32))
                    _add_time(folder, timings, f"spike_counts_{split}", time.perf_counter() - start_time)
    return {split: stored[split] if stored[split] is not None else _assemble(config, folder, net, split, block_size, log)
            for split in SPLIT_ORDER}


def _stored_counts(config, folder: RunFolder, net, data, split: str, log) -> dict | None:
    """counts_<split>.npz after its checks (its labels must be the data's), or None when it is not there
    yet; a damaged one is deleted, with a log line, so that the split is simulated again."""
    n = config.split_sizes[split]
    check = run_checks.counts(0, n, net.n_res, config.duration_ms, config.count_bins)

    def check_with_labels(arrays):
        check(arrays)
        if not np.array_equal(arrays["labels"], data.labels[:n]):
            raise ValueError(f"its labels are not those of the first {n} {split} samples of the data")
    name = folder.counts_file(split).name
    try:
        return folder.read_npz(name, check_with_labels)
    except DamagedFile as exc:
        _recovering(log, exc, f"simulating the {split} split again")
        folder.remove(name)
        return None


def _has_good_block(config, folder: RunFolder, net, split: str, block: int, log) -> bool:
    """True when the block file is there and passes its checks; a damaged one is deleted (log line)."""
    try:
        return folder.read_block(split, block, _block_check(config, net, block)) is not None
    except DamagedFile as exc:
        _recovering(log, exc, f"simulating that {split} block again")
        folder.remove_block(split, block)
        return False


def _block_check(config, net, block: int) -> run_checks.Check:
    size = config.batch_size * config.batches_per_block
    first = block * size
    return run_checks.block(first, size, net.n_res, net.n_neurons, config.duration_ms,
                            raster_index(config.batch_size, first, size), config.count_bins)


def raster_index(batch_size: int, first: int, n: int) -> np.ndarray:
    """Samples first..first+n-1 (whole batches) whose rasters are kept, int64 [k]: `raster_rows` of
    every batch that holds sample 0, raster_every, 2 raster_every, ... of its split."""
    rows = raster_rows(batch_size)
    parts = [start + rows for start in range(first, first + n, batch_size) if _raster_batch(start, batch_size)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def _read_ahead(load: Callable, items) -> Iterator:
    """Yield load(item) for each item in order, loading the next item in a background thread while the
    caller simulates the current one (reading and binning event recordings then costs no time)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as pool:
        pending = None
        for item in items:
            following = pool.submit(load, item)
            if pending is not None:
                yield pending.result()
            pending = following
        if pending is not None:
            yield pending.result()


def binned_counts(spikes: np.ndarray, bins: int) -> np.ndarray:
    """Spike counts per time bin, int32 [B, bins, N], from spikes bool [B, T, N]: step t falls in bin
    floor(t * bins / T), so the bins are equal when bins divides T (25 ms each for 10 bins of 250 ms)."""
    steps = spikes.shape[1]
    starts = -(-np.arange(bins) * steps // bins)             # ceil(k * T / bins): first step of bin k
    return np.add.reduceat(spikes, starts, axis=1, dtype=np.int32) if steps else \
        np.zeros((spikes.shape[0], bins, spikes.shape[2]), np.int32)


def batch_simulator(config, net, weights, devices, log, count_bins: int = 1):
    """A function (inputs, keys, raster rows) -> (counts, rasters, astrocyte traces) for one batch of
    the spike-count phase: fixed weights for LSM and LSM+AP-STDP, learning within every sample (from
    W_INI at every batch) for NALSM and LSM+STDP.  Either way the rows are split over `devices`
    (None: no placement).  counts are int32 [B, N_res], or [B, count_bins, N_res] in time bins (then
    every row's raster is recorded and binned)."""
    run = _batch_simulator(config, net, weights, devices, log)
    if count_bins == 1:
        return run

    def run_binned(inputs, keys, rows):
        every = np.arange(len(keys))
        _, raster, astro = run(inputs, keys, every)
        return binned_counts(raster[:, :, :net.n_res], count_bins), raster[rows], astro[rows]
    return run_binned


def _batch_simulator(config, net, weights, devices, log):
    from lsm_core.engines.simulator import liquid_simulator, plastic_simulator

    rule, steps = config.model_spec.sample_rule, config.duration_ms
    if config.engine == "events":
        devices = None  # the event-driven engine runs on the CPU's threads
    if devices:         # both simulators split the rows of a batch the same way
        log(f"each batch is split over {len(devices)} devices: {', '.join(devices)}")
    if rule == "static":
        simulator = liquid_simulator(net, weights, engine=config.engine, devices=devices)

        def run_static(inputs, keys, rows):
            counts, raster = simulator.run(inputs, keys, steps=steps, record_rows=rows)
            return counts, raster, np.zeros((len(rows), steps), np.float32)
        return run_static
    if config.reference_batch_quirk:
        log("--reference-batch-quirk: only the first sample of each batch learns, as in the paper's tools")
    simulator = plastic_simulator(net, weights, rule, "sample", _sim_params(config, net), engine=config.engine,
                                  reference_batch_quirk=config.reference_batch_quirk, devices=devices,
                                  final_state=False)

    def run_plastic(inputs, keys, rows):
        run = simulator.run(inputs, keys, steps=steps, record_rows=rows)
        return run.counts, run.spikes, run.astro[rows]
    return run_plastic


def _stack(parts, empty_shape, dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(empty_shape, dtype)


def _assemble(config, folder: RunFolder, net, split: str, block_size: int, log) -> dict:
    """Join a split's blocks into counts_<split>.npz and add its rasters to rasters.npz."""
    n_blocks = config.split_sizes[split] // block_size
    blocks = [folder.load_block(split, b, _block_check(config, net, b)) for b in range(n_blocks)]
    data = {"counts": np.concatenate([b["counts"] for b in blocks]),
            "labels": np.concatenate([b["labels"] for b in blocks]),
            "index": np.concatenate([b["index"] for b in blocks])}
    try:
        rasters = folder.read_npz("rasters.npz") or {}
    except DamagedFile as exc:      # the other splits' rasters are checked, and recovered, by `_rasters`
        _recovering(log, exc, f"starting it again with the {split} split's rasters (the other splits' rasters "
                              f"are simulated again after the spike counts)")
        rasters = {}
    rasters[f"{split}_spikes"] = np.concatenate([b["raster_spikes"] for b in blocks])
    rasters[f"{split}_index"] = np.concatenate([b["raster_index"] for b in blocks])
    rasters[f"{split}_astro"] = np.concatenate([b["raster_astro"] for b in blocks])
    rasters[f"{split}_labels"] = data["labels"][rasters[f"{split}_index"]]
    folder.save_npz("rasters.npz", **rasters)
    folder.save_npz(folder.counts_file(split).name, **data)
    for b in range(n_blocks):
        folder.remove_block(split, b)
    return data


def _rasters(config, folder: RunFolder, net, weights, splits, log, devices=None, position=None) -> dict:
    """rasters.npz after its checks.  A split whose part is missing or damaged gets its rasters back by
    simulating again only the batches whose rasters are kept (the same inputs and keys give the same
    spikes), with one log line."""
    try:
        rasters, reason = folder.read_npz("rasters.npz") or {}, None
    except DamagedFile as exc:
        rasters, reason = {}, exc.reason
        folder.remove("rasters.npz")
    indices = {split: raster_index(config.batch_size, 0, config.split_sizes[split]) for split in SPLIT_ORDER}
    bad = {}
    for split in SPLIT_ORDER:
        try:
            run_checks.split_rasters(split, indices[split], net.n_neurons, config.duration_ms)(rasters)
        except ValueError as exc:
            bad[split] = reason or str(exc)
    if not bad:
        return rasters
    batch = config.batch_size
    starts = {split: [start for start in range(0, config.split_sizes[split], batch) if _raster_batch(start, batch)]
              for split in bad}
    what = f"is damaged ({reason})" if reason else ("lacks the rasters of " + "; ".join(
        f"{split} ({problem})" for split, problem in bad.items()))
    log(f"rasters.npz {what}: simulating again the {sum(map(len, starts.values()))} batches whose rasters "
        f"it keeps ({', '.join(bad)})")
    (position or Position()).at = "the rasters (simulating again the batches whose rasters are kept)"
    simulate_batch = batch_simulator(config, net, weights, devices, log)
    rows = np.asarray(raster_rows(batch), np.int64)
    for split, split_starts in starts.items():
        spikes, astro = [], []
        for start in split_starts:
            index = np.arange(start, start + batch)
            _, raster, astro_rows = simulate_batch(splits[split].inputs(index, config.duration_ms),
                                                   sample_keys(config.seed, split, index), rows)
            spikes.append(raster)
            astro.append(astro_rows)
        rasters[f"{split}_spikes"] = _stack(spikes, (0, config.duration_ms, net.n_neurons), bool)
        rasters[f"{split}_index"] = indices[split]
        rasters[f"{split}_astro"] = _stack(astro, (0, config.duration_ms), np.float32)
        rasters[f"{split}_labels"] = splits[split].labels[indices[split]]
    folder.save_npz("rasters.npz", **rasters)
    return rasters


def _add_time(folder: RunFolder, timings: dict, key: str, seconds: float) -> None:
    timings[key] = round(timings.get(key, 0.0) + seconds, 3)
    folder.write_json("timings.json", timings)


# ----------------------------------------------------------------------------------------------
# Phase: readout
# ----------------------------------------------------------------------------------------------

READOUT_STATE = "readout_state.npz"
READOUT_PREVIOUS = "readout_state_previous.npz"     # the checkpoint before it: a fallback if the last is damaged


def _readout_phase(config, folder: RunFolder, counts: dict, timings: dict, log, position=None) -> tuple:
    """Train (or resume) the readout; returns (the summary's readout entries, the history rows).

    Every chunk of epochs is checkpointed: readout_state.npz holds the state and the history so far, the
    previous checkpoint stays beside it as readout_state_previous.npz, and history.csv is written from
    the state.  A damaged checkpoint falls back to the previous one, else the readout is trained again
    from zero; a damaged history.csv is written again from the state."""
    from lsm_core.analysis.readout import best_epoch, normalise_counts, train_readout

    features = {s: (normalise_counts(total_counts(counts[s]["counts"]), config.batch_size), counts[s]["labels"])
                for s in SPLIT_ORDER}
    n_features = features["train"][0].shape[1]
    state, history = _resume_readout(folder, n_features, log)
    _check_history_csv(folder, history, log)
    start_epoch = state.epoch if state else 0
    position = position or Position()
    position.at = f"the readout, {start_epoch} of {config.readout_epochs} epochs done"
    if start_epoch < config.readout_epochs:
        log(f"readout: epochs {start_epoch + 1}..{config.readout_epochs} (Adadelta, batch {config.batch_size})")
        with progress_bar(config.readout_epochs, "readout", "epoch", initial=start_epoch) as bar:
            last = [time.perf_counter()]

            def checkpoint(new_state, rows):
                history.extend(rows)
                if folder.file(READOUT_STATE).exists():
                    folder.rename(READOUT_STATE, READOUT_PREVIOUS)
                folder.save_npz(READOUT_STATE, **new_state.to_arrays(), history=_history_array(history))
                position.at = f"the readout, {new_state.epoch} of {config.readout_epochs} epochs done"
                folder.write_text("history.csv", history_to_csv(history))
                _add_time(folder, timings, "readout", time.perf_counter() - last[0])
                last[0] = time.perf_counter()
                last_row = rows[-1]
                bar.set_postfix(valid=f"{last_row['valid_acc']:.4f}", test=f"{last_row['test_acc']:.4f}",
                                refresh=False)
                bar.update(len(rows))

            state, _ = train_readout(features["train"], features["valid"], features["test"],
                                     batch_size=config.batch_size, epochs=config.readout_epochs,
                                     state=state, on_epochs=checkpoint)
    elif start_epoch > config.readout_epochs:
        log(f"readout: the saved state has {start_epoch} epochs, more than the {config.readout_epochs} "
            f"asked for; reporting all {start_epoch}.")
    best, final = best_epoch(history), history[-1]
    folder.save_npz("readout.npz", best_weights=state.best_weights, best_bias=state.best_bias,
                    best_epoch=np.int64(state.best_epoch), final_weights=state.weights,
                    final_bias=state.bias, final_epoch=np.int64(state.epoch))
    return {"best_epoch": int(best["epoch"]), "best_valid_acc": float(best["valid_acc"]),
            "test_acc_at_best": float(best["test_acc"]), "train_acc_at_best": float(best["train_acc"]),
            "final_epoch": int(final["epoch"]), "final_train_acc": float(final["train_acc"]),
            "final_valid_acc": float(final["valid_acc"]), "final_test_acc": float(final["test_acc"])}, history


def _resume_readout(folder: RunFolder, n_features: int, log) -> tuple:
    """(state, history rows) of the last good readout checkpoint, or (None, []) to start from zero.

    The newest checkpoint is tried first, then the previous one.  Checkpoints written before the history
    was kept inside them take their history from history.csv (it must cover every epoch of the state)."""
    from lsm_core.analysis.readout import ReadoutState

    def check(arrays):
        state = ReadoutState.from_arrays(arrays)
        if state.n_features != n_features:
            raise ValueError(f"it has {state.n_features} inputs but the spike counts have {n_features}")
        if "history" in arrays:
            history = _history_rows(arrays["history"])
            if len(history) != state.epoch:
                raise ValueError(f"it holds {len(history)} epochs of history for {state.epoch} epochs")
            run_checks.history_rows(history)

    failures = []
    for name in (READOUT_STATE, READOUT_PREVIOUS):
        try:
            arrays = folder.read_npz(name, check)
        except DamagedFile as exc:
            failures.append(exc)
            folder.remove(name)
            continue
        if arrays is None:
            continue
        state = ReadoutState.from_arrays(arrays)
        history = _history_rows(arrays["history"]) if "history" in arrays else _history_from_csv(folder, state.epoch)
        if history is None:
            log("readout: history.csv does not match the saved readout state; training the readout again.")
            return None, []
        if failures:
            _recovering(log, failures[0], f"continuing the readout from the checkpoint before it (epoch {state.epoch})")
        return state, history
    if failures:
        _recovering(log, failures[0], "no good readout checkpoint is left, so the readout is trained again from zero")
    return None, []


def _history_from_csv(folder: RunFolder, epochs: int) -> list | None:
    """The first `epochs` rows of history.csv (a checkpoint made before history was kept inside it), or
    None when the file does not cover them."""
    try:
        text = folder.read_text("history.csv")
        rows = parse_history_csv(text or "")
        run_checks.history_rows(rows)
    except (DamagedFile, ValueError, TypeError):
        return None
    return rows[:epochs] if len(rows) >= epochs else None


def _check_history_csv(folder: RunFolder, history: list, log) -> None:
    """Write history.csv again from the readout state's history when it is damaged, missing or different."""
    expected = history_to_csv(history)
    try:
        if folder.read_text("history.csv") == expected:
            return
        damaged = None
    except DamagedFile as exc:
        damaged = exc
    if damaged is not None:
        _recovering(log, damaged, "writing it again from the readout state")
    if history or folder.file("history.csv").exists():
        folder.write_text("history.csv", expected)


def _history_array(history: list) -> np.ndarray:
    """History rows as float64 [epochs, 6] (columns HISTORY_COLUMNS), stored inside the readout state."""
    return np.array([[row[name] for name in HISTORY_COLUMNS] for row in history], np.float64).reshape(-1, 6)


def _history_rows(array: np.ndarray) -> list:
    if array.ndim != 2 or array.shape[1] != len(HISTORY_COLUMNS):
        raise ValueError(f"its history has shape {list(array.shape)}, expected [epochs, {len(HISTORY_COLUMNS)}]")
    return [{name: int(value) if name == "epoch" else float(value) for name, value in zip(HISTORY_COLUMNS, row)}
            for row in array.tolist()]


# ----------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------

def _plots(config, folder: RunFolder, net, w_start, w_ini, history: list, rasters: dict, log) -> None:
    """The run's figures, drawn from the checked results in memory.  Each is recorded in the manifest
    with a digest of its inputs, so that a re-run draws only the figures that are missing, damaged or
    out of date (after more readout epochs, say)."""
    title = f"{config.model} on {config.dataset_title}, VERSION {config.version}"
    figures = [("accuracy.png", (_history_array(history), title),
                lambda path: plots.plot_accuracy(history, path, title=title))]
    if len(rasters.get("valid_spikes", ())):
        sample = f"{title}: validation sample {int(rasters['valid_index'][0])} (digit {int(rasters['valid_labels'][0])})"
        figures.append(("raster.png", (rasters["valid_spikes"][0], net.n_exc, net.n_inh, sample),
                        lambda path: plots.plot_raster(rasters["valid_spikes"][0], path, net.n_exc, net.n_inh,
                                                       title=sample)))
        if config.model_spec.sample_rule == "nalsm":
            figures.append(("astrocyte.png", (rasters["valid_astro"], title),
                            lambda path: plots.plot_trace(rasters["valid_astro"], path,
                                                          ylabel="astrocyte A (depression rate)",
                                                          title=f"{title}: astrocyte during validation samples")))
    if config.model_spec.has_init_phase:
        classes = net.synapses().pre_class
        names = {EXC: "E→res", INH: "I→res", INPUT: "input→res"}
        by_class = [{name: weights[classes == c] for c, name in names.items()} for weights in (w_start, w_ini)]
        figures.append(("weights.png", (classes, w_start, w_ini, title),
                        lambda path: plots.plot_weight_histograms(
                            *by_class, path, title=f"{title}: weights before and after the init phase")))
    drawn = []
    for name, inputs, draw in figures:
        source = _digest(inputs)
        if not folder.is_current(name, source):
            folder.record(draw(folder.file(name)), source=source)
            drawn.append(name)
    log("plots: " + (", ".join(drawn) if drawn else "all up to date"))


def _digest(parts) -> str:
    """SHA-256 of a figure's inputs (arrays by dtype, shape and bytes; anything else by its repr)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(f"{part.dtype}{part.shape}".encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()
