"""One exception hierarchy for the workbench.

Every error a user can cause (a bad source config, a missing column, an unreadable
file, an unknown stage, a failed report) is a :class:`PipelineError` with a message
that names the file, the column and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "PipelineError",
    "SourceConfigError",
    "UnreadableFileError",
    "MissingColumnError",
    "UnknownStageError",
    "DataValidationError",
    "ReportError",
    "RunLockedError",
    "InsufficientDataError",
]


class PipelineError(Exception):
    """Base class of every error raised on purpose by :mod:`pipeline_lib`."""


class SourceConfigError(PipelineError):
    """The YAML source config is missing, malformed or asks for something unknown."""


class UnreadableFileError(PipelineError):
    """A data file is missing, empty, or cannot be decoded/parsed at all."""


class MissingColumnError(PipelineError):
    """A required canonical column is not present in a source table."""


class UnknownStageError(PipelineError):
    """A stage value in the data is not mapped by the source config."""


class DataValidationError(PipelineError):
    """A canonical table failed schema validation after loading."""


class ReportError(PipelineError):
    """A report run failed (a notebook raised, timed out or could not be written)."""


class InsufficientDataError(PipelineError):
    """An analysis cannot be computed on this data (too few rows, a table is missing).

    The message says what is missing and what would make the analysis possible; views
    and notebooks show it as a note instead of failing.
    """


class RunLockedError(ReportError):
    """Another run holds the lock of the reports folder.

    Attributes
    ----------
    lock_path : Path
        The lock file.
    holder : dict
        What the holder wrote into the lock file (``pid``, ``started_at``, ``host``,
        ``params_file``); empty when it could not be read.
    """

    def __init__(self, message: str, *, lock_path: Path, holder: Mapping[str, Any]):
        super().__init__(message)
        self.lock_path = lock_path
        self.holder = dict(holder)
