"""The visual concepts of KinsulWorld and the split of concepts held out of robot demonstrations."""

from __future__ import annotations

from dataclasses import dataclass, field

from kinsul.fields import FieldValueError

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 85, 225),
    "yellow": (235, 200, 25),
    "purple": (145, 55, 190),
    "orange": (245, 125, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
# Radii in table units (the table is the unit square); chosen so shapes stay legible at 64x64.
SIZES: dict[str, float] = {"small": 0.075, "large": 0.105}
REGIONS: tuple[str, ...] = ("left", "right", "top", "bottom")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")


@dataclass(frozen=True)
class ConceptConfig:
    """Concepts that never name a target in robot demonstrations but do appear in VLM data."""

    heldout_colours: list[str] = field(default_factory=lambda: ["purple"])  # colour names from COLOURS
    heldout_shapes: list[str] = field(default_factory=lambda: ["star"])  # shape names from SHAPES

    def __post_init__(self) -> None:
        for name, known, values in (
            ("heldout_colours", COLOURS, self.heldout_colours),
            ("heldout_shapes", SHAPES, self.heldout_shapes),
        ):
            for v in values:
                if v not in known:
                    raise FieldValueError(name, v, f"names from {list(known)}")
        if len(self.heldout_colours) >= len(COLOURS) or len(self.heldout_shapes) >= len(SHAPES):
            raise FieldValueError(
                "heldout_colours/heldout_shapes", None, "at least one seen colour and shape"
            )

    def is_heldout(self, colour: str, shape: str) -> bool:
        return colour in self.heldout_colours or shape in self.heldout_shapes

    @property
    def seen_colours(self) -> list[str]:
        return [c for c in COLOURS if c not in self.heldout_colours]

    @property
    def seen_shapes(self) -> list[str]:
        return [s for s in SHAPES if s not in self.heldout_shapes]
