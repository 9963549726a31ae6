"""The one exception type for mistakes a user can make and fix.

Raise `UserError` with a one-paragraph message that names the problem and the fix; the command-line
layer prints it (no traceback) and exits with status 2.
"""
from typing import Optional


class UserError(Exception):
    """A problem the user caused and can fix (bad answer, missing data, unwritable folder...)."""

    exit_status = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's time limit, `kill`): raised where Ctrl-C raises KeyboardInterrupt, so that a
    run stops the same clean way.  Exit status 143 (128 + 15) instead of Ctrl-C's 130 (`interruption`)."""


def interruption(exc: KeyboardInterrupt) -> tuple[str, int]:
    """(signal name, exit status) of an interruption: ("SIGTERM", 143) or ("SIGINT", 130)."""
    return ("SIGTERM", 143) if isinstance(exc, Terminated) else ("SIGINT", 130)


def interruption_behind(exc: BaseException) -> Optional[KeyboardInterrupt]:
    """The Ctrl-C or SIGTERM (KeyboardInterrupt) that `exc` was raised while handling, else None.  Library
    clean-up code can fail on the way out of an interruption (zipfile refuses to close an archive whose
    member is half written) and so replace it; it is still that interruption."""
    cause = exc.__context__
    while cause is not None and not isinstance(cause, KeyboardInterrupt):
        cause = cause.__context__
    return cause


class DamagedFile(UserError):
    """A file that fails its checks: missing although recorded, cut short, overwritten, or holding the
    wrong arrays.  `path` and `reason` say which and why; the run protocol recomputes what can be
    derived again and lets the rest stop the run (exit status 2) with this message."""

    def __init__(self, path, reason: str, fix: str = "Delete it and re-run the same command to recompute it."):
        self.path, self.reason = path, reason
        super().__init__(f"{path} is damaged: {reason}. {fix}")


def missing_package(exc: ModuleNotFoundError) -> UserError:
    """The message for a required package that is not installed (TensorFlow above all: the package's
    extras [cpu] and [gpu] choose which build, so a plain `pip install .` has none)."""
    name = (exc.name or "").split(".")[0]
    if name == "tensorflow":
        fix = ('install one TensorFlow build: `pip install tensorflow-cpu==2.21.0` (or `pip install ".[cpu]"` '
               'from the repository), or on Linux with an NVIDIA GPU `pip install "tensorflow[and-cuda]==2.21.0"` '
               '(".[gpu]"); never both')
    else:
        fix = f"install it (`pip install {name}`), or install the requirements again (`pip install -r requirements.txt`)"
    return UserError(f"the package {name!r} is not installed: {fix}.")
