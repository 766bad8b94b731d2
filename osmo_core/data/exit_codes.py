"""Exit codes of a task that the agent ended because a data transfer failed (OSMO reserves
2010-2014 for these). The engine's default exit actions treat any non-zero code as FAILED, so
each of these ends the task FAILED unless the spec's `exitActions` say otherwise (e.g.
`RESCHEDULE: 2010` retries a flaky download).

    2010  DOWNLOAD_FAILED     an input (url or dataset blob) could not be fetched
    2011  UPLOAD_FAILED       {{output}} could not be uploaded to a url or recorded as a dataset
    2012  CREDENTIALS         a credential is missing (not configured) or the storage refused it
    2013  DATASET_NOT_FOUND   an input dataset, version or tag does not exist
    2014  CHECKPOINT_FAILED   a checkpoint upload failed
"""

from __future__ import annotations

from enum import IntEnum

from ..errors import OsmoError


class DataExit(IntEnum):
    DOWNLOAD_FAILED = 2010
    UPLOAD_FAILED = 2011
    CREDENTIALS = 2012
    DATASET_NOT_FOUND = 2013
    CHECKPOINT_FAILED = 2014


class TransferError(OsmoError):
    """A transfer failed; `code` is the exit code the task ends with, the message names the
    (redacted) URL and the storage error."""

    def __init__(self, code: DataExit, message: str):
        super().__init__(message)
        self.code = code
