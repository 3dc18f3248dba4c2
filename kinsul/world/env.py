"""KinsulWorld as a gymnasium environment."""

from __future__ import annotations

import string
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from kinsul.world.concepts import COLOURS, SHAPES, ConceptConfig
from kinsul.world.config import WorldConfig
from kinsul.world.render import Renderer
from kinsul.world.scene import GRIPPER_RADIUS, Scene, clamp_to_table, free_gripper_position, sample_scene
from kinsul.world.tasks import Task, sample_task

ACTION_DIM = 3  # (vx, vy, grip): velocity in units of max_speed, grip > 0 closes the gripper
STATE_DIM = 4  # (x, y, closed, holding)
GRASP_TOLERANCE = 0.7  # grasp succeeds when the gripper is within this fraction of an object's radius
DWELL_SPEED = 0.25  # a gripper slower than this (fraction of max speed) over an object interacts with it
INSTRUCTION_MAX_LEN = 128


class KinsulWorldEnv(gym.Env):
    """A gripper and a few objects on a unit table, seen from above.

    ``reset(options=...)`` accepts ``task`` (a family name), ``concepts`` ("seen" targets only, the default,
    or "heldout" targets named by a held-out concept) and ``distractors`` ("share_attribute": every other
    object shares the target's colour or its shape).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        config: WorldConfig | None = None,
        concepts: ConceptConfig | None = None,
        render_mode: str | None = "rgb_array",
    ):
        self.config = config or WorldConfig()
        self.concepts = concepts or ConceptConfig()
        self.render_mode = render_mode
        self.renderer = Renderer(self.config.image_size)
        s = self.config.image_size
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (s, s, 3), np.uint8),
                "state": spaces.Box(0.0, 1.0, (STATE_DIM,), np.float32),
                "instruction": spaces.Text(INSTRUCTION_MAX_LEN, charset=string.ascii_lowercase + " "),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self.scene: Scene | None = None
        self.task: Task | None = None

    # -- gymnasium API -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        family = options.get("task") or self.config.tasks[self.np_random.integers(len(self.config.tasks))]
        mode = options.get("concepts", "seen")
        if mode not in ("seen", "heldout"):
            raise ValueError(f"reset option concepts={mode!r}: expected 'seen' or 'heldout'")
        for _ in range(1000):
            self.scene, target = self._sample_scene(mode == "heldout", options.get("distractors"))
            self.scene.gripper = free_gripper_position(self.scene, self.np_random)
            self.task = sample_task(
                self.scene,
                family,
                self.np_random,
                self.concepts,
                heldout=mode == "heldout",
                relational_prob=self.config.relational_prob,
                target=target,
                reach_tolerance=self.config.reach_tolerance,
                region_width=self.config.region_width,
            )
            if self.task is not None:
                break
        else:
            raise RuntimeError(f"could not draw a '{family}' task with concepts={mode}")
        self.steps = 0
        self.first_interaction = -1
        return self._obs(), self._info(False)

    def step(self, action):
        sc, cfg = self.scene, self.config
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        sc.gripper = np.clip(sc.gripper + a[:2] * cfg.max_speed, 0.0, 1.0)
        closing = a[2] > 0
        if closing and not sc.closed:
            self._grasp()
        elif not closing and sc.closed and sc.held >= 0:
            sc.raise_to_top(sc.held)  # released onto whatever lies below
            sc.held = -1
        sc.closed = bool(closing)
        if sc.held >= 0:
            held = sc.objects[sc.held]
            held.pos = clamp_to_table(sc.gripper.copy(), held.radius)
        elif sc.closed:
            self._push(a[:2] * cfg.max_speed)
        sc.speed = float(np.linalg.norm(a[:2]))
        if sc.speed < DWELL_SPEED:
            self._dwell()
        self.steps += 1
        success = self.task.success(sc)
        if success:  # reaching the target is itself an interaction with it (reach ends before any dwell)
            self._interact(self.task.target)
        truncated = not success and self.steps >= cfg.max_steps
        return self._obs(), float(success), success, truncated, self._info(success)

    def render(self) -> np.ndarray:
        return self.renderer.render(self.scene)

    # -- physics ------------------------------------------------------------------------------------
    def _grasp(self) -> None:
        sc = self.scene
        for i in reversed(sc.z_order):  # the top-most object under the gripper
            o = sc.objects[i]
            if np.linalg.norm(o.pos - sc.gripper) < GRASP_TOLERANCE * o.radius:
                sc.held = i
                sc.raise_to_top(i)
                self._interact(i)
                return

    def _push(self, motion: np.ndarray) -> None:
        """A closed, empty gripper pushes the objects it overlaps after moving by ``motion``: out along the contact
        normal (a round pusher), or, with a flat pusher, an object ahead of the motion along the motion itself."""
        sc = self.scene
        speed = float(np.linalg.norm(motion))
        heading = motion / speed if speed > 1e-9 else None
        for i, o in enumerate(sc.objects):
            d = o.pos - sc.gripper
            dist = float(np.linalg.norm(d))
            reach = GRIPPER_RADIUS + o.radius
            if dist >= reach:
                continue
            ahead = float(d @ heading) if heading is not None else 0.0
            if self.config.pusher == "flat" and ahead > 0:
                # carry it along the motion until it just touches: |d + s * heading| = reach
                s = -ahead + np.sqrt(ahead * ahead + reach * reach - dist * dist)
                o.pos = clamp_to_table(o.pos + s * heading, o.radius)
            else:
                normal = d / dist if dist > 1e-9 else np.array([1.0, 0.0])
                o.pos = clamp_to_table(sc.gripper + normal * reach, o.radius)
            self._interact(i)

    def _dwell(self) -> None:
        sc = self.scene
        for i in reversed(sc.z_order):
            o = sc.objects[i]
            if np.linalg.norm(o.pos - sc.gripper) < 0.6 * o.radius:
                self._interact(i)
                return

    def _interact(self, i: int) -> None:
        if self.first_interaction < 0:
            self.first_interaction = i

    # -- helpers ------------------------------------------------------------------------------------
    def _sample_scene(self, heldout: bool, distractors: str | None) -> tuple[Scene, int | None]:
        rng, cfg, cc = self.np_random, self.config, self.concepts
        n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        if not heldout and not distractors:
            return sample_scene(rng, n), None

        def pick(options: list[str]) -> str:
            return options[rng.integers(len(options))]

        if not heldout:
            pair = (pick(cc.seen_colours), pick(cc.seen_shapes))
        elif cc.heldout_shapes and (not cc.heldout_colours or rng.random() < 0.5):
            pair = (pick(list(COLOURS)), pick(cc.heldout_shapes))
        else:
            pair = (pick(cc.heldout_colours), pick(list(SHAPES)))
        forced = [pair]
        if distractors == "share_attribute":
            forced += self._distractors(pair, n - 1)
        elif distractors is not None:
            raise ValueError(f"reset option distractors={distractors!r}: expected 'share_attribute' or None")
        scene = sample_scene(rng, n, forced=forced)
        target = next(i for i, o in enumerate(scene.objects) if (o.colour, o.shape) == pair)
        return scene, target

    def _distractors(self, pair: tuple[str, str], k: int) -> list[tuple[str, str]]:
        rng, cc = self.np_random, self.concepts
        out: list[tuple[str, str]] = []
        while len(out) < k:
            if rng.random() < 0.5:
                cand = (pair[0], cc.seen_shapes[rng.integers(len(cc.seen_shapes))])
            else:
                cand = (cc.seen_colours[rng.integers(len(cc.seen_colours))], pair[1])
            if cand != pair and cand not in out:
                out.append(cand)
        return out

    def _obs(self) -> dict[str, Any]:
        sc = self.scene
        state = np.array([*sc.gripper, float(sc.closed), float(sc.held >= 0)], dtype=np.float32)
        return {"image": self.render(), "state": state, "instruction": self.task.instruction}

    def _info(self, success: bool) -> dict[str, Any]:
        t, o = self.task, self.scene.objects[self.task.target]
        return {
            "task": t.family,
            "target": t.target,
            "target_colour": o.colour,
            "target_shape": o.shape,
            "heldout": self.concepts.is_heldout(o.colour, o.shape),
            "first_interaction": self.first_interaction,
            "is_success": success,
        }
