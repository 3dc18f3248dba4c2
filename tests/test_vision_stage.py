"""Stage 1 of VLM pretraining: labels that match the rendered pixels, gradients only where they belong, resume."""

import numpy as np
import pytest
import torch

from kinsul.config import ConfigError, load_config
from kinsul.models.build import build_vla
from kinsul.pretraining.pretrain import VLMPretrainModule, answer_loss
from kinsul.pretraining.vision_stage import SceneStream, VisionStageModule
from kinsul.runs.assembly import data_spec, make_tokenizer
from kinsul.world.concepts import COLOURS


@pytest.fixture(scope="module")
def cfg():
    return load_config("micro")


def test_labels_point_at_the_patch_that_shows_the_object(cfg):
    stream = SceneStream(cfg, patch=16, batch_size=16, seed=3)
    b = stream.batch(0)
    grid, per_patch = stream.grid, cfg.data.loc_bins // stream.grid
    colours = list(COLOURS.values())
    n = 0
    for i in range(16):
        for k in torch.nonzero(b["token"][i] >= 0).squeeze(1).tolist():
            token = int(b["token"][i, k])
            row, col = divmod(token, grid)
            # the location bins refine the patch: bin // bins-per-patch is the patch's column / row
            assert int(b["loc_x"][i, k]) // per_patch == col and int(b["loc_y"][i, k]) // per_patch == row
            patch = b["images"][i, row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16].numpy()
            colour = np.array(colours[int(b["colour"][i, k])])
            assert (np.abs(patch.astype(int) - colour).sum(-1) == 0).sum() >= 4  # the object's own pixels
            assert b["objectness"][i, token] >= 1
            n += 1
    assert n >= 16 * cfg.data.vlm_min_objects
    assert int(b["objectness"].sum()) <= n  # empty patches are labelled empty


def test_stream_is_a_function_of_seed_and_step(cfg):
    a, b = SceneStream(cfg, 16, 4, seed=0), SceneStream(cfg, 16, 4, seed=0)
    assert torch.equal(a.batch(5)["images"], b.batch(5)["images"])
    assert not torch.equal(a.batch(5)["images"], a.batch(6)["images"])


def test_stage_one_trains_the_tower_and_projector_only(cfg):
    torch.manual_seed(0)
    vla = build_vla(cfg.model, make_tokenizer(cfg), data_spec(cfg), with_expert=False)
    module = VisionStageModule(vla, cfg)
    batch = SceneStream(cfg, vla.backbone.config.vision_config.patch_size, 8, seed=0).batch(0)
    out = module.heads.losses(vla.image_tokens(batch["images"]), batch)
    out["loss"].backward()
    m = vla.backbone.model
    for name, p in [*m.vision_tower.named_parameters(), *m.multi_modal_projector.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in m.language_model.parameters())
    assert all(p.grad is None for p in vla.backbone.lm_head.parameters())


def test_stage_one_learns_objects(cfg):
    """Overfitting one batch: the object heads' loss falls (the tower can see what the labels say)."""
    torch.manual_seed(0)
    vla = build_vla(cfg.model, make_tokenizer(cfg), data_spec(cfg), with_expert=False)
    module = VisionStageModule(vla, cfg)
    batch = SceneStream(cfg, vla.backbone.config.vision_config.patch_size, 8, seed=0).batch(0)
    opt = torch.optim.AdamW(module.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = module.heads.losses(vla.image_tokens(batch["images"]), batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_stage_two_freezes_the_tower_by_default(cfg):
    vla = build_vla(cfg.model, make_tokenizer(cfg), data_spec(cfg), with_expert=False)
    module = VLMPretrainModule(vla, cfg, ["shape"])
    m = vla.backbone.model
    assert not any(p.requires_grad for p in m.vision_tower.parameters())
    assert all(p.requires_grad for p in m.language_model.parameters())
    trained = {id(p) for g in module.configure_optimizers()["optimizer"].param_groups for p in g["params"]}
    assert trained == {id(p) for p in vla.parameters() if p.requires_grad}


def test_freezing_an_untrained_tower_is_a_config_error():
    with pytest.raises(ConfigError, match="freeze_vision"):
        load_config("micro", ["pretrain.vision_steps=0"])
    assert load_config("micro", ["pretrain.vision_steps=0", "pretrain.freeze_vision=false"])


def test_answer_loss_weighs_every_answer_equally():
    """Two answers, one of 1 token and one of 4; only the short one is wrong: the loss is half its error."""
    V = 5
    suffix = torch.tensor([[0, 1, 4, 4, 4, 4], [0, 1, 1, 1, 1, 4]])
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    logits = torch.full((2, 6, V), -30.0)
    logits[0, 0, 2] = 30.0  # wrong
    for j in range(5):
        logits[1, j, suffix[1, j + 1]] = 30.0  # right
    wrong = torch.nn.functional.cross_entropy(logits[0, :1], suffix[0, 1:2])
    torch.testing.assert_close(answer_loss(logits, suffix, mask), wrong / 2)


@pytest.mark.parametrize("bins", [0, 2])
def test_location_bins_set_what_the_tower_is_told_about_position(bins):
    """pretrain.location_bins: 2 teaches only left/right and top/bottom; 0 no position at all (no head, no label)."""
    cfg = load_config("micro", ["data.vlm_domain=foreign", f"pretrain.location_bins={bins}"])
    torch.manual_seed(0)
    vla = build_vla(cfg.model, make_tokenizer(cfg), data_spec(cfg), with_expert=False)
    module = VisionStageModule(vla, cfg)
    batch = SceneStream(cfg, vla.backbone.config.vision_config.patch_size, 8, seed=0).batch(0)
    out = module.heads.losses(vla.image_tokens(batch["images"]), batch)
    assert ("loss_loc_x" in out) == bool(bins) and torch.isfinite(out["loss"])
    filled = batch["token"] >= 0
    if bins:
        assert set(batch["loc_x"][filled].tolist()) <= set(range(bins))
    else:
        assert (batch["loc_x"] == -1).all()


def test_default_location_bins_keep_the_shipped_vlm_names():
    from kinsul.runs.pretrained import SHIPPED_DIR, vlm_name

    first_foreign = ["pretrain.location_bins=4", "pretrain.steps=3100"]  # the 4-bin recipe shipped first
    for cfg in (load_config(), load_config("foreign"), load_config("foreign", first_foreign)):
        assert (SHIPPED_DIR / vlm_name(cfg)).is_dir(), vlm_name(cfg)
    # naming the domain's default (4 bins in the foreign domain) is the same recipe as leaving it unset
    unset = load_config("foreign", ["pretrain.location_bins=null", "pretrain.steps=3100"])
    assert vlm_name(unset) == vlm_name(load_config("foreign", first_foreign))
    assert vlm_name(load_config("foreign")) != vlm_name(unset)
    assert vlm_name(load_config("paper_foreign")) == vlm_name(load_config("foreign"))  # the sweep uses it
