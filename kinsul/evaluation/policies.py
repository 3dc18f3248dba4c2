"""Policies that the rollout harness drives: each returns an action chunk per environment.

The VLA policy decodes with its strategy's own decoding; the scripted expert, a random policy and a policy that
always goes for a fixed wrong object exist to check the harness itself.
"""

from __future__ import annotations

import copy
from typing import Protocol

import numpy as np
import torch

from kinsul.data.batch import Observation
from kinsul.data.tensors import prompt_ids
from kinsul.models.decoding import decode_fast_chunks
from kinsul.world.env import ACTION_DIM, KinsulWorldEnv
from kinsul.world.expert import ScriptedExpert


class Policy(Protocol):
    def reset(self, envs: list[KinsulWorldEnv], seeds: list[int]) -> None: ...

    def act(self, obs: list[dict], envs: list[KinsulWorldEnv]) -> np.ndarray:
        """(B, T, ACTION_DIM) actions, T >= 1, for the given environments (in order)."""


class VLAPolicy:
    def __init__(self, vla, tok, fast, decoding: str, flow_steps: int, max_text_len: int, max_fast_len: int):
        self.vla, self.tok, self.fast = vla.eval(), tok, fast
        self.decoding, self.flow_steps = decoding, flow_steps
        self.max_text_len, self.max_fast_len = max_text_len, max_fast_len
        self.invalid_chunks = 0  # pi0-FAST sequences that did not decode (executed as zeros)

    def reset(self, envs, seeds) -> None:
        pass

    @torch.no_grad()
    def act(self, obs, envs) -> np.ndarray:
        device = next(self.vla.parameters()).device
        text = prompt_ids(self.tok, [o["instruction"] for o in obs], self.max_text_len)
        batch = Observation(
            torch.from_numpy(np.stack([o["image"] for o in obs])),
            torch.from_numpy(np.stack([o["state"] for o in obs])),
            text,
            text != self.tok.pad_id,
        ).to(device)
        if self.decoding == "flow":
            return self.vla.sample_actions(batch, steps=self.flow_steps).float().cpu().numpy()
        chunks, invalid = decode_fast_chunks(self.vla, self.fast, batch, self.max_fast_len)
        self.invalid_chunks += int(invalid.sum())
        return chunks.float().cpu().numpy()


class NormalizedPolicy:
    """A policy trained on scaled state and actions (a LeRobot source's meta/stats.json: ``x_norm = (x - shift) /
    scale``), run in the simulator's own units."""

    def __init__(self, policy, normalization: dict[str, dict[str, list[float]]]):
        self.policy = policy
        self.state = {k: np.asarray(v, np.float32) for k, v in normalization["state"].items()}
        self.action = {k: np.asarray(v, np.float32) for k, v in normalization["action"].items()}

    def __getattr__(self, name):  # the wrapped policy's counters (invalid_chunks)
        return getattr(self.policy, name)

    def reset(self, envs, seeds) -> None:
        self.policy.reset(envs, seeds)

    def act(self, obs, envs) -> np.ndarray:
        scaled = [{**o, "state": (o["state"] - self.state["shift"]) / self.state["scale"]} for o in obs]
        return self.policy.act(scaled, envs) * self.action["scale"] + self.action["shift"]


class ExpertPolicy:
    """The scripted expert as a chunking policy: it plans ``horizon`` steps on a copy of the (deterministic)
    environment; executing them in the real one reproduces that plan exactly."""

    def __init__(self, horizon: int):
        self.horizon = horizon
        self.experts: dict[int, ScriptedExpert] = {}

    def reset(self, envs, seeds) -> None:
        for env, seed in zip(envs, seeds, strict=True):
            self.experts[id(env)] = ScriptedExpert(env, np.random.default_rng(seed))
            self.experts[id(env)].reset()

    def act(self, obs, envs) -> np.ndarray:
        chunks = np.zeros((len(envs), self.horizon, ACTION_DIM), np.float32)
        for b, env in enumerate(envs):
            expert = self.experts[id(env)]
            sim = copy.deepcopy(env.unwrapped)
            expert.env = sim
            for t in range(self.horizon):
                chunks[b, t] = expert.act()
                *_, terminated, truncated, _ = sim.step(chunks[b, t])
                if terminated or truncated:
                    break
            expert.env = env.unwrapped
        return chunks


class SimulatorScriptedPolicy:
    """The simulator's own scripted policy (an environment's ``scripted_action()``, e.g. Meta-World's), one step
    per chunk: the harness's upper reference on that simulator."""

    def reset(self, envs, seeds) -> None:
        pass

    def act(self, obs, envs) -> np.ndarray:
        return np.stack([env.unwrapped.scripted_action() for env in envs])[:, None]


class StillPolicy:
    """Never moves: the harness's lower reference (a task it 'solves' is solved by the scene alone)."""

    def __init__(self, action_dim: int):
        self.action_dim = action_dim

    def reset(self, envs, seeds) -> None:
        pass

    def act(self, obs, envs) -> np.ndarray:
        return np.zeros((len(envs), 1, self.action_dim), np.float32)


class RandomPolicy:
    def __init__(self, horizon: int, seed: int = 0):
        self.horizon, self.rng = horizon, np.random.default_rng(seed)

    def reset(self, envs, seeds) -> None:
        pass

    def act(self, obs, envs) -> np.ndarray:
        return self.rng.uniform(-1, 1, size=(len(envs), self.horizon, ACTION_DIM)).astype(np.float32)


class WrongObjectPolicy:
    """Always heads for (and stops on) an object other than the instructed one."""

    def __init__(self, horizon: int):
        self.horizon = horizon

    def reset(self, envs, seeds) -> None:
        pass

    def act(self, obs, envs) -> np.ndarray:
        chunks = np.zeros((len(envs), 1, ACTION_DIM), np.float32)
        for b, env in enumerate(envs):
            sc, task = env.unwrapped.scene, env.unwrapped.task
            wrong = next(i for i in range(len(sc.objects)) if i != task.target)
            delta = (sc.objects[wrong].pos - sc.gripper) / env.unwrapped.config.max_speed
            chunks[b, 0, :2] = np.clip(0.5 * delta, -1, 1)
            chunks[b, 0, 2] = -1.0
        return chunks
