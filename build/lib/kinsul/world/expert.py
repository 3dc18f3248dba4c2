"""A scripted expert that solves every task family with smooth, noisy, varied trajectories.

Each episode draws a style (speed, smoothing, noise level, a curved approach bending left or right), so
that the demonstrations for one observation are multimodal, which is what flow matching is for.
The controller is closed-loop: its phase is re-derived from the scene, so a perturbation is recovered.
"""

from __future__ import annotations

import numpy as np

from kinsul.world.env import KinsulWorldEnv
from kinsul.world.scene import GRIPPER_RADIUS, clamp_to_table
from kinsul.world.tasks import REGION_DIRECTION

OPEN, CLOSE = -1.0, 1.0


class ScriptedExpert:
    def __init__(self, env: KinsulWorldEnv, rng: np.random.Generator):
        self.env = env.unwrapped
        self.rng = rng

    def reset(self) -> None:
        self.restyle()
        self.v = np.zeros(2)
        self.ou = np.zeros(2)
        self.phase = "start"
        self.leg: tuple | None = None
        self.via: np.ndarray | None = None

    def restyle(self) -> None:
        """Draw a new style; the motion under way (velocity, noise, phase) carries on."""
        r = self.rng
        self.speed = r.uniform(0.55, 1.0)  # fraction of max speed
        self.smooth = r.uniform(0.2, 0.6)  # low-pass factor on the velocity command
        self.noise = r.uniform(0.03, 0.15)  # OU noise scale, action units
        self.bend = r.choice([-1.0, 1.0]) * r.uniform(0.1, 0.35)  # lateral offset of the approach curve
        self.grip_level = r.uniform(0.6, 1.0)

    # -- motion primitives ---------------------------------------------------------------------------
    def _steer(self, goal: np.ndarray, leg: tuple, curve: bool = True) -> np.ndarray:
        """Velocity command (action units) to ``goal``, through a bent via-point on long legs."""
        g = self.env.scene.gripper
        if leg != self.leg:
            self.leg = leg
            span = goal - g
            dist = float(np.linalg.norm(span))
            self.via = None
            if curve and dist > 0.2:
                perp = np.array([-span[1], span[0]]) / dist
                self.via = np.clip(g + 0.5 * span + perp * self.bend * dist, 0.05, 0.95)
        aim = goal
        if self.via is not None:
            if np.linalg.norm(self.via - g) < 0.06:
                self.via = None
            else:
                aim = self.via
        delta = (aim - g) / self.env.config.max_speed
        dist = float(np.linalg.norm(delta))
        cap = self.speed if aim is not goal else min(self.speed, 0.6 * dist)
        return delta / dist * min(cap, dist) if dist > 1e-9 else np.zeros(2)

    def _act(self, v_des: np.ndarray, grip: float, settle: float) -> np.ndarray:
        self.v = self.smooth * self.v + (1 - self.smooth) * v_des
        self.ou = 0.7 * self.ou + self.noise * self.rng.standard_normal(2)
        noise = self.ou * min(1.0, settle)  # quiet near a goal, so precision is kept
        action = np.empty(3, np.float32)
        action[:2] = np.clip(self.v + noise, -1, 1)
        action[2] = grip * self.grip_level
        return action

    # -- policy ---------------------------------------------------------------------------------------
    def act(self) -> np.ndarray:
        task = self.env.task
        return getattr(self, f"_{task.family}")(task)

    def _reach(self, task) -> np.ndarray:
        target = self.env.scene.objects[task.target].pos
        dist = np.linalg.norm(target - self.env.scene.gripper)
        return self._act(self._steer(target, ("reach",)), OPEN, dist / 0.1)

    def _push(self, task) -> np.ndarray:
        sc = self.env.scene
        obj = sc.objects[task.target]
        d = np.array(REGION_DIRECTION[task.region])
        contact = GRIPPER_RADIUS + obj.radius
        rel = obj.pos - sc.gripper
        along = float(rel @ d)
        lateral = rel - along * d
        if self.phase == "push" and (
            along < 0 or np.linalg.norm(lateral) > 0.6 * obj.radius or np.linalg.norm(rel) > contact + 0.04
        ):
            self.phase = "approach"  # lost the object: go around and behind it again
        if self.phase != "push":
            behind = np.clip(obj.pos - d * (contact + 0.02), 0.0, 1.0)
            gap = float(np.linalg.norm(behind - sc.gripper))
            if gap < 0.015:
                self.phase = "push"
            else:
                self.phase = "approach"
                return self._act(self._steer(behind, ("behind", self.phase)), OPEN, gap / 0.1)
        v = d * self.speed * 0.8 + lateral / self.env.config.max_speed * 0.5
        return self._act(v, CLOSE, 0.3)

    def _pick_place(self, task) -> np.ndarray:
        sc = self.env.scene
        obj, dest = sc.objects[task.target], sc.objects[task.destination]
        if sc.held == task.target:
            # A held object stays on the table, so near an edge aim where its centre can actually go.
            goal = clamp_to_table(dest.pos, obj.radius)
            gap = float(np.linalg.norm(goal - obj.pos))
            if gap < 0.3 * dest.radius:
                return self._act(np.zeros(2), OPEN, 0.0)  # release on top of the destination
            return self._act(self._steer(goal, ("carry",)), CLOSE, gap / 0.1)
        gap = float(np.linalg.norm(obj.pos - sc.gripper))
        if gap < 0.3 * obj.radius and np.linalg.norm(self.v) < 0.5:
            return self._act(np.zeros(2), CLOSE, 0.0)
        return self._act(self._steer(obj.pos, ("fetch",)), OPEN, gap / 0.1)


def run_expert_episode(env: KinsulWorldEnv, expert: ScriptedExpert, seed: int, options: dict | None = None):
    """Roll the expert out once; returns (observations, actions, info of the last step)."""
    obs, info = env.reset(seed=seed, options=options)
    expert.reset()
    observations, actions = [obs], []
    done = False
    while not done:
        action = expert.act()
        obs, _, terminated, truncated, info = env.step(action)
        actions.append(action)
        done = terminated or truncated
        if not done:
            observations.append(obs)
    return observations, actions, info
