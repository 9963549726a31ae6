"""The ways a file gets damaged in the field, for every test of damaged inputs (one home for them all)."""
from pathlib import Path

DAMAGES = ("delete", "half", "zeros", "flip")


def damage(path: Path, how: str) -> None:
    """Delete `path` ("delete"), cut it to half its size ("half"), overwrite it with as many zero bytes
    ("zeros"), or flip every bit of its middle byte ("flip")."""
    path = Path(path)
    data = path.read_bytes()
    if how == "delete":
        path.unlink()
    elif how == "half":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zeros":
        path.write_bytes(bytes(len(data)))
    elif how == "flip":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    else:
        raise ValueError(f"unknown damage {how!r}; one of {DAMAGES}")
