"""Bring your own VLM: PaliGemma and Idefics3 (SmolVLM) folders written by plain transformers, read through their
own tokenizer and processor. The contract is parametrised over every family: a new one is one adapter file and
one entry in ``kinsul.backbones.FAMILIES``."""

import numpy as np
import pytest
import torch
from datasets import load_from_disk

from kinsul.backbones import FAMILIES, BackboneError
from kinsul.backbones import examples as ex
from kinsul.backbones.codecs import ProcessorCodec
from kinsul.data.batch import Observation
from kinsul.models.backbone import folder_codec
from kinsul.models.build import DataSpec, build_vla
from kinsul.models.config import ModelConfig
from kinsul.models.masks import positions
from kinsul.models.mot import expert_forward
from kinsul.models.vla import target_logits
from kinsul.tokenizers.text import TextTokenizer

SPEC = DataSpec(image_size=64, action_dim=3, state_dim=4, horizon=10)
WORLD = TextTokenizer.for_world(16, 256)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def folder(request, tmp_path_factory):
    """A random-init checkpoint of each family with its processor, and a VQA folder: transformers files only."""
    return ex.write_example(tmp_path_factory.mktemp(request.param), request.param)


def load(model_dir, with_expert=True, **model):
    cfg = ModelConfig(size="micro", pretrained_path=str(model_dir), **model)
    codec = folder_codec(model_dir, cfg, WORLD)
    return build_vla(cfg, codec, SPEC, with_expert=with_expert).eval(), codec


def observation(codec, images, questions) -> Observation:
    text = codec.batch([codec.prompt_ids(q, 24) for q in questions])
    return Observation(torch.from_numpy(np.stack([np.array(i) for i in images])), torch.zeros(len(images), 4),
                       text.ids, text.mask)  # fmt: skip


