"""User-facing errors.

Everything a user can get wrong (a file, a value, a missing tool) raises a subclass of
:class:`LstmExpError` with a one-line message that names the offending file or value and,
where there is one, says what to write instead.  The Hydra entry point turns these into a
single line on stderr, a non-zero exit and a FAILED MLflow run; any other exception is a bug
and keeps its traceback.
"""


class LstmExpError(Exception):
    """Base class of every error that is the user's input, not a bug."""


class ConfigError(LstmExpError):
    """A configuration value is impossible or inconsistent."""


class DataError(LstmExpError):
    """A corpus, data dir, feature or label file is missing or malformed."""


class CheckpointError(LstmExpError):
    """A checkpoint cannot be loaded as the network it claims to be."""


class MissingDependencyError(LstmExpError):
    """An optional package or external tool is needed and absent."""
