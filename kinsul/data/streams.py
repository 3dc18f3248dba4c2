"""Endless, resumable batch streams: batch k is a pure function of (seed, k), so a run resumed at step k sees
exactly the batches an uninterrupted run would have. Every training stream (VLA training, both pretraining
stages, the stored-question curriculum) is a `StepStream` and seeds its draws with `step_seed`/`step_rng`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset


def step_seed(seed: int, step: int, *salt: int) -> int:
    """The integer seed of step ``step`` of a stream seeded ``seed`` (``salt``: the rank, a sub-stream id).
    Distinct (seed, step) pairs give distinct seeds for any run shorter than a million steps."""
    acc = seed * 1_000_003 + step
    for multiplier, s in zip((8191, 31), salt, strict=False):
        acc = acc * multiplier + s
    return acc


def step_generator(seed: int, step: int, *salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(step_seed(seed, step, *salt))


def step_rng(seed: int, stream: int, step: int) -> np.random.Generator:
    """A numpy generator for step ``step``: for streams that draw scenes (numpy) rather than indices (torch)."""
    return np.random.default_rng([seed, stream, step])


class StepStream(IterableDataset):
    """Yields ``batch(start_step)``, ``batch(start_step + 1)``, ... forever; a resuming caller sets
    ``start_step`` to the checkpoint's step before the DataLoader starts iterating."""

    start_step: int = 0

    def batch(self, step: int) -> Any:
        raise NotImplementedError

    def __iter__(self):
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1