def test_the_folder_holds_only_transformers_files(folder):
    names = {p.name for p in (ex.Path(folder["model"])).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= names
    assert not [n for n in names if "kinsul" in n]


def test_prompts_and_answers_are_the_processors_own_ids(folder):
    vla, codec = load(folder["model"])
    assert isinstance(codec, ProcessorCodec)
    rows = load_from_disk(folder["vqa"])["train"].select(range(4))
    processor = codec.processor
    for row in rows:
        enc = ex.hf_inputs(processor, folder["family"], [row["image"]], [row["question"]], [row["answer"]])
        ids = enc["input_ids"][0].tolist()
        ours = codec.prompt_ids(row["question"], 24) + codec.answer_ids(row["answer"])
        n_image = len(ids) - len(ours)  # PaliGemma: image tokens in front; Idefics3: inside the prompt
        assert ids[n_image:] == ours and set(ids[:n_image]) <= {codec.image_id}
        labels = [i for i in enc["labels"][0].tolist() if i != -100]
        assert labels == codec.answer_ids(row["answer"])
        # the processor's pixels, from the uint8 image
        pixels = vla.pixels(torch.from_numpy(np.array(row["image"]))[None])
        torch.testing.assert_close(pixels, enc["pixel_values"].view_as(pixels), atol=1e-5, rtol=0)


def test_answer_logits_equal_transformers_own_forward(folder):
    """kinsul's layer loop (family mask, layout, first target from the prefix's last token) = the HF model."""
    vla, codec = load(folder["model"], with_expert=False)
    rows = load_from_disk(folder["vqa"])["train"].select(range(3))
    for row in rows:
        enc = ex.hf_inputs(
            codec.processor, folder["family"], [row["image"]], [row["question"]], [row["answer"]]
        )
        obs = observation(codec, [row["image"]], [row["question"]])
        suffix = torch.tensor([codec.answer_ids(row["answer"])])
        with torch.no_grad():
            out = vla(obs, suffix, torch.ones_like(suffix, dtype=torch.bool))
            ours = target_logits(out.suffix_logits, out.first_logits)
            ref = vla.backbone(**enc).logits
        S = suffix.shape[1]
        torch.testing.assert_close(ours, ref[:, -S - 1 : -1], atol=1e-5, rtol=1e-5)


def test_joint_pass_equals_cached_two_pass(folder):
    vla, codec = load(folder["model"])
    rows = load_from_disk(folder["vqa"])["train"].select(range(3))
    obs = observation(codec, rows["image"], ["what colour is the shape", "which side", "what"])
    x_t, t = torch.randn(3, 10, 3), torch.rand(3)
    with torch.no_grad():
        joint = vla(obs, x_t=x_t, t=t).velocity
        cache, pv = vla.encode_prefix(obs)
        e = vla.expert
        xe = e.embed(x_t, t, obs.state)
        _, _, pos_e = positions(pv, None, e.n_tokens)
        cached = e.head(expert_forward(e.layers, xe, e.rotary(xe, pos_e), cache,
                                       vla.mask(pv, None, e.n_tokens)[:, pv.shape[1] :]))  # fmt: skip
    torch.testing.assert_close(joint, cached, atol=1e-5, rtol=0)


def test_the_expert_follows_the_backbones_geometry_and_fast_ids_sit_at_the_vocabularys_end(folder):
    vla, codec = load(folder["model"])
    text, expert = vla.adapter.text_config, vla.expert.config
    for key in ("num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim"):
        assert getattr(expert, key) == getattr(text, key)
    assert codec.action_offset + codec.n_action_tokens == vla.adapter.vocab_size
    parts = vla.adapter.parts()
    owned = [id(p) for ps in parts.values() for p in ps]
    assert len(owned) == len(set(owned)) == len(list(vla.backbone.parameters()))


def test_fast_tokens_as_added_rows_grow_the_vocabulary(folder):
    vla, codec = load(folder["model"], fast_tokens="added")
    assert codec.action_offset == len(codec.processor.tokenizer) + ex.SPARE_ROWS
    assert vla.adapter.vocab_size == codec.action_offset + codec.n_action_tokens
    fast = codec.fast_suffix([0, 5, 255], 40)
    assert fast[-1] == codec.eos_id and fast[0] == codec.action_offset


def test_a_bare_folder_falls_back_to_the_world_tokenizer_or_says_what_to_set(tmp_path):
    # a model saved without a tokenizer, its text vocabulary (300) too small for the world's words + 256 FAST ids
    FAMILIES["paligemma"].build(ex.DIMS["paligemma"], 300, 64, WORLD.image_id).save_pretrained(
        tmp_path / "pg"
    )
    with pytest.raises(BackboneError, match=r"set model.fast_vocab_size <= \d+") as err:
        load(tmp_path / "pg")
    assert "\n" not in str(err.value)
    n = int(str(err.value).rsplit("<= ", 1)[1].split()[0])
    assert n == 300 - WORLD.action_offset
    # what the line says to set is enough: the world tokenizer then fits and the model builds
    cfg = ModelConfig(size="micro", pretrained_path=str(tmp_path / "pg"), fast_vocab_size=n)
    codec = folder_codec(tmp_path / "pg", cfg, TextTokenizer.for_world(16, n))
    assert isinstance(codec, TextTokenizer) and codec.vocab_size == 300
    build_vla(cfg, codec, SPEC)
    ex.write_vlm(tmp_path / "id3", "idefics3", with_tokenizer=False)
    with pytest.raises(BackboneError, match="idefics3 model without a tokenizer"):
        load(tmp_path / "id3")


def test_an_unknown_family_is_named(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llava"}')
    with pytest.raises(BackboneError, match="'llava' model; kinsul has adapters for"):
        load(tmp_path)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_probe_of_an_externally_pretrained_vlm_equals_transformers_own_accuracy(family, tmp_path):
    """The figure that proves the mapping: a VLM pretrained by transformers alone (its forward, its loss, its
    processor's labels) is probed by kinsul before any training, and kinsul's accuracy is transformers' own
    (generate, greedy, the processor's decoding), sample by sample."""
    from kinsul.config import load_config
    from kinsul.data.tensors import VLMTensors
    from kinsul.data.vqa import vqa_splits
    from kinsul.evaluation.probe import ProbeBatches, exact_match, probe_accuracy

    info = ex.write_example(tmp_path, family, pretrain_steps=120)
    reference = ex.transformers_accuracy(info["model"], info["vqa"])
    cfg = load_config("micro", [f"model.pretrained_path={info['model']}", f"data.vqa_path={info['vqa']}",
                                f"data.root={tmp_path / 'data'}", "data.vqa_type=qtype"])  # fmt: skip
    vla, codec = load(info["model"], with_expert=False)
    probe = VLMTensors.from_dataset(vqa_splits(cfg)["probe"], codec, cfg.model.max_text_len)
    ours = probe_accuracy(vla, probe)
    assert 0.0 < reference["accuracy"] < 1.0  # a partly trained VLM: agreement on both kinds of answer
    assert ours["mean"] == pytest.approx(sum(ours[q] for q in ("colour", "side")) / 2)
    correct = torch.cat([exact_match(vla, o, s, m) for o, s, m, _ in ProbeBatches(probe, codec.pad_id, 32)])
    assert correct.tolist() == [a == b for a, b in zip(reference["answers"], probe.answers, strict=True)]
    assert float(correct.double().mean()) == pytest.approx(reference["accuracy"], abs=1e-12)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_user_folder_trains_every_kind_of_strategy_and_is_evaluated_with_retention_on_its_vqa(
    family, micro_root, tmp_path, capsys
):
    """naive, stop_grad, ki (FAST + the folder's VQA co-training) and pi0_fast train 2 steps from a folder of each
    family, through the CLI a user runs, and `kinsul eval` reports retention on the folder's probe split."""
    from conftest import micro_train_config

    from kinsul.cli import main

    info = ex.write_example(tmp_path / "ckpt", family)
    for strategy in ("naive", "stop_grad", "ki", "pi0_fast"):
        cfg = micro_train_config(micro_root, f"strategy.name={strategy}", f"model.pretrained_path={info['model']}",
                                 f"data.vqa_path={info['vqa']}", "data.vqa_type=qtype", "trainer.max_steps=2",
                                 f"trainer.run_name={family}-{strategy}", "eval.episodes=1", "eval.videos=0")  # fmt: skip
        from kinsul.training.train import train

        run_dir = train(cfg, progress=False)
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()
        assert main(["eval", str(run_dir), "eval.episodes=1"]) == 0
        table = capsys.readouterr().out
        # the folder's question types, probed before and after training
        assert "eval/probe_acc_colour" in table and "eval/retention" in table, table


def test_gradient_checkpointing_gives_the_same_gradients(folder):
    vla, codec = load(folder["model"])
    vla.train()
    rows = load_from_disk(folder["vqa"])["train"].select(range(2))
    obs = observation(codec, rows["image"], list(rows["question"]))
    suffix = torch.tensor([codec.fast_suffix([1, 2, 3], 40)] * 2)
    x_t, t = torch.randn(2, 10, 3), torch.rand(2)
    grads = []
    for checkpoint in (False, True):
        vla.zero_grad()
        vla.gradient_checkpointing = checkpoint
        torch.manual_seed(0)
        out = vla(obs, suffix, torch.ones_like(suffix, dtype=torch.bool), x_t, t)
        (out.velocity.square().mean() + out.suffix_logits.float().logsumexp(-1).mean()).backward()
        grads.append({n: p.grad.clone() for n, p in vla.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)


def test_fast_decoding_reproduces_an_overfit_chunk_from_the_prefixs_last_token(folder):
    """pi0-FAST through a processor's layout: no <sep>, the first FAST token comes from the prefix's last token."""
    from kinsul.models.vla import token_loss

    vla, codec = load(folder["model"], with_expert=False)
    rows = load_from_disk(folder["vqa"])["train"].select(range(1))
    obs = observation(codec, rows["image"], list(rows["question"]))
    fast_ids = [5, 17, 3, 200, 42, 9]
    suffix = torch.tensor([codec.fast_suffix(fast_ids, 40)])
    mask = torch.ones_like(suffix, dtype=torch.bool)
    vla.train()
    opt = torch.optim.Adam(vla.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(80):
        out = vla(obs, suffix, mask)
        loss = token_loss(out.suffix_logits, suffix, mask, out.first_logits)
        opt.zero_grad()
        loss.backward()
        opt.step()
    vla.eval()
    with torch.no_grad():
        assert vla.generate_fast(obs, max_len=len(fast_ids) + 4)[0] == fast_ids
