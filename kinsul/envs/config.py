"""The Meta-World section of the configuration (docs/simulators.md): its task set and the demonstrations."""

from __future__ import annotations

from dataclasses import dataclass, field

from kinsul.fields import FieldValueError, check_range

STATE_DIM, ACTION_DIM = 4, 4  # (hand x, y, z, gripper); (dx, dy, dz, grip) in [-1, 1]

# A language instruction per task: the backbone reads it; one policy serves the whole set.
INSTRUCTIONS = {
    "reach-v3": "reach the goal with the gripper",
    "push-v3": "push the puck to the goal",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "door-open-v3": "open the door",
    "drawer-close-v3": "close the drawer",
    "drawer-open-v3": "open the drawer",
    "button-press-topdown-v3": "press the button down from the top",
    "window-open-v3": "slide the window open",
    "window-close-v3": "slide the window closed",
    "peg-insert-side-v3": "insert the peg into the hole from the side",
}


@dataclass(frozen=True)
class MetaWorldConfig:
    """Meta-World (MuJoCo) tasks: demonstrations by Meta-World's own scripted policies, recorded as a LeRobot v3.0
    dataset, and closed-loop evaluation with the environment's own success flag."""

    tasks: list[str] = field(
        default_factory=lambda: [
            "reach-v3",
            "push-v3",
            "pick-place-v3",
            "door-open-v3",
            "drawer-close-v3",
            "button-press-topdown-v3",
        ]  # fmt: skip
    )
    episodes: int = 20  # demonstrations per task (the last one of each task is validation)
    max_steps: int = 150  # an episode's step limit, in demonstrations and in evaluation
    camera: str = "corner2"  # a camera of the Meta-World scene: corner, corner2, corner3, topview, ...
    fps: int = 80  # Meta-World's control rate (a 0.0125 s step), recorded in the dataset's info.json
    codec: str = "av1"  # video codec of the recorded demonstrations (av1 or h264)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise FieldValueError("tasks", self.tasks, f"at least one of {sorted(INSTRUCTIONS)}")
        for t in self.tasks:
            if t not in INSTRUCTIONS:
                raise FieldValueError("tasks", t, f"one of {sorted(INSTRUCTIONS)}")
        check_range("episodes", self.episodes, 2, 100_000)
        check_range("max_steps", self.max_steps, 1, 500)
        check_range("fps", self.fps, 1, 1000)
        if self.codec not in ("av1", "h264"):
            raise FieldValueError("codec", self.codec, "av1 or h264")
