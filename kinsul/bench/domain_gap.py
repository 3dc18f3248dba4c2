"""The domain gap, measured: how precisely the instructed target's position can be read from a frozen VLM's
keys/values on KinsulWorld scenes (what the action expert reads), and the VLM's zero-shot accuracy on
KinsulWorld's own questions, for the world VLM and the foreign-domain VLM (`data.vlm_domain`).

The read-out is a small learned reader in the expert's place: queries made from the instruction tokens' values
attend over the layer's keys/values (image and text tokens) and a two-layer MLP maps the pooled values to the
target's (x, y). Trained on 2,000 reach scenes, scored on 500 others by mean Euclidean error in table units;
"chance" is the error of always answering the training targets' mean."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from kinsul.config import load_config
from kinsul.config.schema import KinsulConfig
from kinsul.data import store
from kinsul.data.tensors import VLMTensors, prompt_ids
from kinsul.data.vqa import vqa_splits
from kinsul.evaluation.probe import probe_accuracy
from kinsul.models.build import build_vla
from kinsul.runs import pretrained
from kinsul.runs.assembly import data_spec, make_tokenizer
from kinsul.world.env import KinsulWorldEnv


def reach_scenes(cfg: KinsulConfig, n: int, seed: int) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    env = KinsulWorldEnv(cfg.world, cfg.concepts)
    images, texts, targets = [], [], []
    for i in range(n):
        obs, _ = env.reset(seed=seed + i, options={"task": "reach"})
        images.append(obs["image"])
        texts.append(obs["instruction"])
        targets.append(env.scene.objects[env.task.target].pos)
    return torch.from_numpy(np.stack(images)), texts, torch.tensor(np.stack(targets), dtype=torch.float32)


@torch.no_grad()
def kv_per_layer(vla, tok, images, texts, max_text_len: int, batch: int = 250):
    """Per layer: keys (N, h, P, d), values (N, h, P, d); the prefix validity (N, P) and text-token mask (N, P)."""
    from kinsul.data.batch import Observation

    keys, values, valid, text = [], [], [], []
    for s in range(0, len(images), batch):
        ids = prompt_ids(tok, texts[s : s + batch], max_text_len)
        obs = Observation(images[s : s + batch], torch.zeros(len(ids), 4), ids, ids != tok.pad_id)
        cache, pv = vla.encode_prefix(obs)
        keys.append([k for k, _ in cache])
        values.append([v for _, v in cache])
        n_image = pv.shape[1] - ids.shape[1]
        t = torch.zeros_like(pv)
        t[:, n_image:] = ids != tok.pad_id
        valid.append(pv)
        text.append(t)
    width = max(v.shape[1] for v in valid)  # batches pad their prompts to their own longest

    def pad(x, dim):
        return torch.nn.functional.pad(x, (0, 0) * (x.dim() - dim - 1) + (0, width - x.shape[dim]))

    layers = len(keys[0])
    K = [torch.cat([pad(b[i], 2) for b in keys]) for i in range(layers)]
    V = [torch.cat([pad(b[i], 2) for b in values]) for i in range(layers)]
    return K, V, torch.cat([pad(v, 1) for v in valid]), torch.cat([pad(t, 1) for t in text])


class Reader(nn.Module):
    """Instruction-conditioned attention over one layer's keys/values, then an MLP to (x, y)."""

    def __init__(self, heads: int, dim: int, queries: int = 4, hidden: int = 128):
        super().__init__()
        self.q0 = nn.Parameter(torch.randn(queries, heads, dim) * 0.1)
        self.from_text = nn.Linear(heads * dim, queries * heads * dim)
        self.out = nn.Sequential(nn.Linear(queries * heads * dim, hidden), nn.GELU(), nn.Linear(hidden, 2))
        self.shape = (queries, heads, dim)

    def forward(self, k, v, valid, text):
        B, H, P, D = k.shape
        tw = text.float() / text.float().sum(1, keepdim=True).clamp_min(1)
        instr = torch.einsum("bp,bhpd->bhd", tw, v).reshape(B, H * D)
        q = self.q0 + self.from_text(instr).view(B, *self.shape)  # (B, Q, H, D)
        scores = torch.einsum("bqhd,bhpd->bqhp", q, k) / D**0.5
        scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
        pooled = torch.einsum("bqhp,bhpd->bqhd", scores.softmax(-1), v)
        return self.out(pooled.reshape(B, -1))


