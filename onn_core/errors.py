"""Errors a designer can act on.

Every error names the parameter, the offending value in the units a designer reads, and what to
change. They subclass ``ValueError`` so generic callers can still catch them as bad input.
"""

from __future__ import annotations


class DesignError(ValueError):
    """A design that cannot be built or simulated as given.

    Attributes:
        parameter: the design field at fault (e.g. ``"kernel_size"``).
        value: the offending value as the user gave it (SI units for lengths).
        hint: what to change to make the design valid.
    """

    def __init__(self, parameter: str, value: object, problem: str, hint: str = "") -> None:
        self.parameter = parameter
        self.value = value
        self.problem = problem
        self.hint = hint
        message = f"{parameter}: {problem}"
        if hint:
            message += f" Fix: {hint}"
        super().__init__(message)


class OpticsInputError(ValueError):
    """A call into the optics core with arguments it cannot use (wrong shape, dtype, sign...)."""


class TableError(ValueError):
    """A meta-atom table (radius → phase/transmission) that is malformed; names file and row."""


class DataFormatError(ValueError):
    """A dataset file that is missing, corrupt, truncated or not in the expected format.

    Attributes:
        path: the file or folder at fault, as a string.
    """

    def __init__(self, path: object, problem: str, hint: str = "") -> None:
        self.path = str(path)
        message = f"{self.path}: {problem}"
        if hint:
            message += f" Fix: {hint}"
        super().__init__(message)


class TrainingError(RuntimeError):
    """Training cannot go on (diverged, a config that does not fit the design or data...)."""


class SweepError(ValueError):
    """A sweep spec or results file that cannot be used; the message says what to change."""


class SearchError(ValueError):
    """A design search that cannot run as asked (objectives, bounds, budget); the message says what to change."""


class SurrogateUnavailable(LookupError):
    """No sweep results to fit a surrogate on for a dataset; the message says what to do instead."""


class MeasuredDataError(DataFormatError):
    """A measured PSF stack or captured feature-map file that does not fit the run it is for."""


class ClusterError(RuntimeError):
    """A Dask cluster the studio cannot use as asked (unreachable, no workers, the studio not
    installed on a node, versions that differ) or work that failed on it; says what to do."""
