"""The IDX array format of the MNIST family (LeCun's `*-idx3-ubyte` files), gzipped or raw.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of dimensions),
one big-endian uint32 per dimension, then the array in C order with big-endian items.  `read_idx`
checks all of it and turns every problem (not IDX, truncated, trailing bytes, damaged gzip) into
a UserError naming the file; `write_idx` writes the format (tests use it to build small datasets).
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from lsm_core.errors import UserError
from lsm_core.storage import atomic_write_bytes

# IDX dtype code -> big-endian NumPy dtype
IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
GZIP_MAGIC = b"\x1f\x8b"
MAX_ITEMS = 2 ** 31           # refuse headers that promise absurd sizes (a damaged header)


def decode_idx(data: bytes, source: str = "IDX data") -> np.ndarray:
    """The array stored in IDX bytes `data` (not compressed), in native byte order."""
    if len(data) < 4:
        raise UserError(f"{source} is not an IDX file: it has only {len(data)} bytes (an IDX header "
                        f"alone has at least 4). The file is truncated or empty; fetch it again.")
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in IDX_DTYPES:
        raise UserError(f"{source} is not an IDX file: its magic number is 0x{data[:4].hex()} (an IDX "
                        f"file starts with 0x0000, a dtype code among "
                        f"{', '.join(f'0x{c:02x}' for c in IDX_DTYPES)}, then the number of "
                        f"dimensions). Check that this is the right file.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{source} is truncated: its header promises {ndim} dimensions "
                        f"({header} header bytes) but the file has {len(data)} bytes. Fetch it again.")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    items = int(np.prod(shape, dtype=np.int64)) if ndim else 1
    if items > MAX_ITEMS:
        raise UserError(f"{source} has a damaged header: dimensions {list(shape)} ({items} items). "
                        f"Fetch the file again.")
    dtype = IDX_DTYPES[code]
    expected = header + items * dtype.itemsize
    if len(data) < expected:
        raise UserError(f"{source} is truncated: dimensions {list(shape)} of {dtype.newbyteorder('=')} "
                        f"need {expected} bytes, the file has {len(data)}. Fetch it again.")
    if len(data) > expected:
        raise UserError(f"{source} has {len(data) - expected} bytes after the {list(shape)} array its "
                        f"header describes, so it is damaged or not the file it claims to be. Fetch it "
                        f"again.")
    array = np.frombuffer(data, dtype, count=items, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def load_idx_bytes(data: bytes, source: str = "IDX data") -> np.ndarray:
    """The array of an IDX file's bytes, gzipped (detected from the content) or raw."""
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:
            raise UserError(f"{source} is a damaged gzip file ({type(exc).__name__}: {exc}); it was probably "
                            f"cut short while downloading. Fetch it again.") from exc
    elif source.endswith(".gz"):
        raise UserError(f"{source} is named .gz but is not gzip-compressed (it starts with 0x{data[:4].hex()}). "
                        f"Fetch it again.")
    return decode_idx(data, source)


def read_idx(path) -> np.ndarray:
    """The array of the IDX file at `path`, gzipped or raw."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"Cannot read the IDX file {path}: {exc.strerror or exc}.") from exc
    return load_idx_bytes(data, str(path))


def encode_idx(array) -> bytes:
    """The IDX bytes of `array` (dtype uint8, int8, int16, int32, float32 or float64; at most 255 dims)."""
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; use one of "
                         f"{', '.join(str(d.newbyteorder('=')) for d in IDX_DTYPES.values())}")
    if array.ndim > 255:
        raise ValueError(f"IDX stores at most 255 dimensions, got {array.ndim}")
    code = _CODES[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + np.ascontiguousarray(array, IDX_DTYPES[code]).tobytes()


def write_idx(path, array, compress: bool | None = None) -> Path:
    """Write `array` as an IDX file, atomically; gzipped when `compress` (default: name ends in .gz)."""
    path = Path(path)
    data = encode_idx(array)
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=6, mtime=0)
    return atomic_write_bytes(path, data)
