"""Calibration of the offline action metrics: where a blind policy lands and where the expert's own spread is.

An offline target means grounded control only if it lies between two references measured on the same frames:
- **blind**: the best predictor that does not see the image (gripper state + the instruction's words, an MLP
  fitted to the training split). It knows the task family and the named region, never where the target is.
- **expert**: the demonstrator's own spread. Each validation episode is replayed exactly; from the world state of
  every frame, ``k`` scripted experts carry on the motion under way with a new style and new noise, each planning
  a chunk. One frame shows neither style nor noise, so no policy can beat them: their error against the stored
  chunk is the floor.

Metrics (velocity channels only where named so; padded steps past an episode's end are ignored):
- ``action_mse``: one chunk vs the demonstration, all channels (what ``val/action_mse`` logs);
- ``velocity_mse``: the *expected* chunk (mean of ``k`` samples) vs the demonstration, velocity channels only
  (what ``val/velocity_mse`` logs). It removes each model's own sampling spread and the grip channel, which needs
  no grounding.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from kinsul.config import load_config
from kinsul.config.schema import KinsulConfig
from kinsul.data import store
from kinsul.data.robot import MAX_ATTEMPTS, ROBOT_SPLITS, episode_seed
from kinsul.models.decoding import chunk_metrics
from kinsul.world.env import KinsulWorldEnv
from kinsul.world.expert import ScriptedExpert
from kinsul.world.language import WORDS


def _errors(pred: np.ndarray, demo: np.ndarray, pad: np.ndarray) -> dict[str, np.ndarray]:
    """``chunk_metrics`` (the metric training logs) on numpy arrays: ``pred`` is (k, N, H, A)."""
    out = chunk_metrics(
        torch.from_numpy(pred).double(), torch.from_numpy(demo).double(), torch.from_numpy(pad)
    )
    return {k: v.numpy() for k, v in out.items()}


def replay_states(cfg: KinsulConfig, split: str, episode: int) -> list[tuple[KinsulWorldEnv, ScriptedExpert]]:
    """The world and the expert at every frame of a stored episode, reproduced exactly from its seed."""
    env = KinsulWorldEnv(cfg.world, cfg.concepts)
    for attempt in range(MAX_ATTEMPTS):
        seed = episode_seed(cfg.data.seed, split, episode, attempt)
        expert = ScriptedExpert(env, np.random.default_rng(seed))
        env.reset(seed=seed, options={"concepts": ROBOT_SPLITS[split]})
        expert.reset()
        states, done, info = [], False, {}
        while not done:
            # one deepcopy of both, so the copied expert drives the copied world
            states.append(copy.deepcopy((env, expert)))
            _, _, terminated, truncated, info = env.step(expert.act())
            done = terminated or truncated
        if info["is_success"]:
            return states
    raise RuntimeError(f"episode {episode} of '{split}' does not replay")


def fresh_expert_chunks(
    state: tuple[KinsulWorldEnv, ScriptedExpert], horizon: int, k: int, seed: int
) -> np.ndarray:
    """(k, H, A): k experts that carry on the motion under way with a new style and new noise, each planning
    ``horizon`` steps on a copy of the world. A single frame shows neither the style nor the noise, so no
    policy that sees one frame can do better than these samplers."""
    out = np.zeros((k, horizon, 3), np.float32)
    for j in range(k):
        sim, expert = copy.deepcopy(state)
        expert.rng = np.random.default_rng([seed, j])
        expert.restyle()
        for t in range(horizon):
            out[j, t] = expert.act()
            if sim.step(out[j, t])[2]:
                out[j, t + 1 :, 2] = out[j, t, 2]  # what a stored chunk holds past the end
                break
    return out


def expert_reference(cfg: KinsulConfig, episodes: int, k: int) -> dict[str, float]:
    val = store.load(cfg, "robot")["validation"].with_format("numpy", columns=["episode_index", "frame_index",
                                                                               "actions", "action_pad"])  # fmt: skip
    rows = val[:]
    errs: dict[str, list] = {}
    for ep in sorted(set(rows["episode_index"].tolist()))[:episodes]:
        sel = np.flatnonzero(rows["episode_index"] == ep)
        states = replay_states(cfg, "validation", int(ep))
        preds = np.stack([fresh_expert_chunks(states[int(rows["frame_index"][i])], cfg.data.chunk_size, k,
                                              seed=int(ep) * 1000 + int(rows["frame_index"][i]))
                          for i in sel], axis=1)  # fmt: skip
        for key, v in _errors(preds, rows["actions"][sel], rows["action_pad"][sel]).items():
            errs.setdefault(key, []).extend(v.tolist())
    return {key: float(np.mean(v)) for key, v in errs.items()}


def _blind_features(split) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, chunks, pad): gripper state + bag of instruction words, never the image."""
    index = {w: i for i, w in enumerate(WORDS)}
    cols = split.with_format("numpy", columns=["state", "actions", "action_pad"])[:]
    bags = np.zeros((len(split), len(WORDS)), np.float32)
    for r, text in enumerate(split["instruction"]):
        for w in text.split():
            bags[r, index[w]] = 1.0
    x = np.concatenate([cols["state"].astype(np.float32), bags], 1)
    return torch.from_numpy(x), torch.from_numpy(cols["actions"]), torch.from_numpy(cols["action_pad"])


