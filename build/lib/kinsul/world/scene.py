"""Scene state and scene sampling: objects with colour, shape and size on the unit table (y points down)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kinsul.world.concepts import COLOURS, SHAPES, SIZES

GRIPPER_RADIUS = 0.04
TABLE_MARGIN = 0.02


@dataclass
class Obj:
    colour: str
    shape: str
    size: str
    pos: np.ndarray  # (2,) float64, table units

    @property
    def radius(self) -> float:
        return SIZES[self.size]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class Scene:
    objects: list[Obj]
    gripper: np.ndarray  # (2,)
    closed: bool = False
    held: int = -1  # index of the held object, -1 when none
    speed: float = 0.0  # |commanded velocity| of the last step, in units of max speed
    z_order: list[int] = field(default_factory=list)  # draw order, last on top

    def __post_init__(self) -> None:
        if not self.z_order:
            self.z_order = list(range(len(self.objects)))

    def raise_to_top(self, i: int) -> None:
        self.z_order.remove(i)
        self.z_order.append(i)


def clamp_to_table(pos: np.ndarray, radius: float) -> np.ndarray:
    lo = radius + TABLE_MARGIN
    return np.clip(pos, lo, 1.0 - lo)


def sample_scene(
    rng: np.random.Generator,
    n_objects: int,
    colours: list[str] | None = None,
    shapes: list[str] | None = None,
    forced: list[tuple[str, str]] | None = None,
) -> Scene:
    """Place ``n_objects`` non-overlapping objects with distinct (colour, shape) pairs.

    ``forced`` pairs are placed first (used to put a held-out or distractor object into the scene).
    """
    colours = colours or list(COLOURS)
    shapes = shapes or list(SHAPES)
    pairs: list[tuple[str, str]] = list(forced or [])
    while len(pairs) < n_objects:
        pair = (colours[rng.integers(len(colours))], shapes[rng.integers(len(shapes))])
        if pair not in pairs:
            pairs.append(pair)
    objects: list[Obj] = []
    for colour, shape in pairs:
        size = ("small", "large")[rng.integers(2)]
        r = SIZES[size]
        for _ in range(200):
            pos = rng.uniform(r + TABLE_MARGIN, 1 - r - TABLE_MARGIN, size=2)
            if all(np.linalg.norm(pos - o.pos) > r + o.radius + 0.03 for o in objects):
                break
        else:
            raise RuntimeError(f"could not place {n_objects} objects without overlap")
        objects.append(Obj(colour, shape, size, pos))
    order = rng.permutation(len(objects))
    objects = [objects[i] for i in order]
    gripper = rng.uniform(0.1, 0.9, size=2)
    return Scene(objects=objects, gripper=gripper)


def free_gripper_position(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """A start position in free space, not on an object (robot episodes start there)."""
    for _ in range(200):
        gripper = rng.uniform(0.1, 0.9, size=2)
        if all(np.linalg.norm(gripper - o.pos) > o.radius + GRIPPER_RADIUS for o in scene.objects):
            return gripper
    return scene.gripper
