"""The exit codes OSMO reserves, in one table, with OSMO's numbers and meanings (its runtime's
`osmo_errors.go`, offset by 2000, and `task.py`'s `ExitCode`), so that `exitActions` written for
OSMO react to the same failures here. A task's own exit codes are 0-255.

    code  name                    meaning (OSMO)                       produced here
    2002  RUNTIME_ERROR           unknown runtime error                no
    2010  DOWNLOAD_FAILED         an input could not be downloaded     yes (url, dataset)
    2011  MOUNT_FAILED            an input could not be mounted        no (nothing is mounted)
    2012  UPLOAD_FAILED           an output could not be uploaded      yes (also a checkpoint)
    2013  DATA_AUTH_CHECK_FAILED  a data credential check failed       yes (credential not here)
    2014  DATA_UNAUTHORIZED       the storage refused the credential   yes (401/403, bad key)
    2020  TOKEN_INVALID           bad token for the service            no
    2021  SERVICE_TIMEOUT         service connection timed out         no
    2022  SERVICE_MESSAGE_FAILED  messages to/from the service failed  no
    2023  TASK_MESSAGE_FAILED     messages to/from the task failed     no
    2024  BARRIER_FAILED          barrier synchronisation failed       no
    2025  METRICS_FAILED          metrics could not be made            no
    3000  FAILED_UPSTREAM         an upstream task failed              yes, with that status
    3001  FAILED_BACKEND_ERROR    backend error                        yes, with that status
    3002  FAILED_SERVER_ERROR     server error                         yes, with that status
    3003  FAILED_START_ERROR      the task failed to start             yes, with that status
    3004  FAILED_EVICTED          evicted from its node                yes, with that status
    3005  FAILED_START_TIMEOUT    took too long to start               yes, with that status
    3006  FAILED_PREEMPTED        preempted for a higher priority      yes, with that status
    4000  UNKNOWN                 unknown error                        no

An `exitActions` range may name any code from 0 to MAX_EXIT_CODE.
"""

from __future__ import annotations

from enum import IntEnum

MAX_EXIT_CODE = 4000  # OSMO's highest (UNKNOWN); a bound keeps `0-999999999` from being walked


class ExitCode(IntEnum):
    RUNTIME_ERROR = 2002
    DOWNLOAD_FAILED = 2010
    MOUNT_FAILED = 2011
    UPLOAD_FAILED = 2012
    DATA_AUTH_CHECK_FAILED = 2013
    DATA_UNAUTHORIZED = 2014
    TOKEN_INVALID = 2020
    SERVICE_TIMEOUT = 2021
    SERVICE_MESSAGE_FAILED = 2022
    TASK_MESSAGE_FAILED = 2023
    BARRIER_FAILED = 2024
    METRICS_FAILED = 2025
    FAILED_UPSTREAM = 3000
    FAILED_BACKEND_ERROR = 3001
    FAILED_SERVER_ERROR = 3002
    FAILED_START_ERROR = 3003
    FAILED_EVICTED = 3004
    FAILED_START_TIMEOUT = 3005
    FAILED_PREEMPTED = 3006
    UNKNOWN = 4000


def status_exit_code(status: str) -> ExitCode | None:
    """The code OSMO gives a task that ended in `status` without an exit of its own (3000-3006:
    the status and the code share a name); None for the other statuses."""
    code = ExitCode.__members__.get(status)
    return code if code is not None and 3000 <= code < 4000 else None
