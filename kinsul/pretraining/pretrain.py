"""`kinsul pretrain-vlm`: train the backbone from scratch (stage 1: the vision tower on rendered scenes,
``vision_stage.py``; stage 2: question answering on the generated VLM data), save it with ``save_pretrained``
(safetensors) under a cache keyed by the config hash, and report probe accuracy."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from kinsul.config.loader import save_config
from kinsul.config.schema import KinsulConfig
from kinsul.data import store
from kinsul.data.atomic import atomic_folder
from kinsul.data.streams import StepStream, step_generator
from kinsul.data.tensors import VLMTensors, grouped_batch
from kinsul.evaluation.probe import ProbeAccuracy, ProbeBatches, exact_match, probe_accuracy
from kinsul.models.build import build_vla
from kinsul.models.vla import VLA
from kinsul.pretraining.question_stream import QuestionStream, answer_buckets, object_cap
from kinsul.pretraining.vision_stage import SceneStream, VisionStageModule
from kinsul.runs import pretrained
from kinsul.runs.assembly import data_spec
from kinsul.runs.assembly import world_tokenizer as make_tokenizer
from kinsul.runs.checkpoints import ExceptionCheckpoint, LastCheckpoint, SafeCheckpointIO, checkpoint_step
from kinsul.runs.schedule import adamw_warmup_cosine
from kinsul.tokenizers.text import TextTokenizer


class CurriculumBatches(StepStream):
    """Stage-2 batches from the stored VLM train split (`pretrain.questions=stored`), endless; batch k is a
    pure function of (seed, k), so a resumed run sees the same stream.

    Questions are drawn with replacement, each with its type's ``qtype_weights`` weight. Before
    ``curriculum[j]`` steps only scenes with at most j + 1 objects are drawn. With ``length_groups`` G > 1
    the questions of G consecutive batches are drawn together, ordered by answer length in buckets of
    ``LENGTH_BUCKET`` tokens (random order within a bucket) and dealt out in a shuffled order: long captions
    then pad one batch of the group instead of every batch, while the one- and two-word answers of every other
    question type still share batches (sorting by exact length had split them apart and learned worse).
    """

    workers = 0  # indexing in-memory tensors: nothing to overlap

    def __init__(self, data: VLMTensors, n_objects: torch.Tensor, cfg: KinsulConfig, pad_id: int):
        self.data, self.cfg, self.pad_id = data, cfg, pad_id
        w = cfg.pretrain.qtype_weights
        self.weights = torch.tensor([w.get(q, 1.0) for q in data.qtype], dtype=torch.float64)
        self.pools = {k: torch.nonzero((n_objects <= k) & (self.weights > 0)).squeeze(1)
                      for k in range(1, int(n_objects.max()) + 1)}  # fmt: skip
        self.bucket = answer_buckets(data, pad_id)

    def cap(self, step: int) -> int:
        """``object_cap``, raised to the next object count the split has (weighted) questions for."""
        top = max(self.pools)
        cap = min(object_cap(self.cfg, step), top)
        while cap < top and not len(self.pools.get(cap, ())):
            cap += 1
        return cap

    def indices(self, step: int) -> torch.Tensor:
        G, B = self.cfg.pretrain.length_groups, self.cfg.pretrain.batch_size
        first = step - step % G  # the group's first step seeds the draw and sets the object cap
        pool = self.pools[self.cap(first)]
        g = step_generator(self.cfg.seed, first)
        idx = pool[torch.multinomial(self.weights[pool], G * B, replacement=True, generator=g)]
        return idx if G == 1 else grouped_batch(idx, self.bucket, G, step % G, g)

    def batch(self, step: int):
        return self.data.batch(self.indices(step), self.pad_id)


def answer_loss(logits: torch.Tensor, suffix_ids: torch.Tensor, suffix_mask: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy averaged per answer, then over answers: a 20-token caption weighs what a
    one-word answer does (averaged over tokens, captions took most of the gradient and the one-word
    binding questions, shape and side, stayed at chance far longer)."""
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), suffix_ids[:, 1:], reduction="none")
    valid = suffix_mask[:, 1:].float()
    return ((ce * valid).sum(1) / valid.sum(1).clamp_min(1.0)).mean()


