import pytest
import torch

from kinsul.cli import main
from kinsul.config import load_config
from kinsul.models import pretrained
from kinsul.models.build import build_vla
from kinsul.training import pretrain
from kinsul.training.pretrain import VLMPretrainModule, data_spec, make_tokenizer, pretrain_vlm


def test_pretrain_saves_loadable_model_and_resolves(tmp_path, capsys):
    args = ["pretrain-vlm", "micro", f"data.root={tmp_path}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "probe accuracy" in out and "colour" in out and "loc" in out
    cfg = load_config("micro", [f"data.root={tmp_path}"])
    path = pretrained.resolve(cfg)
    meta = pretrained.read_meta(path)
    assert meta["hash"] == pretrained.vlm_hash(cfg) and set(meta["probe_accuracy"]) >= {
        "colour",
        "shape",
        "count",
    }
    assert (path / "model.safetensors").is_file()
    cfg.model.pretrained_path = str(path)
    vla = build_vla(cfg.model, make_tokenizer(cfg), data_spec(cfg))
    assert vla.backbone.config.text_config.hidden_size == 32


def _weights(cfg, path):
    cfg.model.pretrained_path = str(path)
    return build_vla(cfg.model, make_tokenizer(cfg), data_spec(cfg)).backbone.state_dict()


def test_interrupted_pretraining_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """A crash at step 10 leaves a checkpoint and no model; the rerun resumes and matches an uninterrupted run."""
    overrides = ["pretrain.steps=16", "pretrain.checkpoint_every=4"]
    ref_cfg = load_config("micro", [f"data.root={tmp_path / 'a'}", *overrides])
    reference = _weights(ref_cfg, pretrain_vlm(ref_cfg, progress=False))

    cfg = load_config("micro", [f"data.root={tmp_path / 'b'}", *overrides])  # same recipe, its own cache
    real_step = VLMPretrainModule.training_step

    def crash_at_10(self, batch, i):
        if self.global_step == 10:
            raise RuntimeError("simulated crash")
        return real_step(self, batch, i)

    monkeypatch.setattr(VLMPretrainModule, "training_step", crash_at_10)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain_vlm(cfg, progress=False)
    assert (pretrained.cache_dir(cfg) / "checkpoints" / "last.ckpt").is_file()
    assert not (pretrained.cache_dir(cfg) / "model").exists()  # nothing half-saved
    monkeypatch.setattr(VLMPretrainModule, "training_step", real_step)
    resumed = _weights(cfg, pretrain_vlm(cfg, progress=False))
    for name, value in reference.items():
        torch.testing.assert_close(resumed[name], value, atol=1e-5, rtol=1e-4, msg=name)


def test_curriculum_caps_objects():
    cfg = load_config(overrides=["pretrain.curriculum=[10,20,30]"])
    batches = pretrain.CurriculumBatches.__new__(pretrain.CurriculumBatches)
    batches.cfg = cfg
    batches.pools = {k: torch.arange(k) for k in range(1, 5)}
    assert [batches.cap(s) for s in (0, 9, 10, 25, 30, 1000)] == [1, 1, 2, 3, 4, 4]
