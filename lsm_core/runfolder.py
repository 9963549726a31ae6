"""The run folder `train_data/ver_<VERSION>/` (SPEC 5): paths, identity, blocks, checkpoints, log.

File I/O only; the protocol that decides what to compute lives in `pipeline.py`.  Every file is
written atomically, so an interrupted run leaves only complete files behind, and a re-run with the
same identity (params.json) skips whatever is already there.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lsm_core.config import MODELS, PAPER, RunConfig
from lsm_core.errors import UserError
from lsm_core.runlock import LOCK_NAME
from lsm_core.storage import (
    as_json,
    atomic_save_npz,
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    load_npz,
    read_json_file,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_FORMAT = 1

# RunConfig fields that do not change any result, so a re-run may differ in them.
NON_IDENTITY_FIELDS = ("gpu", "version", "data_dir", "output_root", "networks_dir", "overwrite",
                       "require_gpu", "readout_epochs")


def run_identity(config: RunConfig, liquid_dims, network_sha256: str) -> dict:
    """Everything that determines a run's numbers: must match for a re-run to resume.

    `readout_epochs` is left out on purpose: a finished run re-run with more epochs continues
    training where it stopped, with the numbers an uninterrupted longer run would give.  `dims` is
    the liquid's actual size (the --dims option only sizes a liquid generated on the spot), and
    the liquid itself is pinned by its file's SHA-256.  N-MNIST runs record `dataset_simulated`, so a
    run on simulated recordings is never resumed as, or mistaken for, one on the real N-MNIST.  The
    engine is part of it (a run never mixes engines), once `pipeline.settle_engine` has replaced "auto".
    """
    identity = config_identity(config)
    identity["dims"] = [int(d) for d in liquid_dims]
    identity["network_sha256"] = network_sha256
    identity["constants"] = as_json(PAPER.as_dict())
    identity["params_format"] = PARAMS_FORMAT
    return identity                                 # compared with what params.json reads back


def config_identity(config: RunConfig) -> dict:
    """The part of `run_identity` that the answers and options alone decide (no liquid file needed):
    what a sweep compares with an existing run folder before it claims the VERSION."""
    identity = {k: v for k, v in asdict(config).items() if k not in NON_IDENTITY_FIELDS + ("dims",)}
    if config.dataset_spec.mode != "event":     # only N-MNIST has a simulated stand-in (`dataset_simulated`);
        identity.pop("dataset_simulated")       # image runs keep the identity they had before it existed
    if identity["engine"] != "events":          # runs on the XLA engine keep the identity they had before the
        identity.pop("engine")                  # event-driven engine existed ("auto" is settled by the run)
    return as_json(identity)


class RunFolder:
    """One VERSION's output folder."""

    def __init__(self, config: RunConfig, guard: Callable[[], None] | None = None):
        """`guard` is called before every write (the run lock's `check`: it raises once the lock is lost)."""
        self.path = run_folder_path(config.version, config.output_root or None)
        self.blocks_dir = self.path / "blocks"
        self._guard = guard or (lambda: None)

    # -- paths ------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    def counts_file(self, split: str) -> Path:
        return self.path / f"counts_{split}.npz"

    def block_file(self, split: str, block: int) -> Path:
        return self.blocks_dir / f"{split}_block_{block:05d}.npz"

    # -- creation and identity -----------------------------------------------------------------
    def open(self, identity: dict, run_info: dict, overwrite: bool) -> bool:
        """Create the folder or check that it belongs to this run; returns True when resuming.

        A folder whose params.json has another identity is refused (UserError) unless `overwrite`,
        which deletes it first.
        """
        params_path = self.file("params.json")
        self._guard()
        if overwrite and self.path.exists():
            contents = [p for p in self.path.iterdir() if not p.name.startswith(LOCK_NAME)]   # the lock stays
            if params_path.exists() or not contents:
                for path in contents:
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
            else:
                raise UserError(f"--overwrite refuses to delete {self.path}: it has no params.json, so it "
                                f"does not look like a run folder. Move it away or choose another VERSION.")
        resuming = False
        if params_path.exists():
            try:
                previous = json.loads(params_path.read_text(encoding="utf-8"))["identity"]
            except (OSError, ValueError, KeyError, TypeError):
                raise UserError(f"{params_path} is unreadable, so this run cannot be resumed safely. Use "
                                f"--overwrite to start VERSION again, or choose another VERSION.") from None
            if previous != identity:
                raise UserError(
                    f"{self.path} holds a run with different parameters ({describe_differences(previous, identity)}). "
                    f"Re-run with the same answers and options to resume it, choose another VERSION, or "
                    f"add --overwrite to delete it and start again.")
            resuming = True
        try:
            self.blocks_dir.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write_test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"cannot write to the run folder {self.path} ({exc.strerror or exc}). Choose a "
                            f"writable place with --output-root, or fix the folder's permissions.") from None
        atomic_write_json(params_path, {"identity": identity, "seed": identity["seed"], **run_info})
        return resuming

    # -- blocks of spike counts -------------------------------------------------------------------
    def has_block(self, split: str, block: int) -> bool:
        return self.block_file(split, block).exists()

    def save_block(self, split: str, block: int, **arrays) -> None:
        self._guard()
        atomic_save_npz(self.block_file(split, block), **arrays)

    def load_block(self, split: str, block: int) -> dict:
        try:
            return load_npz(self.block_file(split, block))
        except (OSError, ValueError) as exc:
            raise UserError(f"block file {self.block_file(split, block)} is damaged ({exc}); delete it and "
                            f"re-run to recompute that block.") from None

    # -- generic npz / json ------------------------------------------------------------------------
    def save_npz(self, name: str, **arrays) -> Path:
        self._guard()
        return atomic_save_npz(self.file(name), **arrays)

    def load_npz(self, name: str) -> dict:
        try:
            return load_npz(self.file(name))
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.file(name)} is damaged ({exc}); delete it and re-run to recompute it.") from None

    def write_json(self, name: str, obj) -> Path:
        self._guard()
        return atomic_write_json(self.file(name), obj)

    def read_json(self, name: str, default=None):
        """The JSON content of file `name`, or `default` when it is missing or unreadable."""
        content = read_json_file(self.file(name))
        return default if content is None else content

    def write_text(self, name: str, text: str) -> Path:
        self._guard()
        return atomic_write_text(self.file(name), text)


