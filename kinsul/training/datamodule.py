"""Robot demonstrations and VLM data as a LightningDataModule, mixed per the strategy."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from kinsul.config.schema import KinsulConfig
from kinsul.data import store
from kinsul.data.batch import TrainBatch
from kinsul.data.streams import StepStream, step_generator
from kinsul.data.tensors import FixedBatches, RobotTensors, VLMTensors, even_subset, grouped_batch
from kinsul.data.vqa import vqa_splits
from kinsul.fields import ConfigError
from kinsul.strategies.base import Strategy
from kinsul.tokenizers.fast import FastTokenizer
from kinsul.tokenizers.text import TextTokenizer


def split_batch(batch_size: int, vlm_ratio: float) -> tuple[int, int]:
    """(robot frames, VLM samples) of a step: a data mixture at a fixed batch size, as the paper trains.

    With ``vlm_ratio`` > 0 at least one sample of each kind, so no step drops a loss term.
    """
    if vlm_ratio <= 0:
        return batch_size, 0
    if batch_size < 2:
        raise ConfigError("trainer.batch_size", f"got {batch_size}, expected at least 2 for a strategy with VLM "
                          "co-training (one robot frame and one VLM sample per step)")  # fmt: skip
    n_vlm = min(batch_size - 1, max(1, round(batch_size * vlm_ratio)))
    return batch_size - n_vlm, n_vlm


def length_groups(cfg: KinsulConfig, strategy: Strategy) -> int:
    """Grouping by FAST length only pays where FAST tokens are in the step; others keep independent batches."""
    return cfg.trainer.length_groups if "fast" in strategy.loss_weights else 1


class MixedBatches(StepStream):
    """Endless TrainBatch (robot batch, VLM batch or None) of ``batch_size`` samples in all, ``vlm_ratio`` of them VLM
    samples; batch k is a pure function of (seed, k), so a resumed run continues the same stream.

    With ``length_groups`` = k > 1 the robot frames of k consecutive batches are drawn together, sorted by FAST
    length and dealt out in a shuffled order: each batch holds frames of similar FAST length, so little padding.
    """

    def __init__(self, robot: RobotTensors, vlm: VLMTensors | None, batch_size: int, vlm_ratio: float,
                 seed: int, pad_id: int, length_groups: int = 1):  # fmt: skip
        self.robot, self.vlm, self.pad_id, self.seed = robot, vlm, pad_id, seed
        self.batch_size, self.vlm_batch = split_batch(batch_size, vlm_ratio if vlm is not None else 0.0)
        self.length_groups = length_groups
        self.fast_lengths = (robot.fast_ids != pad_id).sum(1) if length_groups > 1 else None

    def robot_indices(self, step: int, rank: int, g: torch.Generator) -> torch.Tensor:
        if self.length_groups == 1:
            return torch.randint(0, len(self.robot), (self.batch_size,), generator=g)
        group, slot = divmod(step, self.length_groups)
        gg = step_generator(self.seed, group, rank, 17)
        idx = torch.randint(0, len(self.robot), (self.length_groups * self.batch_size,), generator=gg)
        return grouped_batch(idx, self.fast_lengths, self.length_groups, slot, gg)

    def batch(self, step: int) -> TrainBatch:
        # Under DDP/FSDP each rank draws its own batches (same step, different seed): no duplicated data.
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        g = step_generator(self.seed, step, rank)
        robot = self.robot.batch(self.robot_indices(step, rank, g), self.pad_id)
        vlm = None
        if self.vlm is not None:
            vlm = self.vlm.batch(torch.randint(0, len(self.vlm), (self.vlm_batch,), generator=g), self.pad_id)
        return TrainBatch(robot, vlm).check()  # a few dim checks: cheap next to the step


class KinsulDataModule(L.LightningDataModule):
    def __init__(self, cfg: KinsulConfig, strategy: Strategy, tok: TextTokenizer, fast: FastTokenizer):
        super().__init__()
        self.cfg, self.strategy, self.tok, self.fast = cfg, strategy, tok, fast
        self.train_batches: MixedBatches | None = None
        self.start_step = 0  # set by a resuming caller: the batch stream continues from this step

    def setup(self, stage: str | None = None) -> None:
        if self.train_batches is not None:
            return
        cfg, m = self.cfg, self.cfg.model
        robot = store.load(cfg, "robot")
        self.robot_train = RobotTensors.from_dataset(robot["train"], self.tok, self.fast, m.max_text_len,
                                                     m.max_fast_len)  # fmt: skip
        val = even_subset(robot["validation"], cfg.trainer.val_frames)
        self.robot_val = RobotTensors.from_dataset(val, self.tok, self.fast, m.max_text_len, m.max_fast_len)
        vlm = None
        if self.strategy.vlm_ratio > 0:
            vlm = VLMTensors.from_dataset(vqa_splits(cfg)["train"], self.tok, m.max_text_len)
        self.train_batches = MixedBatches(self.robot_train, vlm, cfg.trainer.batch_size, self.strategy.vlm_ratio,
                                          cfg.seed, self.tok.pad_id, length_groups(cfg, self.strategy))  # fmt: skip
        self.train_batches.start_step = self.start_step

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_batches, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(FixedBatches(self.robot_val, 64, self.tok.pad_id), batch_size=None)
