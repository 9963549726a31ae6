"""The one exception type for mistakes a user can make and fix.

Raise `UserError` with a one-paragraph message that names the problem and the fix; the command-line
layer prints it (no traceback) and exits with status 2.
"""


class UserError(Exception):
    """A problem the user caused and can fix (bad answer, missing data, unwritable folder...)."""

    exit_status = 2