def describe_differences(previous: dict, current: dict, prefix: str = "") -> str:
    """"key: was A, now B; ..." for every (nested) key whose value differs."""
    keys = sorted(set(previous) | set(current))
    out = []
    for key in keys:
        a, b = previous.get(key, "<missing>"), current.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            inner = describe_differences(a, b, f"{prefix}{key}.")
            if inner:
                out.append(inner)
        elif a != b:
            out.append(f"{prefix}{key}: was {a}, now {b}")
    return "; ".join(out)


class RunLog:
    """Messages to the terminal and, time-stamped, appended to run.log."""

    def __init__(self, path: Path | None = None, echo: bool = True):
        self.path = path
        self.echo = echo

    def __call__(self, message: str) -> None:
        if self.echo:
            print(message, flush=True)
        if self.path is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.writelines(f"{stamp}  {line}\n" for line in str(message).splitlines() or [""])


def raster_rows(batch_size: int, n_keep: int = PAPER.protocol.raster_samples) -> np.ndarray:
    """Rows of a batch whose rasters are kept: `n_keep` evenly spaced (all rows of a smaller batch)."""
    if batch_size <= n_keep:
        return np.arange(batch_size)
    return np.unique(np.linspace(0, batch_size - 1, n_keep).round().astype(np.int64))


# ----------------------------------------------------------------------------------------------
# history.csv: the readout's epochs
# ----------------------------------------------------------------------------------------------

HISTORY_COLUMNS = ("epoch", "train_loss", "valid_loss", "train_acc", "valid_acc", "test_acc")


def _format(value) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))  # shortest text that reads back to the same float


