"""The one exception type front ends show to users as a one-line message."""


class GenPerceptError(Exception):
    """A problem the user can fix: the message names it and says what to do.

    Front ends print ``str(error)`` without a traceback; anything else that
    escapes is a bug in the bundle.
    """


class OutputError(GenPerceptError):
    """An output could not be written (disk full, no permission): it stops a run of many images, since the
    images after it would fail the same way."""
