"""User-facing errors.

Everything a user can get wrong (a file, a value, a missing tool) raises a subclass of
:class:`LstmExpError` with a one-line message that names the offending file or value and,
where there is one, says what to write instead.  The Hydra entry point turns these into a
single line on stderr, a non-zero exit and a FAILED MLflow run; any other exception is a bug
and keeps its traceback.
"""


class LstmExpError(Exception):
    """Base class of every error that is the user's input, not a bug."""

    #: the single faults a listing error was made of (:meth:`listing`), for callers that merge them
    faults: tuple = ()

    @classmethod
    def listing(cls, summary: str, faults: "list[str] | tuple[str, ...]", limit: int = 20) -> "LstmExpError":
        """The error of :func:`fault_message` that also keeps ``faults`` one by one."""
        error = cls(fault_message(summary, faults, limit))
        error.faults = tuple(faults)
        return error


class ConfigError(LstmExpError):
    """A configuration value is impossible or inconsistent."""


class DataError(LstmExpError):
    """A corpus, data dir, feature or label file is missing or malformed."""


class CheckpointError(LstmExpError):
    """A checkpoint cannot be loaded as the network it claims to be."""


class MissingDependencyError(LstmExpError):
    """An optional package or external tool is needed and absent."""


#: faults listed below the first line at most; the rest are counted
MAX_LISTED_FAULTS = 20


def fault_message(summary: str, faults: "list[str] | tuple[str, ...]", limit: int = MAX_LISTED_FAULTS) -> str:
    """One message for one or more faults, whose first line names the first offending file or value.

    The first line is what a user reads first and what the MLflow run's ``lstm_exp.error`` tag
    and the sweep's failure table keep, so it holds the first fault itself:
    ``<summary>: <fault>`` for one fault, ``<summary>: <n> problems; the first: <fault>`` for
    more; the others follow, one per line, up to ``limit``, then a count of the rest.
    """
    faults = list(faults)
    if len(faults) == 1:
        return f"{summary}: {faults[0]}"
    rest = faults[1:limit]
    lines = [f"{summary}: {len(faults)} problems; the first: {faults[0]}", *rest]
    if len(faults) > limit:
        lines.append(f"... and {len(faults) - limit} more")
    return "\n".join(lines)


def non_finite(values) -> str:
    """What is wrong with the NumPy array ``values`` (e.g. ``12 NaN, 3 inf of 8200 values``), or ""
    when every value is finite: the one check of features and log-probs (prepared data, model
    outputs, the export check, saved inference outputs) before they are trained on or decoded."""
    import numpy as np

    finite = np.isfinite(values)
    if finite.all():
        return ""
    nan = int(np.isnan(values).sum())
    return f"{nan} NaN, {int((~finite).sum()) - nan} inf of {values.size} values"
