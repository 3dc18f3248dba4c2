"""The foreign visual domain (data.vlm_domain=foreign): the same concepts, not the robot's world; and the domain
gap measurement that compares a VLM from each domain."""

import numpy as np

from kinsul.config import load_config
from kinsul.data.store import KINDS
from kinsul.runs.pretrained import vlm_name
from kinsul.world.foreign import ForeignRenderer, domain_qtypes, vlm_renderer
from kinsul.world.render import BACKGROUND, GRIPPER_COLOUR
from kinsul.world.scene import sample_scene


def test_foreign_images_show_the_scenes_objects_without_table_or_gripper_and_are_reproducible():
    r = ForeignRenderer(64)
    for seed in range(20):
        scene = sample_scene(np.random.default_rng(seed), 3)
        a, pos = r.draw(scene, np.random.default_rng(seed))
        b, _ = r.draw(scene, np.random.default_rng(seed))
        assert np.array_equal(a, b)
        colours = {tuple(c) for c in a.reshape(-1, 3)}
        assert tuple(GRIPPER_COLOUR) not in colours
        assert (a == np.array(BACKGROUND, np.uint8)).all(-1).mean() < 0.5  # not the table
        assert len(pos) == len(scene.objects) and all(0 <= p[0] <= 1 and 0 <= p[1] <= 1 for p in pos)
        # relations survive the layout change: left of stays left of
        xs = [o.pos[0] for o in scene.objects]
        assert np.argsort(xs).tolist() == np.argsort([p[0] for p in pos]).tolist()


def test_the_foreign_domain_asks_no_table_location_and_renames_only_its_own_data_and_vlm():
    assert "loc" in domain_qtypes("world") and "loc" not in domain_qtypes("foreign")
    world, foreign = load_config(None), load_config(None, ["data.vlm_domain=foreign"])
    assert vlm_name(world) == "tiny-ae0d45a4ece6"  # the shipped world VLM keeps its name
    assert vlm_name(foreign) != vlm_name(world)
    assert KINDS["robot"].dataset_hash(world) == KINDS["robot"].dataset_hash(foreign)  # same robot data
    assert KINDS["vlm"].dataset_hash(world) != KINDS["vlm"].dataset_hash(foreign)
    assert isinstance(vlm_renderer("foreign", 64), ForeignRenderer)


def test_foreign_vlm_questions_are_generated_in_the_foreign_domain(micro_cfg):
    import dataclasses

    from kinsul.data.vlm import generate_samples

    cfg = dataclasses.replace(micro_cfg, data=dataclasses.replace(micro_cfg.data, vlm_domain="foreign"))
    cols = generate_samples(cfg, "train", range(12))
    assert set(cols["qtype"]) == set(domain_qtypes("foreign"))
    assert all("where is" not in q for q in cols["question"])


def test_the_domain_gap_reader_learns_a_location_that_is_in_the_keys_and_values():
    """The reader behind `kinsul bench domain_gap`, on synthetic K/V: where one token's value encodes the target,
    it reads it far better than chance; where nothing does, it does not."""
    import torch

    from kinsul.bench.domain_gap import fit_reader

    g = torch.Generator().manual_seed(0)
    n, h, p, d = 600, 1, 6, 8
    targets = torch.rand(n, 2, generator=g)
    k = torch.randn(n, h, p, d, generator=g)
    v = torch.randn(n, h, p, d, generator=g) * 0.1
    k[:, :, 2] += 3.0  # a token the reader can find by its key
    v[:, 0, 2, :2] = targets  # ... whose value holds the position
    valid, text = torch.ones(n, p, dtype=torch.bool), torch.zeros(n, p, dtype=torch.bool)
    text[:, -1] = True
    chance = float((targets[500:] - targets[:500].mean(0)).norm(dim=-1).mean())
    informed = fit_reader(k, v, valid, text, targets, 500, 400, 0)
    v[:, 0, 2, :2] = torch.rand(n, 2, generator=g)  # the position is gone
    blind = fit_reader(k, v, valid, text, targets, 500, 400, 0)
    assert informed < 0.4 * chance and blind > 0.8 * chance
