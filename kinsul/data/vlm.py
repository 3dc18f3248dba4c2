"""VLM data from the same renderer: captions, visual questions and localisation, with exact answers."""

from __future__ import annotations

import numpy as np
from datasets import Features, Image, Value

from kinsul.data.config import DataConfig, DataSections
from kinsul.data.robot import png_bytes
from kinsul.world.concepts import COLOURS, SHAPES, ConceptConfig
from kinsul.world.foreign import domain_qtypes, vlm_renderer
from kinsul.world.language import (
    QTYPES,  # noqa: F401  (re-exported: the question types of the world domain)
    loc_token,
    unique_relations,
)
from kinsul.world.scene import Scene, sample_scene

VLM_SPLITS = ("train", "validation", "probe")
SIDE_MARGIN = 0.08  # 'which side' is asked only when the object is clearly off the centre line


def vlm_features() -> Features:
    return Features(
        {
            "image": Image(),
            "question": Value("string"),
            "answer": Value("string"),
            "qtype": Value("string"),
            "heldout": Value("bool"),  # the question or answer names a held-out concept
            "n_objects": Value("int32"),
        }
    )


def _unique(scene: Scene, i: int, attr: str) -> bool:
    value = getattr(scene.objects[i], attr)
    return sum(getattr(o, attr) == value for o in scene.objects) == 1


def ask(scene: Scene, qtype: str, rng: np.random.Generator, loc_bins: int) -> tuple[str, str] | None:
    """A (question, answer) of ``qtype`` about ``scene``; None when the scene cannot pose it unambiguously."""
    objs = scene.objects
    i = int(rng.integers(len(objs)))
    o = objs[i]
    if qtype == "caption":
        ordered = sorted(objs, key=lambda x: x.pos[0])
        return "caption", " and ".join(f"a {x.size} {x.name}" for x in ordered)
    if qtype == "colour":
        return (f"what colour is the {o.shape}", o.colour) if _unique(scene, i, "shape") else None
    if qtype == "shape":
        return (f"what shape is the {o.colour} object", o.shape) if _unique(scene, i, "colour") else None
    if qtype == "count":
        kind = rng.integers(3)
        if kind == 0:
            return "how many objects are there", str(len(objs))
        if kind == 1:
            colour = list(COLOURS)[rng.integers(len(COLOURS))]
            return f"how many {colour} objects are there", str(sum(x.colour == colour for x in objs))
        shape = SHAPES[rng.integers(len(SHAPES))]
        return f"how many {shape} objects are there", str(sum(x.shape == shape for x in objs))
    if qtype == "relation":
        relations = unique_relations(scene, i)
        if not relations:
            return None
        rel, ref = relations[rng.integers(len(relations))]
        return f"what is {rel} the {objs[ref].name}", o.name
    if qtype == "side":
        if abs(o.pos[0] - 0.5) < SIDE_MARGIN:
            return None
        return f"which side is the {o.name} on", "left" if o.pos[0] < 0.5 else "right"
    if qtype == "loc":
        return f"where is the {o.name}", f"{loc_token(o.pos[0], loc_bins)} {loc_token(o.pos[1], loc_bins)}"
    raise ValueError(f"unknown question type {qtype!r}")


def pose_question(
    rng: np.random.Generator, qtype: str, max_objects: int, d: DataConfig
) -> tuple[Scene, str, str] | None:
    """One draw: a scene of ``vlm_min_objects``..``max_objects`` objects and a ``qtype`` question about it
    (None when that scene cannot pose it unambiguously; the caller redraws)."""
    scene = sample_scene(rng, int(rng.integers(d.vlm_min_objects, max_objects + 1)))
    qa = ask(scene, qtype, rng, d.loc_bins)
    return None if qa is None else (scene, *qa)


def sample_seed(base: int, split: str, index: int) -> int:
    return int(np.random.SeedSequence([base, 100 + VLM_SPLITS.index(split), index]).generate_state(1)[0])


def mentions_heldout(text: str, concepts: ConceptConfig) -> bool:
    words = set(text.split())
    return bool(words & (set(concepts.heldout_colours) | set(concepts.heldout_shapes)))


def generate_samples(cfg: DataSections, split: str, indices: range) -> dict[str, list]:
    """Question types are balanced: sample ``k`` asks type ``k mod n`` of the domain's n types (redrawing unfit
    scenes)."""
    d = cfg.data
    renderer = vlm_renderer(d.vlm_domain, cfg.world.image_size)
    qtypes = domain_qtypes(d.vlm_domain)
    cols: dict[str, list] = {k: [] for k in vlm_features()}
    for k in indices:
        rng = np.random.default_rng(sample_seed(d.seed, split, k))
        qtype = qtypes[k % len(qtypes)]
        posed = None
        while posed is None:
            posed = pose_question(rng, qtype, d.vlm_max_objects, d)
        scene, question, answer = posed
        cols["image"].append({"bytes": png_bytes(renderer.draw(scene, rng)[0]), "path": None})
        cols["question"].append(question)
        cols["answer"].append(answer)
        cols["qtype"].append(qtype)
        cols["heldout"].append(mentions_heldout(f"{question} {answer}", cfg.concepts))
        cols["n_objects"].append(len(scene.objects))
    return cols
