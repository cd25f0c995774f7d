"""Exceptions with a user-facing meaning; the CLI maps them to exit codes (2 = bad input)."""


class AdvrbdError(Exception):
    """Base class of every error advrbd raises on purpose."""


class BadInputError(AdvrbdError, ValueError):
    """The user's data, file or setting is invalid. The message names the offending file or key."""


class ConfigError(BadInputError):
    """An unknown or ill-typed setting."""
