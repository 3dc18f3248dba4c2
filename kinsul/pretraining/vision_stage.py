"""Stage 1 of `kinsul pretrain-vlm`: the vision tower alone learns what each object looks like and where it is.

Through the decoder's answers alone the tiny tower never learned shape in 3,500 steps (docs/models.md), while a
tower trained directly on freshly rendered scenes does. So the tower (and the projector into the decoder) first
learns from dense object labels, the way SigLIP arrives in PaliGemma already pretrained: at the image token
whose patch holds an object's centre, linear heads predict its shape, colour, size and location bins; every
image token also predicts how many object centres its patch holds. The heads are dropped afterwards.

Scenes are rendered fresh for every step (a 64-image batch costs milliseconds), so the tower cannot memorise a
stored split; batch k is a pure function of (seed, k), so a resumed run sees the same stream.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kinsul.config.schema import KinsulConfig
from kinsul.data.streams import StepStream, step_rng
from kinsul.models.vla import VLA
from kinsul.runs.schedule import adamw_warmup_cosine
from kinsul.world.concepts import COLOURS, SHAPES, SIZES
from kinsul.world.foreign import default_location_bins, vlm_renderer
from kinsul.world.language import loc_bin
from kinsul.world.scene import sample_scene

ATTRIBUTES = ("shape", "colour", "size")


def location_bins(cfg: KinsulConfig) -> int:
    """Location bins per axis of stage 1 (0: the tower learns no positions beyond its patch embedding)."""
    if cfg.pretrain.location_bins is not None:
        return cfg.pretrain.location_bins
    return default_location_bins(cfg.data.vlm_domain, cfg.data.loc_bins)


MAX_PER_PATCH = 2  # objectness classes: 0, 1, 2 or more object centres in a patch


class SceneStream(StepStream):
    """Endless batches of rendered VLM-style scenes with per-object labels.

    A batch: ``images`` (B, H, W, 3) uint8; per object slot (B, K): ``token`` (patch index of its centre,
    -1 for an empty slot), ``shape``, ``colour``, ``size``, ``loc_x``, ``loc_y``; ``objectness`` (B, N).
    """

    def __init__(self, cfg: KinsulConfig, patch: int, batch_size: int, seed: int):
        self.cfg, self.patch, self.batch_size, self.seed = cfg, patch, batch_size, seed
        self.renderer = vlm_renderer(cfg.data.vlm_domain, cfg.world.image_size)
        self.grid = cfg.world.image_size // patch
        self.bins = location_bins(cfg)

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        d, size = self.cfg.data, self.cfg.world.image_size
        rng = step_rng(self.seed, 7, step)
        B, K = self.batch_size, d.vlm_max_objects
        images = np.empty((B, size, size, 3), np.uint8)
        labels = {k: np.full((B, K), -1, np.int64) for k in ("token", *ATTRIBUTES, "loc_x", "loc_y")}
        objectness = np.zeros((B, self.grid * self.grid), np.int64)
        for b in range(B):
            scene = sample_scene(rng, int(rng.integers(d.vlm_min_objects, d.vlm_max_objects + 1)))
            images[b], positions = self.renderer.draw(scene, rng)
            for k, (o, pos) in enumerate(zip(scene.objects, positions, strict=True)):
                # the pixel the renderer centres the sprite on decides the patch (and, exactly, the loc bin)
                cx, cy = (min(max(int(v * size), 0), size - 1) // self.patch for v in pos)
                token = cy * self.grid + cx
                labels["token"][b, k] = token
                labels["shape"][b, k] = SHAPES.index(o.shape)
                labels["colour"][b, k] = list(COLOURS).index(o.colour)
                labels["size"][b, k] = list(SIZES).index(o.size)
                if self.bins:
                    labels["loc_x"][b, k] = loc_bin(pos[0], self.bins)
                    labels["loc_y"][b, k] = loc_bin(pos[1], self.bins)
                objectness[b, token] = min(objectness[b, token] + 1, MAX_PER_PATCH)
        out = {k: torch.from_numpy(v) for k, v in labels.items()}
        out["images"] = torch.from_numpy(images)
        out["objectness"] = torch.from_numpy(objectness)
        return out


class ObjectHeads(nn.Module):
    """Linear read-outs from image tokens; training-only (not part of the saved VLM)."""

    def __init__(self, dim: int, loc_bins: int):
        super().__init__()
        self.sizes = {"shape": len(SHAPES), "colour": len(COLOURS), "size": len(SIZES)}
        if loc_bins:
            self.sizes |= {"loc_x": loc_bins, "loc_y": loc_bins}
        self.objects = nn.Linear(dim, sum(self.sizes.values()))
        self.objectness = nn.Linear(dim, MAX_PER_PATCH + 1)

    def losses(self, tokens: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Cross-entropy per label over the objects of the batch (and objectness over all tokens)."""
        slot = batch["token"] >= 0
        b_idx = torch.nonzero(slot)[:, 0]
        feats = tokens[b_idx, batch["token"][slot]]
        logits = self.objects(feats).split(list(self.sizes.values()), dim=-1)
        out = {}
        for (name, _), lg in zip(self.sizes.items(), logits, strict=True):
            target = batch[name][slot]
            out[f"loss_{name}"] = F.cross_entropy(lg, target)
            out[f"acc_{name}"] = (lg.argmax(-1) == target).float().mean()
        obj = self.objectness(tokens)
        out["loss_objectness"] = F.cross_entropy(obj.flatten(0, 1), batch["objectness"].flatten())
        out["loss"] = sum(v for k, v in out.items() if k.startswith("loss_"))
        return out


class VisionStageModule(L.LightningModule):
    def __init__(self, vla: VLA, cfg: KinsulConfig):
        super().__init__()
        self.vla, self.cfg = vla, cfg
        self.heads = ObjectHeads(vla.lm.config.hidden_size, location_bins(cfg))

    def training_step(self, batch, _):
        out = self.heads.losses(self.vla.image_tokens(batch["images"]), batch)
        self.log_dict({f"vision/{k}": v for k, v in out.items() if k != "acc_shape"})
        self.log("vision/acc_shape", out["acc_shape"], prog_bar=True)
        return out["loss"]

    def configure_optimizers(self):
        p = self.cfg.pretrain
        params = [*self.vla.vision_parameters(), *self.heads.parameters()]
        return adamw_warmup_cosine(params, p.vision_lr, p.weight_decay, p.warmup_steps, p.vision_steps)
