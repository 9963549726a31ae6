"""Progress bars (rate and ETA) for every long loop, quieter when stderr is not a terminal."""
from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(total: int, desc: str, unit: str, initial: int = 0) -> tqdm:
    """A tqdm bar on stderr; redrawn at most every 30 s when stderr is a file or a pipe (logs)."""
    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                smoothing=0.1, mininterval=0.2 if interactive else 30.0, file=sys.stderr)
