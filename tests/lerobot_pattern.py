"""The frames of the tests' LeRobot datasets, as formulas: the writer (kinsul's, or the `lerobot` package's in
tests/data/make_lerobot_dataset.py) stores them, the tests read them back and compare frame by frame.

Adjacent frames differ by 40 or more in a channel, far beyond what a lossy codec moves a flat colour, so a frame
read at the wrong timestamp is caught."""

import numpy as np

LENGTHS = (6, 4, 5)
FPS = 10
HEIGHT, WIDTH = 32, 48
CAMERA = "observation.images.top"
TASKS = ("pick up the cube", "open the drawer")


def task(e: int) -> str:
    return TASKS[e % 2]


def state(e: int, t: int) -> np.ndarray:
    return np.array([e, t, e * 10 + t + 0.5], np.float32)


def action(e: int, t: int) -> np.ndarray:
    return np.array([t * 0.25 - 1, e - 0.5], np.float32)


def colour(e: int, t: int) -> np.ndarray:
    return np.array([(40 * t + 90 * e) % 256, (255 - 50 * t) % 256, 160 if e % 2 else 40], np.uint8)


def image(e: int, t: int) -> np.ndarray:
    """The left half in the frame's colour, the right half in its complement (orientation is checked too)."""
    img = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    img[:, : WIDTH // 2] = colour(e, t)
    img[:, WIDTH // 2 :] = 255 - colour(e, t)
    return img
