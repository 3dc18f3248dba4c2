"""Numpy renderer: precomputed boolean sprites stamped on a background; a 64x64 frame costs microseconds."""

from __future__ import annotations

import numpy as np

from kinsul.world.concepts import COLOURS, SHAPES, SIZES
from kinsul.world.scene import GRIPPER_RADIUS, Scene

BACKGROUND = (222, 214, 196)
GRIPPER_COLOUR = (25, 25, 25)


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test in coordinates normalised by the object radius (v points down)."""
    r = np.hypot(u, v)
    if shape == "circle":
        return r <= 1.0
    if shape == "square":
        return (np.abs(u) <= 0.82) & (np.abs(v) <= 0.82)
    if shape == "triangle":
        return (v <= 0.75) & (v >= -0.95) & (np.abs(u) <= (v + 0.95) / 1.7 * 1.2)
    if shape == "star":
        # Radius falls linearly from a tip (1.0) to the notch between tips (0.45); one tip points up.
        sector = 2 * np.pi / 5
        phase = np.mod(np.arctan2(v, u) + np.pi / 2, sector) / sector
        return r <= 0.45 + 0.55 * np.abs(1 - 2 * phase)
    if shape == "cross":
        return ((np.abs(u) <= 0.32) & (np.abs(v) <= 0.98)) | ((np.abs(v) <= 0.32) & (np.abs(u) <= 0.98))
    raise ValueError(f"unknown shape {shape!r}")


def _sprite(radius_px: float, fn) -> np.ndarray:
    half = int(np.ceil(radius_px))
    grid = (np.arange(-half, half + 1) + 0.0) / radius_px
    v, u = np.meshgrid(grid, grid, indexing="ij")
    return fn(u, v)


def stamp(img: np.ndarray, mask: np.ndarray, pos: np.ndarray, colour: np.ndarray) -> None:
    """Paint ``colour`` where the boolean sprite ``mask``, centred at ``pos`` (in [0, 1] of the square image), lands
    inside ``img``; the part outside the frame is clipped."""
    size = img.shape[0]
    half = mask.shape[0] // 2
    cx, cy = int(pos[0] * size), int(pos[1] * size)
    x0, y0 = cx - half, cy - half
    x1, y1 = x0 + mask.shape[1], y0 + mask.shape[0]
    sx0, sy0 = max(0, -x0), max(0, -y0)
    sx1 = mask.shape[1] - max(0, x1 - size)
    sy1 = mask.shape[0] - max(0, y1 - size)
    if sx1 <= sx0 or sy1 <= sy0:
        return
    region = img[y0 + sy0 : y0 + sy1, x0 + sx0 : x0 + sx1]
    region[mask[sy0:sy1, sx0:sx1]] = colour


class Renderer:
    def __init__(self, image_size: int):
        self.size = image_size
        self.sprites = {
            (shape, size): _sprite(SIZES[size] * image_size, lambda u, v, s=shape: _shape_mask(s, u, v))
            for shape in SHAPES
            for size in SIZES
        }
        g = GRIPPER_RADIUS * image_size
        self.gripper_open = _sprite(g, lambda u, v: (np.hypot(u, v) <= 1.0) & (np.hypot(u, v) >= 0.55))
        self.gripper_closed = _sprite(g, lambda u, v: np.hypot(u, v) <= 1.0)
        self.background = np.empty((image_size, image_size, 3), np.uint8)
        self.background[:] = BACKGROUND
        self.colours = {k: np.array(v, np.uint8) for k, v in COLOURS.items()}
        self.gripper_colour = np.array(GRIPPER_COLOUR, np.uint8)

    def render(self, scene: Scene, draw_gripper: bool = True) -> np.ndarray:
        img = self.background.copy()
        for i in scene.z_order:
            o = scene.objects[i]
            stamp(img, self.sprites[(o.shape, o.size)], o.pos, self.colours[o.colour])
        if draw_gripper:
            mask = self.gripper_closed if scene.closed else self.gripper_open
            stamp(img, mask, scene.gripper, self.gripper_colour)
        return img
