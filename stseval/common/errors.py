"""The one exception users see."""


class StsevalError(Exception):
    """A problem the user can fix: bad input, a missing file, an unknown option.

    The message names the place (a file and line, or an option) and the fix. The CLI turns it into
    a one-line message and exit code 2; bugs are not caught and keep their traceback.
    """
