"""The run folder `train_data/ver_<VERSION>/` (docs/file-formats.md#the-run-folder): paths, identity,
blocks, checkpoints, log.

File I/O only; the protocol that decides what to compute lives in `pipeline.py`.  Every file is
written atomically, so an interrupted run leaves only complete files behind, and a re-run with the
same identity (params.json) skips whatever is already there.

Every file written through `RunFolder` is recorded with its size and SHA-256 in `manifest.json`, and
every file read back through it is checked against that record and then against its expected format
(`checks.py`) before use: a file that was cut short, overwritten, changed by a single byte or
deleted raises `DamagedFile` instead of giving a traceback or silently different numbers.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lsm_core import places
from lsm_core.config import MODELS, PAPER, RunConfig
from lsm_core.errors import DamagedFile, UserError
from lsm_core.runs.lock import LOCK_NAME
from lsm_core.storage import (
    WriteFailed,
    as_json,
    atomic_write_bytes,
    bytes_sha256,
    file_sha256,
    json_bytes,
    load_npz,
    npz_bytes,
    read_json_file,
)

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
    if identity["count_bins"] == 1:             # runs that store totals keep the identity they had before
        identity.pop("count_bins")              # time bins existed
    if identity["astro_density"] == 1.0:        # and runs whose astrocyte sees every neuron, the one before
        identity.pop("astro_density")           # the density ablation existed
    return as_json(identity)


MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
# The fix an analysis tool gives for a damaged file of a run: the run itself derives such files again.
RERUN_TO_REPAIR = ("Re-run the run's own script with the same answers (it checks every file and derives "
                   "damaged ones again), then this command.")


class Manifest:
    """manifest.json: the size and SHA-256 of every file a run wrote, keyed by its path in the folder
    ("counts_test.npz", "blocks/train_block_00003.npz").  run.log is not in it: it is only appended to,
    never read back.

    `status` says what was found when the folder was opened: "ok"; "missing" (a new folder, or one
    written before manifests existed); or "damaged".  In the last two cases the files on disk are
    checked by their format alone, and recorded as they are read or written again.
    """

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict = {}
        self.status = "missing"
        if path.exists():
            content = read_json_file(path)
            entries = content.get("files") if isinstance(content, dict) else None
            if isinstance(entries, dict) and all(_valid_entry(e) for e in entries.values()):
                self.entries, self.status = entries, "ok"
            else:
                self.status = "damaged"

    def problem(self, name: str, path: Path) -> str | None:
        """Why the file `name` (at `path`) is not the one recorded; None when it matches or is not recorded.

        While a write is under way its record also accepts what the file was before (`was`, and absence
        when `absent_ok`): a process killed between the manifest and the file leaves one of the two."""
        entry = self.entries.get(name)
        if entry is None:
            return None
        versions = [entry, *entry.get("was", ())]
        try:
            size = path.stat().st_size
            if size not in [version["size"] for version in versions]:
                return f"it has {size} bytes where {MANIFEST_NAME} records {entry['size']}"
            if file_sha256(path) not in [version["sha256"] for version in versions if version["size"] == size]:
                return f"its SHA-256 differs from the one in {MANIFEST_NAME}: its bytes changed after it was written"
        except FileNotFoundError:
            return None if entry.get("absent_ok") else f"it is missing, but {MANIFEST_NAME} records it"
        except OSError as exc:
            return f"it cannot be read ({exc.strerror or exc})"
        return None

    def expect(self, name: str, size: int, sha256: str) -> None:
        """Record the version of file `name` about to be written, still accepting the one(s) on disk now."""
        previous = self.entries.get(name)
        was = [] if previous is None else [{"size": previous["size"], "sha256": previous["sha256"]},
                                           *previous.get("was", ())]
        self.entries[name] = {"size": int(size), "sha256": sha256, "was": was,
                              "absent_ok": previous is None or bool(previous.get("absent_ok"))}

    def resized(self, folder: Path) -> list:
        """Recorded files of `folder` that are missing or have another size than their record: a cheap
        check (no hashing) that sees files deleted or cut short."""
        out = []
        for name, entry in sorted(self.entries.items()):
            try:
                if (Path(folder) / name).stat().st_size not in [v["size"] for v in (entry, *entry.get("was", ()))]:
                    out.append(name)
            except FileNotFoundError:
                if not entry.get("absent_ok"):
                    out.append(name)
            except OSError:
                out.append(name)
        return out

    def record(self, name: str, size: int, sha256: str, source: str | None = None) -> None:
        """Record a file; `source` (optional) is a digest of what it was made from (see RunFolder.is_current)."""
        self.entries[name] = {"size": int(size), "sha256": sha256, **({"source": source} if source else {})}

    def forget(self, name: str) -> None:
        self.entries.pop(name, None)

    def to_bytes(self) -> bytes:
        return json_bytes({"format": MANIFEST_FORMAT, "files": self.entries})


def _valid_entry(entry) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("size"), int)
            and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64
            and isinstance(entry.get("source", ""), str) and isinstance(entry.get("absent_ok", False), bool)
            and isinstance(entry.get("was", []), list) and all(_valid_entry(v) for v in entry.get("was", [])))


class RunFolder:
    """One VERSION's output folder: its paths, and every write and read-back of its files (checked)."""

    def __init__(self, config: RunConfig, guard: Callable[[], None] | None = None, repair: str | None = None):
        """`guard` is called before every write (the run lock's `check`: it raises once the lock is lost);
        `repair` is the fix a DamagedFile message gives (default: delete the file and re-run).  Without a
        guard (an analysis tool reading a run) reading never writes: files missing from the manifest are
        checked by their format but not recorded."""
        self.path = run_folder_path(config.version, config.output_root or None)
        self.repair = repair or "Delete it and re-run the same command to recompute it."
        self.blocks_dir = self.path / "blocks"
        self._guard = guard or (lambda: None)
        self._records_reads = guard is not None
        self._manifest: Manifest | None = None
        self._networks = (config.net_num, config.networks_dir)

    @property
    def manifest(self) -> Manifest:
        """The folder's manifest, read on first use."""
        if self._manifest is None:
            self._manifest = Manifest(self.path / MANIFEST_NAME)
        return self._manifest

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
            if any((self.path / name).exists() for name in ("params.json", MANIFEST_NAME, "run.log")) or not contents:
                for path in contents:
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
                self._manifest = None
            else:
                raise UserError(f"--overwrite refuses to delete {self.path}: it has no params.json, manifest.json "
                                f"or run.log, so it does not look like a run folder. Move it away or choose another "
                                f"VERSION.")
        resuming = False
        if not params_path.exists() and "params.json" not in self.manifest.entries and self._holds_run_files():
            raise DamagedFile(params_path, "it is missing, but the folder holds files of a run; without it "
                              "there is no telling which answers and options made them",
                              fix="Restore it from a copy, or add --overwrite to start this VERSION again, or "
                                  "choose another VERSION.")
        if params_path.exists() or "params.json" in self.manifest.entries:
            previous = self._recorded_identity(params_path)
            if previous != identity:
                damage = self.manifest.problem("params.json", params_path)
                if damage:
                    raise DamagedFile(params_path, damage + "; it holds what this run is (its answers and "
                                      "options), which cannot be derived again",
                                      fix="Restore it from a copy, or add --overwrite to start this VERSION "
                                          "again, or choose another VERSION.")
                changes = describe_differences(previous, identity)
                if set(changes) == {"network_sha256"}:
                    from lsm_core.model.network import network_path
                    path = network_path(*self._networks)
                    raise UserError(
                        f"the liquid {path} is not the one this run was made with: its SHA-256 differs from "
                        f"the one in {params_path} (it was regenerated, replaced or damaged). Restore the "
                        f"original Network file (or point --networks-dir at it) to resume, or add "
                        f"--overwrite to start this VERSION again with this liquid.")
                raise UserError(
                    f"{self.path} holds a run with different parameters ({'; '.join(changes.values())}). "
                    f"Re-run with the same answers and options to resume it, choose another VERSION, or "
                    f"add --overwrite to delete it and start again.")
            resuming = True
        try:
            if self.blocks_dir.is_file() or self.blocks_dir.is_symlink() and not self.blocks_dir.is_dir():
                self.blocks_dir.unlink()        # a file where the blocks' folder belongs: blocks are derivable
            self.blocks_dir.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write_test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"cannot write to the run folder {self.path} ({exc.strerror or exc}). Choose a "
                            f"writable place with --output-root, or fix the folder's permissions.") from None
        self.write_json("params.json", {"identity": identity, "seed": identity["seed"], **run_info})
        return resuming

    def _recorded_identity(self, params_path: Path) -> dict:
        """The identity in params.json; an unreadable file is DamagedFile (it cannot be derived again)."""
        try:
            previous = json.loads(params_path.read_text(encoding="utf-8"))["identity"]
            if not isinstance(previous, dict):
                raise TypeError("its identity is not a mapping")
            return previous
        except FileNotFoundError:
            reason = f"it is missing, but {MANIFEST_NAME} records it"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = (self.manifest.problem("params.json", params_path)
                      or f"it cannot be read as this toolkit's params.json ({type(exc).__name__}: {exc})")
        raise DamagedFile(params_path, reason + "; it holds what this run is (its answers and options), which "
                          "cannot be derived again, so the run cannot be resumed safely",
                          fix="Restore it from a copy, or add --overwrite to start this VERSION again, or "
                              "choose another VERSION.")

    def _holds_run_files(self) -> bool:
        """True when the folder has files a run writes (not counting the lock, run.log and empty folders)."""
        if not self.path.is_dir():
            return False
        return any(path.is_file() and not path.name.startswith((LOCK_NAME, ".")) and path.name != "run.log"
                   for path in self.path.rglob("*"))

    # -- writing: atomic, and recorded in the manifest ----------------------------------------------
    def name_of(self, path: Path) -> str:
        """The manifest key of a file in this folder ("blocks/train_block_00003.npz")."""
        return Path(path).relative_to(self.path).as_posix()

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Write file `name` atomically and record its size and SHA-256 in the manifest: first as expected
        (the file as it is now still accepted), then, once the file is in place, as the only version; so
        a process killed at any moment leaves a folder whose files all match the manifest."""
        self._guard()
        size, digest = len(data), bytes_sha256(data)
        self.manifest.expect(name, size, digest)
        self._save_manifest()
        path = atomic_write_bytes(self.file(name), data)
        self.manifest.record(name, size, digest)
        self._save_manifest()
        return path

    def record(self, path: Path, source: str | None = None) -> Path:
        """Record a file written into the folder by other means (a plot) in the manifest, with `source`, a
        digest of what it was made from, when given."""
        self.manifest.record(self.name_of(path), Path(path).stat().st_size, file_sha256(path), source)
        self._save_manifest()
        return Path(path)

    def is_current(self, name: str, source: str) -> bool:
        """True when file `name` is there, matches its record, and was made from `source` (a digest of its
        inputs): a figure that need not be drawn again."""
        entry = self.manifest.entries.get(name)
        return (entry is not None and entry.get("source") == source
                and self.manifest.problem(name, self.file(name)) is None)

    def remove(self, name: str) -> None:
        """Delete file `name` (if there) and its manifest record."""
        self._guard()
        path = self.file(name)
        if path.is_dir() and not path.is_symlink():     # something put a folder where the file belongs
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        if name in self.manifest.entries:
            self.manifest.forget(name)
            self._save_manifest()

    def rename(self, name: str, new_name: str) -> None:
        """Move file `name` over `new_name` atomically, and its manifest record with it.  The record moves
        first, so that a kill at any moment leaves at least one of the two files matching its record."""
        self._guard()
        entry = self.manifest.entries.get(name)
        if entry is None:
            self.manifest.forget(new_name)
        else:
            self.manifest.record(new_name, entry["size"], entry["sha256"])
        self._save_manifest()
        try:
            os.replace(self.file(name), self.file(new_name))
        except OSError as exc:
            raise WriteFailed(self.file(new_name), exc) from None
        self.manifest.forget(name)
        self._save_manifest()

    def _save_manifest(self) -> None:
        atomic_write_bytes(self.file(MANIFEST_NAME), self.manifest.to_bytes())

    def save_npz(self, name: str, **arrays) -> Path:
        return self.write_bytes(name, npz_bytes(**arrays))

    def write_json(self, name: str, obj) -> Path:
        return self.write_bytes(name, json_bytes(obj))

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode("utf-8"))

    # -- reading back: checked against the manifest, then against the format ---------------------------
    def read_npz(self, name: str, check: Callable[[dict], None] | None = None) -> dict | None:
        """The arrays of file `name`, or None when it does not exist and was never recorded (not written
        yet).  DamagedFile when it is missing although recorded, differs from its record, cannot be read,
        or fails `check` (a function that raises ValueError naming what is wrong)."""
        return self._read(name, load_npz, check)

    def read_json(self, name: str, check: Callable | None = None):
        """Like `read_npz` for a JSON file: its content, or None when it was never written."""
        return self._read(name, lambda path: json.loads(Path(path).read_text(encoding="utf-8")), check)

    def read_text(self, name: str, check: Callable | None = None) -> str | None:
        """Like `read_npz` for a text file (UTF-8)."""
        return self._read(name, lambda path: Path(path).read_text(encoding="utf-8"), check)

    def load_npz(self, name: str, check: Callable[[dict], None] | None = None) -> dict:
        """Like `read_npz` for a file that must exist: a missing one is DamagedFile too."""
        content = self.read_npz(name, check)
        if content is None:
            raise DamagedFile(self.file(name), "it does not exist", self.repair)
        return content

    def _read(self, name: str, parse: Callable, check: Callable | None):
        path = self.file(name)
        problem = self.manifest.problem(name, path)
        if problem:
            raise DamagedFile(path, problem, self.repair)
        try:
            content = parse(path)
            if check is not None:
                check(content)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
            reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            raise DamagedFile(path, reason, self.repair) from None
        if name not in self.manifest.entries and self._records_reads:  # written before manifests existed, or
            self.record(path)           # the manifest was lost: it passed its format checks, so record it from now on
        return content

    # -- blocks of spike counts -------------------------------------------------------------------
    def has_block(self, split: str, block: int) -> bool:
        return self.block_file(split, block).exists()

    def save_block(self, split: str, block: int, **arrays) -> None:
        self.save_npz(self.name_of(self.block_file(split, block)), **arrays)

    def read_block(self, split: str, block: int, check: Callable[[dict], None] | None = None) -> dict | None:
        """The arrays of one block file (see `read_npz`)."""
        return self.read_npz(self.name_of(self.block_file(split, block)), check)

    def load_block(self, split: str, block: int, check: Callable[[dict], None] | None = None) -> dict:
        """Like `read_block` for a block that must exist."""
        return self.load_npz(self.name_of(self.block_file(split, block)), check)

    def remove_block(self, split: str, block: int) -> None:
        self.remove(self.name_of(self.block_file(split, block)))


def describe_differences(previous: dict, current: dict, prefix: str = "") -> dict:
    """{"key": "key: was A, now B"} for every (nested, dotted) key whose value differs."""
    keys = sorted(set(previous) | set(current))
    out = {}
    for key in keys:
        a, b = previous.get(key, "<missing>"), current.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(describe_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out[f"{prefix}{key}"] = f"{prefix}{key}: was {a}, now {b}"
    return out


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
            try:
                with open(self.path, "a", encoding="utf-8") as handle:
                    handle.writelines(f"{stamp}  {line}\n" for line in str(message).splitlines() or [""])
            except OSError as exc:
                raise WriteFailed(self.path, exc) from None


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
    """`<output_root>/ver_<version>` (default root: $LSM_CORE_OUTPUT_ROOT, else ./train_data; places.py)."""
    root = Path(output_root) if output_root is not None else places.output_root()
    return root / f"ver_{int(version)}"


def parse_version(text: str) -> int:
    """One VERSION argument -> int (a non-negative whole number); bad text is a UserError."""
    try:
        value = int(str(text).strip())
    except ValueError:
        value = -1
    if value < 0:
        raise UserError(f"bad VERSION {text!r}: give the run number, a non-negative whole number such as 12.")
    return value


def open_run(version: int, output_root=None) -> tuple:
    """(folder, params dict) of an existing run; a missing folder or params.json is a UserError."""
    folder = run_folder_path(version, output_root)
    where = f"under {folder.parent}" + ("" if output_root is not None else " (give --output-root for another place)")
    if not folder.is_dir():
        raise UserError(f"there is no run VERSION {version}: {folder} does not exist. Check the VERSION "
                        f"number and the folder {where}.")
    params_path = folder / "params.json"
    manifest = Manifest(folder / MANIFEST_NAME)
    if not params_path.exists() and not manifest.entries:
        raise UserError(f"{folder} has no params.json, so it is not a run folder this toolkit can analyse. "
                        f"Check the VERSION number and the folder {where}.")
    damage = manifest.problem("params.json", params_path)
    params = read_json_file(params_path)
    if damage or not isinstance(params, dict) or not isinstance(params.get("identity"), dict):
        raise DamagedFile(params_path, damage or "it cannot be read as this toolkit's params.json",
                          fix="It says what the run is (its answers and options) and cannot be derived again: "
                              "restore it from a copy.")
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
    from lsm_core.model.network import Network, network_path

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
