"""The one exception type front ends show to users as a one-line message."""


class GenPerceptError(Exception):
    """A problem the user can fix: the message names it and says what to do.

    Front ends print ``str(error)`` without a traceback; anything else that
    escapes is a bug in the bundle.
    """
