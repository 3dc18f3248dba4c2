"""A foreign visual domain for VLM pretraining: the world's concepts (every colour, shape and size word) drawn
the way a web image might show them, not the way the robot sees its table. Textured, differently coloured
backgrounds (solid, stripes, checks, noise), a per-image zoom, objects anywhere in the frame, no gripper.

A VLM pretrained here knows what a "purple star" is and roughly where things are relative to each other, but
has never seen KinsulWorld's table, its lighting or its gripper: the paper's regime, where the backbone does not
already hold the representation control needs (docs/results.md, the two regimes)."""

from __future__ import annotations

import numpy as np

from kinsul.world.concepts import COLOURS
from kinsul.world.render import _shape_mask, _sprite, stamp
from kinsul.world.scene import Scene

TEXTURES = ("solid", "stripes", "checks", "noise")
SHIFT = 0.05  # the whole layout moves by up to this much per axis: less than the side-question margin (0.08)
ZOOM = (1.0, 1.3)  # object radii grow by one factor per image: never smaller than the world's, still legible


def _background_colour(rng: np.random.Generator) -> np.ndarray:
    """Desaturated: a grey level with a small tint, so every object colour stands out against it."""
    grey = rng.uniform(45, 205)
    return np.clip(grey + rng.uniform(-22, 22, 3), 0, 255)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    a = _background_colour(rng)
    b = np.clip(a + rng.choice([-1, 1]) * rng.uniform(20, 45), 0, 255)  # a texture's second tone
    kind = TEXTURES[rng.integers(len(TEXTURES))]
    yy, xx = np.mgrid[0:size, 0:size]
    if kind == "solid":
        img = np.broadcast_to(a, (size, size, 3)).astype(np.float64)
    elif kind == "stripes":
        period = rng.integers(4, 13)
        angle = rng.choice([0, 1, 2, 3])
        coord = (xx, yy, xx + yy, xx - yy)[angle]
        img = np.where(((coord // period) % 2 == 0)[..., None], a, b)
    elif kind == "checks":
        cell = rng.integers(4, 11)
        img = np.where((((xx // cell) + (yy // cell)) % 2 == 0)[..., None], a, b)
    else:
        img = a + rng.normal(0, 18, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


class ForeignRenderer:
    """``render(scene, rng)``: the scene's objects (colour, shape, size, relative placement) on a foreign image."""

    def __init__(self, image_size: int):
        self.size = image_size
        self.colours = {k: np.array(v, np.uint8) for k, v in COLOURS.items()}

    def layout(self, scene: Scene, rng: np.random.Generator) -> tuple[list[np.ndarray], float]:
        """Where each object lands in the frame and the radius scale: the scene's layout moved as a whole (its
        relations and counts are kept, its table positions are not), objects drawn larger than on the table."""
        shift = rng.uniform(-SHIFT, SHIFT, 2)
        return [np.asarray(o.pos) + shift for o in scene.objects], rng.uniform(*ZOOM)

    def draw(self, scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
        """(image, each object's centre in the frame, in [0, 1])."""
        img = background(rng, self.size)
        positions, zoom = self.layout(scene, rng)
        for i in scene.z_order:
            o = scene.objects[i]
            mask = _sprite(o.radius * zoom * self.size, lambda u, v, s=o.shape: _shape_mask(s, u, v))
            stamp(img, mask, positions[i], self.colours[o.colour])
        return img, positions

    def render(self, scene: Scene, rng: np.random.Generator | None = None) -> np.ndarray:
        return self.draw(scene, rng if rng is not None else np.random.default_rng(0))[0]


class WorldDraw:
    """KinsulWorld's own renderer behind the same ``draw`` (no randomness: its images depend on the scene only)."""

    def __init__(self, image_size: int):
        from kinsul.world.render import Renderer

        self.renderer = Renderer(image_size)

    def draw(self, scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
        return self.renderer.render(scene), [np.asarray(o.pos) for o in scene.objects]


DOMAINS = ("world", "foreign")
# The foreign recipe's tower learns where objects are only coarsely, in the frame (a SigLIP-like sense of layout),
# never the table's location bins the world recipe reads out.
FOREIGN_LOCATION_BINS = 4


def default_location_bins(domain: str, table_bins: int) -> int:
    """Stage-1 location bins per axis when pretrain.location_bins is unset: the table's own in the world domain."""
    return table_bins if domain == "world" else FOREIGN_LOCATION_BINS


def vlm_renderer(domain: str, image_size: int):
    """The renderer of VLM images in ``domain`` (data.vlm_domain): ``draw(scene, rng) -> (image, positions)``."""
    return WorldDraw(image_size) if domain == "world" else ForeignRenderer(image_size)


def domain_qtypes(domain: str) -> tuple[str, ...]:
    """Question types a domain asks: the foreign domain has no table, so no table-location answers."""
    from kinsul.world.language import QTYPES

    return QTYPES if domain == "world" else tuple(q for q in QTYPES if q != "loc")
