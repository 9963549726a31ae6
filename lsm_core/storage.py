"""Atomic file writes: a temporary file in the same folder, flushed, then renamed over the target.

A reader therefore sees either the old file or the complete new one, never a half-written file,
even when the process is killed mid-write.  A write that the system refuses (a full disk or quota, no
permission, a read-only file system) raises `WriteFailed`, a UserError that names the file and the fix;
the target is left as it was, so the work resumes once the cause is gone.  Reading back goes through
`load_npz`, which turns every way an npz file can be damaged into `ValueError`.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from lsm_core.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK      # what open() would give a new file



class WriteFailed(UserError):
    """The system refused a write (ENOSPC, EDQUOT, EACCES, EPERM, EROFS, ...): the file and the fix."""

    def __init__(self, path: Path, exc: OSError):
        self.path, self.errno = Path(path), exc.errno
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = ("the disk or your quota is full. Free some space (or choose another place with "
                   "--output-root) and re-run the same command: everything finished so far is kept and "
                   "the work resumes where it stopped.")
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = ("there is no permission to write there (or the file system is read-only). Fix the "
                   "folder's permissions (or choose another place with --output-root) and re-run the "
                   "same command: everything finished so far is kept and the work resumes.")
        else:
            fix = ("check the disk and the folder, then re-run the same command: everything finished so "
                   "far is kept and the work resumes.")
        super().__init__(f"cannot write {self.path} ({exc.strerror or exc}): {fix}")


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write `data` to `path` atomically; a refused write raises WriteFailed and leaves `path` as it was."""
    path = Path(path)
    try:
        _write_then_rename(path, data)
    except OSError as exc:
        raise WriteFailed(path, exc) from None
    return path


def _write_then_rename(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _FILE_MODE)      # mkstemp creates 0600 files
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> Path:
    return atomic_write_bytes(path, json_bytes(obj))


def json_bytes(obj) -> bytes:
    """`obj` as the JSON text this toolkit writes (indented, sorted keys, newline at the end)."""
    return (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode("utf-8")


def atomic_save_npz(path, compressed: bool = True, **arrays) -> Path:
    """Write arrays as an npz file atomically (no pickles: object arrays are refused)."""
    return atomic_write_bytes(path, npz_bytes(compressed, **arrays))


def npz_bytes(compressed: bool = True, **arrays) -> bytes:
    """The bytes of an npz file holding `arrays` (object arrays are refused: no pickles)."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; npz files here hold no pickles")
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def atomic_savefig(fig, path, **kwargs) -> Path:
    """Save a Matplotlib figure atomically (format from the file suffix)."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", **kwargs)
    return atomic_write_bytes(path, buffer.getvalue())


def load_npz(source) -> dict:
    """Load an npz file (a path or a binary file object) fully into a dict of arrays; no pickles.

    Every member is read to its end, so that zip's CRC-32 is always checked (np.load stops at the last
    byte an array's header promises, so a damaged header promising fewer bytes would skip the check).
    A missing file raises FileNotFoundError; any other damage (cut short, overwritten, a flipped byte,
    garbage) raises ValueError saying what failed.
    """
    try:
        arrays = {}
        with zipfile.ZipFile(source) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not a .npy array")
                with archive.open(info) as member:
                    array = np.lib.format.read_array(member, allow_pickle=False)
                    rest = member.read()              # to the end: zipfile checks the CRC-32 there
                if rest:
                    raise ValueError(f"member {info.filename!r} holds {len(rest)} bytes after its array")
                arrays[info.filename[:-len(".npy")]] = array
        return arrays
    except FileNotFoundError:
        raise
    except ValueError:
        raise
    except (OSError, EOFError, KeyError, TypeError, NotImplementedError, RuntimeError, zipfile.BadZipFile,
            zlib.error) as exc:                   # zipfile: "unsupported compression", "is encrypted" (flipped flags)
        raise ValueError(f"it cannot be read as an npz file ({type(exc).__name__}: {exc})") from None


def read_json_file(path):
    """The JSON content of the file at `path`, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def bytes_sha256(data: bytes) -> str:
    """SHA-256 (hex) of `data`."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def as_json(obj):
    """`obj` exactly as it reads back from JSON (NumPy values -> Python, tuples -> lists, paths -> str)."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
