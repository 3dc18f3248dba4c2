"""The batch contract between data and models: typed dataclasses with documented shapes, checked where a batch
is built (``check``), so a wrong shape fails at the boundary with the field's name, not deep inside attention."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


class BatchShapeError(ValueError):
    pass


def _expect(
    name: str, x: torch.Tensor, dims: int, batch: int | None = None, dtype: torch.dtype | None = None
):
    if not isinstance(x, torch.Tensor):
        raise BatchShapeError(f"{name}: expected a tensor, got {type(x).__name__}")
    if x.dim() != dims:
        raise BatchShapeError(f"{name}: expected {dims} dimensions, got shape {tuple(x.shape)}")
    if batch is not None and x.shape[0] != batch:
        raise BatchShapeError(
            f"{name}: expected batch size {batch} (the images'), got shape {tuple(x.shape)}"
        )
    if dtype is not None and x.dtype != dtype:
        raise BatchShapeError(f"{name}: expected dtype {dtype}, got {x.dtype}")


@dataclass
class Observation:
    images: torch.Tensor  # (B, H, W, 3) uint8 RGB
    state: torch.Tensor  # (B, S) float32 proprioception (S = 0 for VLM samples)
    text_ids: torch.Tensor  # (B, L) int64: <bos> + instruction/question words, right-padded with <pad>
    text_mask: torch.Tensor  # (B, L) bool, True on real tokens

    def to(self, device) -> Observation:
        return type(self)(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.images.shape[0]

    def check(self, where: str = "obs") -> Observation:
        _expect(f"{where}.images", self.images, 4, dtype=torch.uint8)
        if self.images.shape[-1] != 3:
            raise BatchShapeError(
                f"{where}.images: expected (B, H, W, 3) RGB, got {tuple(self.images.shape)}"
            )
        b = len(self)
        _expect(f"{where}.state", self.state, 2, b)
        _expect(f"{where}.text_ids", self.text_ids, 2, b, torch.int64)
        _expect(f"{where}.text_mask", self.text_mask, 2, b, torch.bool)
        if self.text_mask.shape != self.text_ids.shape:
            raise BatchShapeError(f"{where}.text_mask: expected the shape of text_ids {tuple(self.text_ids.shape)}, "
                                  f"got {tuple(self.text_mask.shape)}")  # fmt: skip
        return self


@dataclass
class RobotBatch:
    obs: Observation
    actions: torch.Tensor  # (B, H, A) float32 target chunk
    action_pad: torch.Tensor  # (B, H) bool, True past the episode end
    fast_ids: torch.Tensor  # (B, F) <sep> + FAST tokens + <eos>, right-padded
    fast_mask: torch.Tensor  # (B, F) bool

    def to(self, device) -> RobotBatch:
        return RobotBatch(self.obs.to(device), *(getattr(self, f.name).to(device) for f in fields(self)[1:]))

    def check(self, where: str = "robot") -> RobotBatch:
        self.obs.check(f"{where}.obs")
        b = len(self.obs)
        _expect(f"{where}.actions", self.actions, 3, b)
        _expect(f"{where}.action_pad", self.action_pad, 2, b, torch.bool)
        if self.action_pad.shape != self.actions.shape[:2]:
            raise BatchShapeError(f"{where}.action_pad: expected (B, H) = {tuple(self.actions.shape[:2])}, got "
                                  f"{tuple(self.action_pad.shape)}")  # fmt: skip
        _expect(f"{where}.fast_ids", self.fast_ids, 2, b, torch.int64)
        _expect(f"{where}.fast_mask", self.fast_mask, 2, b, torch.bool)
        return self


@dataclass
class VLMBatch:
    """Image-question-answer samples: the backbone learns ``suffix_ids`` (<sep> + answer + <eos>) by next token."""

    obs: Observation
    suffix_ids: torch.Tensor  # (B, S) int64, right-padded
    suffix_mask: torch.Tensor  # (B, S) bool

    def to(self, device) -> VLMBatch:
        return VLMBatch(self.obs.to(device), self.suffix_ids.to(device), self.suffix_mask.to(device))

    def check(self, where: str = "vlm") -> VLMBatch:
        self.obs.check(f"{where}.obs")
        _expect(f"{where}.suffix_ids", self.suffix_ids, 2, len(self.obs), torch.int64)
        _expect(f"{where}.suffix_mask", self.suffix_mask, 2, len(self.obs), torch.bool)
        return self


@dataclass
class TrainBatch:
    """One training step's samples: robot frames, and VLM samples for strategies that co-train on VLM data."""

    robot: RobotBatch
    vlm: VLMBatch | None = None

    def to(self, device) -> TrainBatch:
        return TrainBatch(self.robot.to(device), None if self.vlm is None else self.vlm.to(device))

    def check(self) -> TrainBatch:
        self.robot.check()
        if self.vlm is not None:
            self.vlm.check()
        return self
