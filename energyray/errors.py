"""The exceptions energyray raises for failures of the sweep's own machinery.

A failure inside one trial is data (a row with a status), not an exception that stops the
sweep; these are for the rest, and each message names the fix.

    EnergyRayError
     ├── ConfigError     a sweep, model or override that cannot be run as written
     ├── BackendError    a backend that cannot load or run a model
     ├── SamplerError    an energy source that cannot be read
     ├── StoreError      the store cannot be written (or read)
     ├── ClusterError    a Ray cluster that cannot be started or joined
     └── TrialFailed     one trial failed; carries the status to record (failed | oom) and
                         whether running it again may succeed (retryable)
"""

from __future__ import annotations


class EnergyRayError(Exception):
    """Base of every energyray error."""


class ConfigError(EnergyRayError):
    """The configuration cannot be run as written; the message says what to change."""


class BackendError(EnergyRayError):
    """A backend cannot load or run the model it was given."""


class SamplerError(EnergyRayError):
    """An energy or power source cannot be read."""


class StoreError(EnergyRayError):
    """The store cannot be written (or read); the message names the path."""


class ClusterError(EnergyRayError):
    """A local Ray did not start, or the cluster `ray.address` names cannot be joined."""


class TrialFailed(EnergyRayError):
    """One trial failed; `status` is what its row records (``failed`` or ``oom``);
    `retryable`: the cause is transient (a rate limit, a server error), so a rerun may succeed."""

    def __init__(self, message: str, status: str = "failed", retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