def fit_reader(k, v, valid, text, targets, n_train: int, steps: int, seed: int) -> float:
    torch.manual_seed(seed)
    reader = Reader(k.shape[1], k.shape[3])
    opt = torch.optim.AdamW(reader.parameters(), lr=2e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, n_train, (128,), generator=g)
        loss = (reader(k[idx], v[idx], valid[idx], text[idx]) - targets[idx]).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = reader(k[n_train:], v[n_train:], valid[n_train:], text[n_train:])
        return float((pred - targets[n_train:]).norm(dim=-1).mean())


def location_probe(
    cfg: KinsulConfig, n_train: int = 2000, n_test: int = 500, steps: int = 1500, seed: int = 0
) -> dict:
    """Per layer, the test error of reading the instructed target's position from the frozen backbone's K/V."""
    tok = make_tokenizer(cfg)
    model = dataclasses.replace(cfg.model, pretrained_path=str(pretrained.resolve(cfg)))
    vla = build_vla(model, tok, data_spec(cfg), with_expert=False).eval()
    images, texts, targets = reach_scenes(cfg, n_train + n_test, 900_000)
    K, V, valid, text = kv_per_layer(vla, tok, images, texts, cfg.model.max_text_len)
    chance = float((targets[n_train:] - targets[:n_train].mean(0)).norm(dim=-1).mean())
    errors = [fit_reader(k, v, valid, text, targets, n_train, steps, seed) for k, v in zip(K, V, strict=True)]
    return {"layer_errors": errors, "best_error": min(errors), "chance_error": chance}


def zero_shot_world_questions(cfg: KinsulConfig, world_cfg: KinsulConfig, samples: int = 1000) -> dict:
    """The VLM of ``cfg`` answering the world VLM's probe questions (KinsulWorld scenes, every type)."""
    tok = make_tokenizer(cfg)
    model = dataclasses.replace(cfg.model, pretrained_path=str(pretrained.resolve(cfg)))
    vla = build_vla(model, tok, data_spec(cfg), with_expert=False)
    store.generate(world_cfg, "vlm", progress=False)
    probe = vqa_splits(world_cfg)["probe"]
    probe = probe.select(range(min(samples, len(probe))))
    return probe_accuracy(vla, VLMTensors.from_dataset(probe, tok, cfg.model.max_text_len))


# The shipped VLMs along the gap: the world VLM, the first foreign recipe (4 frame location bins per axis: between
# the two) and the foreign VLM of ablations/foreign.yaml (2 bins). The x axis of the insulation-against-the-gap
# study (docs/results.md, section 9).
VLMS = {
    "world": (None, []),
    "foreign-4bins": ("foreign", ["pretrain.location_bins=4", "pretrain.steps=3100"]),
    "foreign": ("foreign", []),
}


def domain_gap(overrides: tuple[str, ...] = (), steps: int = 1500) -> dict:
    """The world VLM (the default config) against the foreign one (ablations/foreign.yaml), and the VLM between."""
    rows = []
    world = load_config(None, [*overrides])
    for domain, (preset, extra) in VLMS.items():
        cfg = load_config(preset, [*extra, *overrides])
        loc = location_probe(cfg, steps=steps)
        zero = zero_shot_world_questions(cfg, world)
        rows.append({"vlm": pretrained.vlm_name(cfg), "domain": domain, "kv_location_error": loc["best_error"],
                     **{f"error_layer{i}": e for i, e in enumerate(loc["layer_errors"])},
                     "chance_error": loc["chance_error"], "world_questions_acc": zero["mean"],
                     **{f"world_{q}": a for q, a in zero.items() if q != "mean"}})  # fmt: skip
    w, f = rows[0], rows[-1]
    return {"value": round(f["kv_location_error"] / w["kv_location_error"], 2), "unit": "x",
            "command": "kinsul bench domain_gap",
            "goal": "the foreign VLM locates the instructed target markedly worse than the world VLM (value: its "
                    "K/V location error over the world VLM's)",
            "ok": f["kv_location_error"] > 1.25 * w["kv_location_error"],
            "details": {"world_error": w["kv_location_error"], "foreign_error": f["kv_location_error"],
                        "chance_error": w["chance_error"], "world_zero_shot": w["world_questions_acc"],
                        "foreign_zero_shot": f["world_questions_acc"],
                        "along_the_gap": {r["domain"]: r["kv_location_error"] for r in rows}},
            "table": rows}  # fmt: skip
