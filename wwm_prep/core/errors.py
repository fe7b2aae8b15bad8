"""The one exception type for user-facing mistakes: the command line prints its message, not a traceback."""


class WwmPrepError(Exception):
    """A problem the user can fix (bad path, bad option, incompatible shard); the message says how."""