class VLMPretrainModule(L.LightningModule):
    def __init__(self, vla: VLA, cfg: KinsulConfig, qtypes: list[str]):
        super().__init__()
        self.vla, self.cfg = vla, cfg
        if cfg.pretrain.freeze_vision:
            for q in vla.vision_parameters():
                q.requires_grad_(False)
        self.probe = ProbeAccuracy(qtypes)

    def training_step(self, batch, _):
        logits = self.vla(batch.obs, batch.suffix_ids, batch.suffix_mask).suffix_logits
        loss = answer_loss(logits, batch.suffix_ids, batch.suffix_mask)
        self.log("pretrain/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, _):
        obs, suffix, mask, qtypes = batch
        self.probe.update(exact_match(self.vla, obs, suffix, mask), qtypes)

    def on_validation_epoch_end(self):
        for q, v in self.probe.compute().items():
            self.log(f"probe/acc_{q}", v, prog_bar=q == "mean")
        self.probe = ProbeAccuracy(list(self.probe.metrics))

    def configure_optimizers(self):
        p = self.cfg.pretrain
        params = [q for q in self.vla.parameters() if q.requires_grad]
        return adamw_warmup_cosine(params, p.lr, p.weight_decay, p.warmup_steps, p.steps)


def pretrain_vlm(cfg: KinsulConfig, fresh: bool = False, progress: bool = True) -> Path:
    """Train (or resume) the VLM for ``cfg``; returns the saved model folder."""
    if cfg.pretrain.threads:
        torch.set_num_threads(cfg.pretrain.threads)
    out = pretrained.cache_dir(cfg)
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    tok = make_tokenizer(cfg)
    ds = store.load(cfg, "vlm") if store.dataset_dir(cfg, "vlm").exists() else None
    if ds is None:
        ds = store.open_dataset(store.generate(cfg, "vlm", progress=progress), "vlm")
    probe = VLMTensors.from_dataset(ds["probe"], tok, cfg.model.max_text_len)
    vla = build_vla(cfg.model, tok, data_spec(cfg), with_expert=False)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    start = time.perf_counter()
    if cfg.pretrain.vision_steps and not last.exists():  # stage 2's checkpoint holds stage 1's result
        vision_stage(vla, cfg, ckpt_dir, progress)
    module = VLMPretrainModule(vla, cfg, sorted(set(probe.qtype)))
    trainer = _trainer(
        cfg, ckpt_dir, "last", cfg.pretrain.steps, progress, val_check_interval=cfg.pretrain.eval_every
    )
    train_batches = QUESTIONS[cfg.pretrain.questions](cfg, tok, ds)
    train_batches.start_step = checkpoint_step(last)  # resume mid-stream
    loader = torch.utils.data.DataLoader(train_batches, batch_size=None, num_workers=train_batches.workers)
    trainer.fit(module, train_dataloaders=loader,
                val_dataloaders=torch.utils.data.DataLoader(ProbeBatches(probe, tok.pad_id), batch_size=None),
                ckpt_path=str(last) if last.exists() else None, weights_only=True)  # fmt: skip
    seconds = time.perf_counter() - start
    accuracy = probe_accuracy(vla, probe)
    return save_vlm(vla, tok, cfg, out / "model", accuracy, seconds)


def _stored_questions(cfg: KinsulConfig, tok: TextTokenizer, ds) -> CurriculumBatches:
    train = VLMTensors.from_dataset(ds["train"], tok, cfg.model.max_text_len)
    return CurriculumBatches(train, torch.tensor(ds["train"]["n_objects"]), cfg, tok.pad_id)


# pretrain.questions -> stage 2's batch stream
QUESTIONS = {"rendered": lambda cfg, tok, ds: QuestionStream(cfg, tok), "stored": _stored_questions}


def _trainer(cfg: KinsulConfig, ckpt_dir: Path, name: str, steps: int, progress: bool, **kw) -> L.Trainer:
    return L.Trainer(
        max_steps=steps,
        accelerator="auto",
        devices=1,
        logger=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
        plugins=[SafeCheckpointIO()],
        callbacks=[
            LastCheckpoint(ckpt_dir / f"{name}.ckpt", cfg.pretrain.checkpoint_every),
            ExceptionCheckpoint(dirpath=ckpt_dir, filename=name),
        ],
        **kw,
    )


def vision_stage(vla: VLA, cfg: KinsulConfig, ckpt_dir: Path, progress: bool) -> None:
    """Stage 1 (resumable from 'vision.ckpt'): the tower and projector learn objects from rendered scenes."""
    ckpt = ckpt_dir / "vision.ckpt"
    stream = SceneStream(
        cfg, vla.backbone.config.vision_config.patch_size, cfg.pretrain.vision_batch_size, cfg.seed
    )
    stream.start_step = checkpoint_step(ckpt)
    trainer = _trainer(cfg, ckpt_dir, "vision", cfg.pretrain.vision_steps, progress)
    trainer.fit(VisionStageModule(vla, cfg), train_dataloaders=torch.utils.data.DataLoader(stream, batch_size=None),
                ckpt_path=str(ckpt) if ckpt.exists() else None, weights_only=True)  # fmt: skip


def save_vlm(
    vla: VLA, tok: TextTokenizer, cfg: KinsulConfig, dest: Path, accuracy: dict, seconds: float
) -> Path:
    """save_pretrained into a temporary folder, then rename: a crash never leaves a half-written model."""
    meta = {
        "name": pretrained.vlm_name(cfg),
        "hash": pretrained.vlm_hash(cfg),
        "probe_accuracy": accuracy,
        "train_seconds_this_run": round(seconds, 1),
        "steps": cfg.pretrain.steps,
        "vision_steps": cfg.pretrain.vision_steps,
        "parameters": sum(p.numel() for p in vla.backbone.parameters()),
        "command": "kinsul pretrain-vlm " + " ".join(sys.argv[2:]),
    }
    with atomic_folder(dest, overwrite=True) as tmp:
        vla.backbone.save_pretrained(tmp)
        tok.save(tmp / pretrained.TOKENIZER_FILE)
        meta["sha256"] = pretrained.weights_digest(tmp)  # verified on every load (pretrained.resolve)
        (tmp / pretrained.META_FILE).write_text(json.dumps(meta, indent=2))
    return dest