def blind_reference(cfg: KinsulConfig, steps: int = 3000, seed: int = 0) -> dict[str, float]:
    """An image-free MLP regressing the chunk (its output is an expected chunk: k = infinity)."""
    robot = store.load(cfg, "robot")
    x, y, pad = _blind_features(robot["train"])
    xv, yv, padv = _blind_features(robot["validation"])
    torch.manual_seed(seed)
    out = y.shape[1] * y.shape[2]
    net = nn.Sequential(
        nn.Linear(x.shape[1], 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(), nn.Linear(256, out)
    )
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (256,), generator=g)
        keep = (~pad[idx]).float()[..., None]
        loss = ((net(x[idx]).view_as(y[idx]) - y[idx]) ** 2 * keep).sum() / (keep.sum() * y.shape[-1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = net(xv).view_as(yv).numpy()[None]
    return {key: float(v.mean()) for key, v in _errors(pred, yv.numpy(), padv.numpy()).items()}


def zeros_reference(cfg: KinsulConfig) -> dict[str, float]:
    val = store.load(cfg, "robot")["validation"].with_format("numpy", columns=["actions", "action_pad"])[:]
    pred = np.zeros_like(val["actions"])[None]
    return {key: float(v.mean()) for key, v in _errors(pred, val["actions"], val["action_pad"]).items()}


def target_between(blind: float, expert: float, fraction: float = 0.5) -> float:
    """A target ``fraction`` of the way from the blind reference down to the expert's floor."""
    return expert + (1 - fraction) * (blind - expert)


def calibration(episodes: int = 50, k: int = 8) -> dict:
    cfg = load_config()
    store.generate(cfg, "robot", progress=False)
    refs = {
        "zeros": zeros_reference(cfg),
        "blind": blind_reference(cfg),
        "expert": expert_reference(cfg, episodes, k),
    }
    details: dict[str, float] = {}
    for name, r in refs.items():
        for key, v in r.items():
            details[f"{name}_{key}"] = round(v, 4)
    target = target_between(refs["blind"]["velocity_mse"], refs["expert"]["velocity_mse"])
    details.update({"samples_k": k, "expert_episodes": episodes, "velocity_mse_target": round(target, 4)})
    return {
        "value": round(target, 4),
        "unit": "val/velocity_mse target (halfway from blind to expert)",
        "goal": "blind > target > expert spread",
        "ok": refs["blind"]["velocity_mse"] > target > refs["expert"]["velocity_mse"],
        "command": "kinsul bench calibration",
        "details": details,
    }
