import pytest
import torch

from kinsul.data.batch import Observation
from kinsul.models.backbone import BackboneError
from kinsul.models.build import DataSpec, ShapeMismatchError, build_vla, check_data_spec
from kinsul.models.config import ModelConfig
from kinsul.models.flow import euler_sample, interpolate, sample_time
from kinsul.models.masks import joint_mask, positions
from kinsul.models.mot import backbone_forward, expert_forward
from kinsul.models.vla import flow_loss, token_loss
from kinsul.tokenizers.text import TextTokenizer

SPEC = DataSpec(image_size=64, action_dim=3, state_dim=4, horizon=10)
B = 3


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.for_world(loc_bins=16, n_action_tokens=64)


@pytest.fixture
def vla(tok):
    torch.manual_seed(0)
    return build_vla(ModelConfig(size="micro"), tok, SPEC).eval()


def make_obs(
    tok, instructions=("reach the red square", "push the blue circle to the left", "go to the star")
):
    g = torch.Generator().manual_seed(1)
    enc = tok.batch([[tok.bos_id, *tok.encode(t)] for t in instructions])  # different lengths: padding
    images = torch.randint(0, 256, (len(instructions), 64, 64, 3), dtype=torch.uint8, generator=g)
    return Observation(images, torch.rand(len(instructions), 4, generator=g), enc.ids, enc.mask)


def fast_suffix(tok, n=5):
    ids = tok.batch([[tok.sep_id, *tok.action_ids(list(range(i, i + n))), tok.eos_id] for i in range(B)])
    return ids.ids, ids.mask


def test_shapes_and_dtypes(vla, tok):
    obs = make_obs(tok)
    sids, smask = fast_suffix(tok)
    out = vla(obs, sids, smask, torch.randn(B, 10, 3), torch.rand(B))
    assert out.suffix_logits.shape == (B, sids.shape[1], tok.vocab_size)
    assert out.velocity.shape == (B, 10, 3) and out.velocity.dtype == torch.float32
    assert vla.sample_actions(obs).shape == (B, 10, 3)


def test_masks_structure():
    pv = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    sv = torch.tensor([[1, 1, 0]], dtype=torch.bool)
    m = joint_mask(pv, sv, 2)[0]
    P, S = 4, 3
    assert m[:3, :3].all() and not m[:3, 3].any()  # prefix bidirectional, padding invisible
    assert not m[:P, P:].any() and not m[P : P + S, P + S :].any()  # prefix and suffix never see what follows
    assert m[P + 1, P] and not m[P, P + 1]  # suffix is causal
    assert not m[P + S :, P : P + S].any() and m[P + S :, :3].all() and m[P + S :, P + S :].all()  # expert
    pos_p, pos_s, pos_e = positions(pv, sv, 2)
    assert pos_p.tolist() == [[1, 2, 3, 3]] and pos_e.tolist() == [[4, 5]]


def test_expert_ignores_fast_tokens_and_prefix_ignores_suffix(vla, tok):
    obs = make_obs(tok)
    x_t, t = torch.randn(B, 10, 3), torch.rand(B)
    sids, smask = fast_suffix(tok)
    with torch.no_grad():
        plain = vla(obs, x_t=x_t, t=t)
        with_fast = vla(obs, sids, smask, x_t=x_t, t=t)
        other = vla(obs, sids.flip(1), smask, x_t=x_t, t=t)
    torch.testing.assert_close(plain.velocity, with_fast.velocity, atol=1e-6, rtol=0)
    torch.testing.assert_close(with_fast.velocity, other.velocity, atol=1e-6, rtol=0)


def test_prefix_does_not_depend_on_suffix(vla, tok):
    obs = make_obs(tok)
    xp, pv = vla.embed_prefix(obs)
    pos_p, _, _ = positions(pv, None, 0)
    alone, _ = backbone_forward(vla.lm.layers, xp, vla.lm.rotary_emb(xp, pos_p), joint_mask(pv, None, 0))
    sids, smask = fast_suffix(tok)
    xs = vla.lm.embed_tokens(sids)
    pos_p, pos_s, _ = positions(pv, smask, 0)
    xb = torch.cat([xp, xs], 1)
    joint, _ = backbone_forward(vla.lm.layers, xb, vla.lm.rotary_emb(xb, torch.cat([pos_p, pos_s], 1)),
                                joint_mask(pv, smask, 0))  # fmt: skip
    valid = pv[..., None]
    torch.testing.assert_close(joint[:, : xp.shape[1]] * valid, alone * valid, atol=1e-6, rtol=0)


