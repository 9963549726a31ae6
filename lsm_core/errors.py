"""The one exception type for mistakes a user can make and fix.

Raise `UserError` with a one-paragraph message that names the problem and the fix; the command-line
layer prints it (no traceback) and exits with status 2.
"""


class UserError(Exception):
    """A problem the user caused and can fix (bad answer, missing data, unwritable folder...)."""

    exit_status = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's time limit, `kill`): raised where Ctrl-C raises KeyboardInterrupt, so that a
    run stops the same clean way.  Exit status 143 (128 + 15) instead of Ctrl-C's 130 (`interruption`)."""


def interruption(exc: KeyboardInterrupt) -> tuple[str, int]:
    """(signal name, exit status) of an interruption: ("SIGTERM", 143) or ("SIGINT", 130)."""
    return ("SIGTERM", 143) if isinstance(exc, Terminated) else ("SIGINT", 130)


class DamagedFile(UserError):
    """A file that fails its checks: missing although recorded, cut short, overwritten, or holding the
    wrong arrays.  `path` and `reason` say which and why; the run protocol recomputes what can be
    derived again and lets the rest stop the run (exit status 2) with this message."""

    def __init__(self, path, reason: str, fix: str = "Delete it and re-run the same command to recompute it."):
        self.path, self.reason = path, reason
        super().__init__(f"{path} is damaged: {reason}. {fix}")
