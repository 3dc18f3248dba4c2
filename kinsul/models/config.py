"""Model configuration: named size presets for the PaliGemma-architecture backbone and the action expert."""

from __future__ import annotations

from dataclasses import dataclass, field

from kinsul.fields import FieldValueError, check_choice, check_range

# Backbone sizes. Vision: SigLIP ViT; text: Gemma decoder. The expert copies layers/heads/kv/head_dim.
SIZE_PRESETS: dict[str, dict[str, int]] = {
    # for tests: seconds
    "micro": dict(v_hidden=32, v_layers=1, v_heads=2, v_mlp=64, patch=16,
                  t_hidden=32, t_layers=2, t_heads=2, t_kv=1, head_dim=16, t_mlp=64, e_hidden=16, e_mlp=32),
    # the embedded default: a few million parameters, trains on a CPU in minutes
    "tiny": dict(v_hidden=128, v_layers=3, v_heads=4, v_mlp=384, patch=16,
                 t_hidden=128, t_layers=4, t_heads=4, t_kv=1, head_dim=32, t_mlp=512, e_hidden=64, e_mlp=256),
    # for a GPU
    "small": dict(v_hidden=384, v_layers=6, v_heads=6, v_mlp=1536, patch=8,
                  t_hidden=512, t_layers=8, t_heads=8, t_kv=1, head_dim=64, t_mlp=2048, e_hidden=256, e_mlp=1024),
}  # fmt: skip


@dataclass(frozen=True)
class ModelConfig:
    """The VLA: backbone (VLM) + action expert + FAST action tokens."""

    size: str = "tiny"  # micro | tiny | small (see SIZE_PRESETS)
    # a local save_pretrained folder (PaliGemma or Idefics3/SmolVLM, with its tokenizer and processor, or a bare
    # PaliGemma model for kinsul's world tokenizer); None = the shipped/cached VLM of `size`
    pretrained_path: str | None = None
    family: str = (
        "paligemma"  # the architecture built from `size` when no folder is given: paligemma | idefics3
    )
    # where FAST tokens live in a processor's vocabulary: "last" (its last ids, as pi0-FAST does with PaliGemma)
    # or "added" (new rows appended to the embeddings)
    fast_tokens: str = "last"
    fast_vocab_size: int = 256  # BPE vocabulary of FAST action tokens (reserved ids in the text vocabulary)
    fast_scale: float = 10.0  # DCT coefficients are multiplied by this before rounding
    flow_steps: int = 10  # Euler steps of the flow-matching sampler
    time_beta_alpha: float = (
        1.5  # flow time t = 0.999 * s + 0.001 with s ~ Beta(alpha, beta): noisy t favoured
    )
    time_beta_beta: float = 1.0
    max_text_len: int = 24  # instruction / question tokens after truncation
    max_fast_len: int = 40  # FAST tokens per chunk after truncation (plus an end token)
    state_token: bool = True  # the robot state enters the expert as one continuous token
    # The action expert's width and MLP width (0: the size preset's). Its depth, heads and head size are the
    # backbone's: it attends to the backbone's keys/values layer by layer.
    expert_width: int = 0
    expert_mlp: int = 0
    # The vision tower's patch side in pixels (0: the size preset's). A finer grid gives the backbone more image
    # tokens to locate objects with, at a longer prefix; a pretrained VLM is specific to it.
    patch_size: int = 0
    # Pixel normalisation (an image processor's image_mean / image_std). The default centres KinsulWorld's
    # table colour on zero and amplifies what differs from it, so small objects stand out in 16-pixel patches;
    # use [0.5, 0.5, 0.5] / [0.5, 0.5, 0.5] for a real SigLIP / PaliGemma checkpoint.
    image_mean: list[float] = field(default_factory=lambda: [222 / 255, 214 / 255, 196 / 255])
    image_std: list[float] = field(default_factory=lambda: [0.1, 0.1, 0.1])

    def __post_init__(self) -> None:
        check_choice("size", self.size, SIZE_PRESETS)
        check_choice("family", self.family, ("paligemma", "idefics3"))
        check_choice("fast_tokens", self.fast_tokens, ("last", "added"))
        check_range("fast_vocab_size", self.fast_vocab_size, 16, 65_536)
        check_range("fast_scale", self.fast_scale, 0.1, 1000)
        check_range("flow_steps", self.flow_steps, 1, 1000)
        check_range("time_beta_alpha", self.time_beta_alpha, 1e-3, 100)
        check_range("time_beta_beta", self.time_beta_beta, 1e-3, 100)
        check_range("max_text_len", self.max_text_len, 4, 4096)
        check_range("max_fast_len", self.max_fast_len, 4, 4096)
        check_range("expert_width", self.expert_width, 0, 65_536)
        check_range("expert_mlp", self.expert_mlp, 0, 262_144)
        check_range("patch_size", self.patch_size, 0, 512)
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            finite = all(isinstance(v, int | float) and v == v and abs(v) != float("inf") for v in value)
            if len(value) != 3 or not finite or (name == "image_std" and not min(value) > 0):
                raise FieldValueError(name, value, "three numbers (RGB), std > 0")
        if self.pretrained_path == "":
            raise FieldValueError("pretrained_path", self.pretrained_path, "a folder path or null")

    @property
    def dims(self) -> dict[str, int]:
        d = dict(SIZE_PRESETS[self.size])
        d["e_hidden"] = self.expert_width or d["e_hidden"]
        d["e_mlp"] = self.expert_mlp or d["e_mlp"]
        d["patch"] = self.patch_size or d["patch"]
        return d