def test_joint_pass_equals_cached_two_pass(vla, tok):
    obs = make_obs(tok)
    x_t, t = torch.randn(B, 10, 3), torch.rand(B)
    with torch.no_grad():
        joint = vla(obs, x_t=x_t, t=t).velocity
        cache, pv = vla.encode_prefix(obs)
        ex = vla.expert
        xe = ex.embed(x_t, t, obs.state)
        _, _, pos_e = positions(pv, None, ex.n_tokens)
        mask = joint_mask(pv, None, ex.n_tokens)[:, pv.shape[1] :]
        cached = ex.head(expert_forward(ex.layers, xe, ex.rotary(xe, pos_e), cache, mask))
    torch.testing.assert_close(joint, cached, atol=1e-5, rtol=0)


def test_backbone_loop_matches_transformers_paligemma(vla, tok):
    """Our layer loop over the HF modules reproduces PaliGemmaForConditionalGeneration's own forward."""
    obs = make_obs(tok, ["reach the red square"] * B)
    with torch.no_grad():
        xp, pv = vla.embed_prefix(obs)
        pos_p, _, _ = positions(pv, None, 0)
        h, _ = backbone_forward(vla.lm.layers, xp, vla.lm.rotary_emb(xp, pos_p), joint_mask(pv, None, 0))
        n_image = xp.shape[1] - obs.text_ids.shape[1]
        ids = torch.cat([torch.full((B, n_image), tok.image_id), obs.text_ids], 1)
        pixels = (obs.images.permute(0, 3, 1, 2).float() / 255 - vla.image_mean) / vla.image_std
        ref = vla.backbone(input_ids=ids, pixel_values=pixels, token_type_ids=torch.zeros_like(ids)).logits
    torch.testing.assert_close(vla.logits(h), ref, atol=1e-5, rtol=1e-5)


def test_backbone_runs_once_per_sampled_chunk(vla, tok):
    obs = make_obs(tok)
    calls = vla.backbone_calls
    for _ in range(3):
        vla.sample_actions(obs, steps=10)
    assert vla.backbone_calls - calls == 3


def test_euler_sampler_recovers_target_on_analytic_field():
    """For a single target a the exact velocity (x_t - a) / t is constant along the path: Euler is exact."""
    a = torch.tensor([[[0.3, -0.7, 0.1]]]).expand(4, 5, 3)
    noise = torch.randn(4, 5, 3)
    out = euler_sample(lambda x, t: (x - a) / t.view(-1, 1, 1), noise, steps=10)
    torch.testing.assert_close(out, a, atol=1e-5, rtol=0)
    x_t, u = interpolate(a, noise, torch.full((4,), 0.25))
    torch.testing.assert_close(x_t, 0.25 * noise + 0.75 * a)
    torch.testing.assert_close(u, noise - a)
    t = sample_time(10_000, 1.5, 1.0)
    assert t.min() >= 0.001 and t.max() <= 1.0 and t.mean() > 0.55  # Beta(1.5, 1) favours noisy times


