"""The one way a resumed sweep worker ends without work and without a finished study (light: the CLI imports it
for every command)."""

from __future__ import annotations

from typing import Any


class SweepBusy(RuntimeError):
    """A resumed worker found nothing to run while trials of the study are still RUNNING: another worker runs
    them, or one died less than the heartbeat grace period ago and its trials cannot be re-queued yet."""

    # 0: nothing failed (in a sweep split over workers this is how every worker but the last one ends); the
    # line says which trials are still running and when a dead worker's could be re-queued
    exit_code = 0

    def __init__(self, message: str, study: Any):
        super().__init__(message)
        self.study = study  # the CLI still reports what is done
