"""One trial, measured: the runner's sequence (runner), its energy windows (windows), the idle
baseline and cooldown (baseline), and the record builder that makes its row (record).
"""

from energyray.trial.record import GROUP_RULE, TrialResult, failed_row, finish
from energyray.trial.runner import TrialRunner

__all__ = ["GROUP_RULE", "TrialResult", "TrialRunner", "failed_row", "finish"]
