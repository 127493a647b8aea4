"""The base of every error caused by what a user gave (paths, options, config files).

The CLI prints such an error as one line and exits with code 2; anything else is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input; ``str(err)`` is the complete message."""
