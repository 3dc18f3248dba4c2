"""Meta-World (MuJoCo) tasks behind KinsulWorld's gymnasium contract.

An observation is ``{"image": (S, S, 3) uint8, "state": (4,) float32, "instruction": str}``: the image rendered
from a scene camera, the state Meta-World's proprioception (hand x, y, z and gripper opening), the instruction the
task's sentence. ``info["is_success"]`` is the environment's own ``success`` flag; an episode terminates on it.

Rendering runs headless through MuJoCo's EGL backend (Mesa's software renderer where there is no GPU); shadows,
reflections and the skybox are switched off, which makes a 64x64 frame about 4x cheaper on the CPU and leaves
the scene's geometry as it is. ``pip install -e '.[metaworld]'`` installs it."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from kinsul.envs.config import ACTION_DIM, INSTRUCTIONS, STATE_DIM

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported: headless, no display needed

ENV_ID = "kinsul/MetaWorld-v0"


def require_metaworld():
    try:
        import metaworld  # noqa: F401
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE
        from metaworld.policies import ENV_POLICY_MAP
    except ImportError as e:
        raise ImportError(f"Meta-World is not installed ({e}): pip install -e '.[metaworld]'") from None
    return ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE, ENV_POLICY_MAP


class MetaWorldEnv(gym.Env):
    """Meta-World tasks with their object and goal positions drawn from the reset seed. ``reset(options={"task":
    name})`` switches task (as KinsulWorld's reset does), building that task's simulation."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(self, task: str, image_size: int = 64, camera: str = "corner2", max_steps: int = 150):
        require_metaworld()
        self.image_size, self.camera, self.max_steps = image_size, camera, max_steps
        self.render_mode = "rgb_array"
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
            "state": spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32),
            "instruction": spaces.Text(128, charset="abcdefghijklmnopqrstuvwxyz -"),
        })  # fmt: skip
        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self._sims: dict[str, tuple] = {}  # task -> (simulation, renderer, scripted policy)
        self.raw: np.ndarray | None = None  # Meta-World's full observation (what its scripted policies read)
        self.steps = 0
        self._select(task)

    def _select(self, task: str) -> None:
        import mujoco

        if task not in INSTRUCTIONS:
            raise ValueError(f"task={task!r}: expected one of {sorted(INSTRUCTIONS)}")
        if task not in self._sims:
            self.close()  # one task's simulation and GL context at a time: evaluation batches run a task each
            envs, policies = require_metaworld()
            sim = envs[f"{task}-goal-observable"]()
            sim.seeded_rand_vec = (
                True  # object and goal positions from the env's seeded generator, not numpy's global one
            )
            self._sims[task] = (
                sim,
                mujoco.Renderer(sim.model, self.image_size, self.image_size),
                policies[task](),
            )
        self.task, self.instruction = task, INSTRUCTIONS[task]
        self.sim, self.renderer, self._policy = self._sims[task]

    def render(self) -> np.ndarray:
        import mujoco

        self.renderer.update_scene(self.sim.data, camera=self.camera)
        for flag in (
            mujoco.mjtRndFlag.mjRND_SHADOW,
            mujoco.mjtRndFlag.mjRND_REFLECTION,
            mujoco.mjtRndFlag.mjRND_SKYBOX,
        ):
            self.renderer.scene.flags[flag] = 0
        return np.ascontiguousarray(np.flipud(self.renderer.render()))  # MuJoCo's rows run bottom-up

    def _obs(self) -> dict[str, Any]:
        return {"image": self.render(), "state": self.raw[:STATE_DIM].astype(np.float32),
                "instruction": self.instruction}  # fmt: skip

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options and options.get("task"):
            self._select(options["task"])
        self.sim._freeze_rand_vec = False  # a new object and goal position from the seed
        if seed is not None:
            self.sim.seed(seed)
        self.raw, _ = self.sim.reset()
        self.steps = 0
        return self._obs(), {"is_success": False, "task": self.task}

    def step(self, action):
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        self.raw, reward, _, _, info = self.sim.step(action)
        self.steps += 1
        success = bool(info.get("success", 0.0) >= 1.0)
        truncated = self.steps >= self.max_steps and not success
        return self._obs(), float(reward), success, truncated, {"is_success": success, "task": self.task}

    def scripted_action(self) -> np.ndarray:
        """Meta-World's own scripted policy for this task, on the current state."""
        return np.clip(self._policy.get_action(self.raw), -1.0, 1.0).astype(np.float32)

    def close(self) -> None:
        for sim, renderer, _ in self._sims.values():
            renderer.close()
            sim.close()
        self._sims.clear()


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="kinsul.envs.metaworld:MetaWorldEnv")