def history_to_csv(rows: Iterable[dict]) -> str:
    """CSV text with a header line and one line per epoch (floats written so they read back exactly)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for row in rows:
        writer.writerow([_format(row[name]) if name != "epoch" else str(int(row[name]))
                         for name in HISTORY_COLUMNS])
    return buffer.getvalue()


def parse_history_csv(text: str) -> list:
    """Rows of a history CSV text (as written by `history_to_csv`)."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or tuple(reader.fieldnames[:len(HISTORY_COLUMNS)]) != HISTORY_COLUMNS:
        raise ValueError(f"history CSV must start with the columns {','.join(HISTORY_COLUMNS)}")
    rows = []
    for line in reader:
        rows.append({name: int(line[name]) if name == "epoch" else float(line[name])
                     for name in HISTORY_COLUMNS})
    return rows


def read_history_csv(path) -> list:
    """Rows of a history.csv file: dicts with int `epoch` and float losses and accuracies."""
    with open(path, "r", encoding="utf-8", newline="") as handle:
        return parse_history_csv(handle.read())


# ----------------------------------------------------------------------------------------------
# Reading a finished (or unfinished) run back: the analysis tools
# ----------------------------------------------------------------------------------------------

def run_folder_path(version: int, output_root=None) -> Path:
    """`<output_root>/ver_<version>` (default root: the repository's train_data/)."""
    root = Path(output_root) if output_root is not None else REPO_ROOT / "train_data"
    return root / f"ver_{int(version)}"


def open_run(version: int, output_root=None) -> tuple:
    """(folder, params dict) of an existing run; a missing folder or params.json is a UserError."""
    folder = run_folder_path(version, output_root)
    where = f"under {folder.parent}" + ("" if output_root is not None else " (give --output-root for another place)")
    if not folder.is_dir():
        raise UserError(f"there is no run VERSION {version}: {folder} does not exist. Check the VERSION "
                        f"number and the folder {where}.")
    params = read_json_file(folder / "params.json")
    if not isinstance(params, dict) or not isinstance(params.get("identity"), dict):
        raise UserError(f"{folder} has no readable params.json, so it is not a run folder this toolkit "
                        f"can analyse. Check the VERSION number and the folder {where}.")
    return folder, params


def run_config(params: dict, output_root=None) -> RunConfig:
    """The RunConfig a run was started with, from its params.json (`run.config`, else `identity`).

    `output_root` (when given) replaces the recorded one, so a moved run folder still works.
    """
    recorded = (params.get("run") or {}).get("config") or params.get("identity") or {}
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    values = {k: v for k, v in recorded.items() if k in fields}
    missing = [name for name in ("model", "dataset", "version", "net_num", "batch_size", "batches_per_block",
                                 "scalars") if name not in values]
    if missing or values.get("model") not in MODELS:
        raise UserError(f"params.json of this run lacks {', '.join(missing) or 'a known model'}; it was not "
                        f"written by this version of the toolkit and cannot be analysed.")
    values.setdefault("gpu", "cpu")
    values.setdefault("engine", "xla")          # runs made before the event-driven engine existed
    values["dims"] = tuple(values.get("dims") or (0, 0, 0))
    if output_root is not None:
        values["output_root"] = str(output_root)
    return RunConfig(**values)


def load_run_network(config: RunConfig, params: dict, networks_dir=None):
    """The run's liquid (`Network_<NET_NUM>.npz` from `networks_dir`, default the folder the run used),
    checked against the SHA-256 recorded in params.json; a missing or changed file is a UserError."""
    from lsm_core.network import Network, network_path

    path = network_path(config.net_num, networks_dir if networks_dir is not None else config.networks_dir)
    if not path.exists():
        raise UserError(f"the run's liquid {path} does not exist. Point --networks-dir at the folder that holds "
                        f"Network_{config.net_num}.npz (the network the run was made with).")
    recorded = params.get("identity", {}).get("network_sha256")
    if recorded and recorded != file_sha256(path):
        raise UserError(f"{path} is not the liquid this run was made with (its SHA-256 differs from the one in "
                        f"params.json); it was regenerated or replaced. Point --networks-dir at the original "
                        f"Network_{config.net_num}.npz.")
    return Network.load(path)
