"""Referring expressions, instruction templates and the closed vocabulary they draw from."""

from __future__ import annotations

import numpy as np

from kinsul.world.concepts import COLOURS, REGIONS, SHAPES, SIZES
from kinsul.world.scene import Scene

# The kinds of question the VLM data asks (kinsul.data.vlm poses them; pretraining can weigh them).
QTYPES = ("caption", "colour", "shape", "count", "relation", "side", "loc")
RELATION_MARGIN = 0.08  # a relation is stated only when the related object is clearly on that side

TEMPLATES: dict[str, tuple[str, ...]] = {
    "reach": ("reach the {t}", "move to the {t}", "go to the {t}", "touch the {t}"),
    "push": ("push the {t} to the {r}", "slide the {t} to the {r}", "shove the {t} to the {r}"),
    "pick_place": ("put the {t} on the {d}", "place the {t} on top of the {d}", "stack the {t} on the {d}"),
}

# Every word an instruction, caption, question or answer can use; the text tokenizer is built from it.
WORDS: tuple[str, ...] = tuple(
    sorted(
        set(COLOURS)
        | set(SHAPES)
        | set(SIZES)
        | set(REGIONS)
        | {w for ts in TEMPLATES.values() for t in ts for w in t.split() if not w.startswith("{")}
        | set("the object left of right above below a an and is are there".split())
        | set("what which how many where side on colour shape objects caption".split())
        | {str(i) for i in range(10)}
    )
)


def attribute_expr(scene: Scene, i: int, rng: np.random.Generator, size_prob: float = 0.3) -> str:
    """'purple star' (colour and shape are unique in a scene); sometimes with its size word."""
    o = scene.objects[i]
    return f"{o.size} {o.name}" if rng.random() < size_prob else o.name


def relation_holds(scene: Scene, i: int, ref: int, relation: str) -> bool:
    d = scene.objects[i].pos - scene.objects[ref].pos
    return {
        "left of": d[0] < 0,
        "right of": d[0] > 0,
        "above": d[1] < 0,
        "below": d[1] > 0,
    }[relation]


def unique_relations(scene: Scene, i: int) -> list[tuple[str, int]]:
    """(relation, anchor) pairs for which object ``i`` is the only object in that relation to the anchor."""
    out = []
    axis = {"left of": 0, "right of": 0, "above": 1, "below": 1}
    for ref in range(len(scene.objects)):
        if ref == i:
            continue
        for rel, ax in axis.items():
            holders = [
                j for j in range(len(scene.objects)) if j != ref and relation_holds(scene, j, ref, rel)
            ]
            gap = abs(scene.objects[i].pos[ax] - scene.objects[ref].pos[ax])
            if holders == [i] and gap > RELATION_MARGIN:
                out.append((rel, ref))
    return out


def relational_expr(scene: Scene, rel: str, ref: int) -> str:
    return f"object {rel} the {scene.objects[ref].name}"


def loc_bin(value: float, bins: int) -> int:
    """The localisation bin of a table coordinate in [0, 1]."""
    return min(int(value * bins), bins - 1)


def loc_token(value: float, bins: int) -> str:
    return f"loc{loc_bin(value, bins):02d}"


def loc_words(bins: int) -> list[str]:
    """The localisation words of ``bins`` bins per axis (answers to 'where is ...')."""
    return [f"loc{i:02d}" for i in range(bins)]
