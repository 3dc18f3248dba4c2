"""Task families: how a task is drawn for a scene, how its instruction reads, and its success test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kinsul.world.concepts import ConceptConfig
from kinsul.world.language import TEMPLATES, attribute_expr, relational_expr, unique_relations
from kinsul.world.scene import Scene

REGION_WIDTH = 0.25  # default push region: the band of the table within this distance of its edge
REGION_CLEARANCE = 0.1  # a push target starts at least this much outside its region
REGION_DIRECTION = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "top": (0.0, -1.0), "bottom": (0.0, 1.0)}
REACH_TOLERANCE = 1.0  # default success radius as a fraction of the target's radius (world.reach_tolerance)
REACH_SPEED = 0.25  # reaching means arriving: the gripper must also be this slow (fraction of max speed)
PLACE_TOLERANCE = 0.6


@dataclass
class Task:
    family: str
    target: int
    instruction: str
    destination: int = -1  # pick_place: the object to place the target on
    region: str = ""  # push: the named region
    reach_tolerance: float = REACH_TOLERANCE  # reach: success radius as a fraction of the target's radius
    region_width: float = REGION_WIDTH  # push: depth of the named region

    def success(self, scene: Scene) -> bool:
        t = scene.objects[self.target]
        if self.family == "reach":
            near = np.linalg.norm(scene.gripper - t.pos) < self.reach_tolerance * t.radius
            return bool(near and scene.speed < REACH_SPEED)
        if self.family == "push":
            return scene.held != self.target and in_region(t.pos, self.region, self.region_width)
        d = scene.objects[self.destination]
        return scene.held == -1 and bool(np.linalg.norm(t.pos - d.pos) < PLACE_TOLERANCE * d.radius)


def in_region(pos: np.ndarray, region: str, width: float = REGION_WIDTH) -> bool:
    x, y = pos
    return {"left": x < width, "right": x > 1 - width, "top": y < width, "bottom": y > 1 - width}[region]


def _refer(scene: Scene, i: int, rng: np.random.Generator, relational_prob: float, anchors_ok) -> str:
    relations = [(rel, ref) for rel, ref in unique_relations(scene, i) if anchors_ok(ref)]
    if relations and rng.random() < relational_prob:
        rel, ref = relations[rng.integers(len(relations))]
        return relational_expr(scene, rel, ref)
    return attribute_expr(scene, i, rng)


def sample_task(
    scene: Scene,
    family: str,
    rng: np.random.Generator,
    concepts: ConceptConfig,
    heldout: bool,
    relational_prob: float,
    target: int | None = None,
    reach_tolerance: float = REACH_TOLERANCE,
    region_width: float = REGION_WIDTH,
) -> Task | None:
    """Draw a task of ``family``; ``None`` when this scene cannot host one under the concept split.

    Seen mode never names a held-out concept (target, destination and relation anchors are all seen);
    held-out mode always targets an object with a held-out concept and names it by its attributes.
    """

    def seen(i: int) -> bool:
        o = scene.objects[i]
        return not concepts.is_heldout(o.colour, o.shape)

    n = len(scene.objects)
    if target is None:
        targets = [i for i in range(n) if seen(i) != heldout]
        if not targets:
            return None
        target = int(targets[rng.integers(len(targets))])
    ref = (
        attribute_expr(scene, target, rng)
        if heldout
        else _refer(scene, target, rng, relational_prob, anchors_ok=seen)
    )
    templates = TEMPLATES[family]
    template = templates[rng.integers(len(templates))]
    if family == "reach":
        return Task(family, target, template.format(t=ref), reach_tolerance=reach_tolerance)
    if family == "push":
        pos = scene.objects[target].pos
        regions = [r for r in REGION_DIRECTION if not in_region(pos, r, region_width + REGION_CLEARANCE)]
        if not regions:
            return None
        region = regions[rng.integers(len(regions))]
        return Task(
            family, target, template.format(t=ref, r=region), region=region, region_width=region_width
        )
    dests = [i for i in range(n) if i != target and seen(i)]
    if not dests:
        return None
    dest = int(dests[rng.integers(len(dests))])
    instruction = template.format(t=ref, d=attribute_expr(scene, dest, rng))
    return Task(family, target, instruction, destination=dest)