def test_flow_loss_decreases_when_overfitting_one_batch(vla, tok):
    torch.manual_seed(0)
    obs = make_obs(tok)
    actions = torch.rand(B, 10, 3) * 2 - 1
    opt = torch.optim.Adam(vla.parameters(), lr=3e-3)
    vla.train()
    losses = []
    noise, t = torch.randn_like(actions), sample_time(B, 1.5, 1.0)  # one fixed batch, fully overfittable
    x_t, u = interpolate(actions, noise, t)
    for _ in range(60):
        loss = flow_loss(vla(obs, x_t=x_t, t=t).velocity, u)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_pi0_fast_decoding_reproduces_an_overfit_chunk(tok):
    from kinsul.tokenizers.fast import FastTokenizer

    torch.manual_seed(0)
    vla = build_vla(ModelConfig(size="micro"), tok, SPEC, with_expert=False)
    chunk = torch.linspace(-0.8, 0.8, 30).reshape(10, 3).numpy()
    fast = FastTokenizer(10, 3, scale=5, vocab_size=64).fit([chunk, chunk[::-1], -chunk])
    ids = tok.action_ids(fast.encode(chunk))
    obs = make_obs(tok, ["reach the red square"])
    suffix = tok.batch([[tok.sep_id, *ids, tok.eos_id]])
    opt = torch.optim.Adam(vla.parameters(), lr=1e-2)
    for _ in range(150):
        loss = token_loss(vla(obs, suffix.ids, suffix.mask).suffix_logits, suffix.ids, suffix.mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    vla.eval()
    with torch.no_grad():
        generated = vla.generate_fast(obs, max_len=len(ids) + 4)[0]
    assert generated == fast.encode(chunk)
    decoded, valid = fast.decode(generated)
    assert valid and abs(decoded - chunk).max() < 0.2


def test_pretrained_folder_loads_and_bad_paths_fail(tmp_path, tok):
    vla = build_vla(ModelConfig(size="micro"), tok, SPEC)
    vla.backbone.save_pretrained(tmp_path / "vlm")
    loaded = build_vla(ModelConfig(size="micro", pretrained_path=str(tmp_path / "vlm")), tok, SPEC)
    for (n, p), (_, q) in zip(
        vla.backbone.state_dict().items(), loaded.backbone.state_dict().items(), strict=True
    ):
        assert torch.equal(p, q), n
    with pytest.raises(BackboneError, match="'.*nowhere' does not exist"):
        build_vla(ModelConfig(size="micro", pretrained_path=str(tmp_path / "nowhere")), tok, SPEC)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError, match="has no config.json"):
        build_vla(ModelConfig(size="micro", pretrained_path=str(tmp_path / "empty")), tok, SPEC)
    with pytest.raises(BackboneError, match="expects 64x64 images, but world.image_size is 32"):
        build_vla(ModelConfig(size="micro", pretrained_path=str(tmp_path / "vlm")), tok,
                  DataSpec(32, 3, 4, 10))  # fmt: skip


def test_action_dimension_mismatch_is_caught_at_build_time():
    with pytest.raises(ShapeMismatchError, match="action_dim: model 3 vs the dataset 7"):
        check_data_spec(SPEC, DataSpec(64, 7, 4, 10))


def test_expert_width_is_set_apart_from_the_backbone(tok):
    wide = build_vla(ModelConfig(size="micro", expert_width=48, expert_mlp=96), tok, SPEC)
    base = build_vla(ModelConfig(size="micro"), tok, SPEC)
    assert wide.expert.time_mlp_out.out_features == 48 and base.expert.time_mlp_out.out_features == 16
    assert sum(p.numel() for p in wide.backbone.parameters()) == sum(
        p.numel() for p in base.backbone.parameters()
    )
    chunk = wide.sample_actions(make_obs(tok), steps=2)  # it still reads the backbone's keys and values
    assert chunk.shape == (3, SPEC.horizon, SPEC.action_dim) and torch.isfinite(chunk).all()


def test_patch_size_sets_the_image_token_grid_and_is_checked(tok):
    # 64-pixel images: 8 x 8 image tokens instead of the preset's 4 x 4
    fine = build_vla(ModelConfig(size="micro", patch_size=8), tok, SPEC)
    obs = make_obs(tok)
    assert fine.image_tokens(obs.images).shape[1] == 64
    assert build_vla(ModelConfig(size="micro"), tok, SPEC).image_tokens(obs.images).shape[1] == 16
    assert fine.sample_actions(obs, steps=2).shape == (3, SPEC.horizon, SPEC.action_dim)
    with pytest.raises(BackboneError, match="multiple of the patch size 24 .*model.patch_size 24"):
        build_vla(ModelConfig(size="micro", patch_size=24), tok, SPEC)
