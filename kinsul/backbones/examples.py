"""Example checkpoints written by plain transformers, for trying "bring your own VLM" without a download and for
the tests: a random-init PaliGemma or Idefics3 (SmolVLM architecture) saved with its own tokenizer and processor,
a VQA `datasets` folder, and a VLM pretrained on it by transformers' own forward and loss (no kinsul code).

Nothing here is used by training or evaluation: kinsul reads these folders as it reads any user's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40),
           "purple": (140, 50, 170), "orange": (240, 140, 30)}  # fmt: skip
SIDES = ("left", "right")
WORDS = ["what", "colour", "is", "the", "shape", "which", "side", "on", *COLOURS, *SIDES]
# the example checkpoints' text vocabulary leaves this many unused rows at its end, as real checkpoints do (PaliGemma's
# <seg> tokens): FAST action tokens map onto them
SPARE_ROWS = 256
DIMS = {
    "paligemma": dict(v_hidden=32, v_layers=1, v_heads=2, v_mlp=64, patch=16, t_hidden=32, t_layers=2, t_heads=2,
                      t_kv=1, head_dim=16, t_mlp=64),
    "idefics3": dict(v_hidden=32, v_layers=1, v_heads=2, v_mlp=64, patch=8, t_hidden=32, t_layers=2, t_heads=2,
                     t_kv=1, head_dim=16, t_mlp=64),
}  # fmt: skip


def word_tokenizer(specials: list[str]):
    """A word-level fast tokenizer (``tokenizers``), wrapped as transformers saves any other."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "\n", *WORDS])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    # words and line breaks are tokens; spaces separate them
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"\n|[^\s]+"), behavior="removed", invert=True)
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                  unk_token="<unk>")  # fmt: skip
    tok.add_special_tokens({"additional_special_tokens": specials})
    return tok


def make_processor(family: str, image_size: int):
    if family == "paligemma":
        from transformers import PaliGemmaProcessor, SiglipImageProcessor

        ip = SiglipImageProcessor(size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3,
                                  image_std=[0.5] * 3)  # fmt: skip
        ip.image_seq_length = (image_size // DIMS[family]["patch"]) ** 2
        return PaliGemmaProcessor(image_processor=ip, tokenizer=word_tokenizer(["<image>"]))
    if family == "idefics3":
        from transformers import Idefics3ImageProcessor, Idefics3Processor

        ip = Idefics3ImageProcessor(do_image_splitting=False, size={"longest_edge": image_size},
                                    max_image_size={"longest_edge": image_size}, image_mean=[0.5] * 3,
                                    image_std=[0.5] * 3)  # fmt: skip
        tok = word_tokenizer(["<fake_token_around_image>", "<global-img>", "<image>", "<end_of_utterance>", "User:",
                              "Assistant:"])  # fmt: skip
        n = (image_size // DIMS[family]["patch"] // 2) ** 2  # pixel shuffle, scale factor 2
        return Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=n)
    raise ValueError(f"family '{family}': expected 'paligemma' or 'idefics3'")


def make_model(family: str, processor, image_size: int, seed: int = 0):
    from kinsul.backbones import FAMILIES

    torch.manual_seed(seed)
    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids(processor.image_token)
    model = FAMILIES[family].build(DIMS[family], len(tok) + SPARE_ROWS, image_size, image_id)
    cfg = model.config.text_config
    cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id = (
        tok.pad_token_id,
        tok.bos_token_id,
        tok.eos_token_id,
    )
    return model


def write_vlm(
    dest: str | Path, family: str, image_size: int = 64, seed: int = 0, with_tokenizer: bool = True
):
    """A random-init ``family`` model + its tokenizer and processor, by save_pretrained only."""
    dest = Path(dest)
    processor = make_processor(family, image_size)
    model = make_model(family, processor, image_size, seed)
    model.save_pretrained(dest)
    if with_tokenizer:
        processor.save_pretrained(dest)
    return dest


def scene(rng: np.random.Generator, image_size: int) -> tuple[np.ndarray, str, str]:
    """A coloured square on a noisy grey background at a random place: its colour and its side."""
    img = rng.integers(90, 140, (image_size, image_size, 3), dtype=np.uint8)
    s = image_size // 4
    colour = str(rng.choice(list(COLOURS)))
    x, y = int(rng.integers(0, image_size - s)), int(rng.integers(0, image_size - s))
    img[y : y + s, x : x + s] = COLOURS[colour]
    return img, colour, "left" if x + s / 2 < image_size / 2 else "right"


def write_vqa(dest: str | Path, n_train: int = 512, n_test: int = 96, image_size: int = 64, seed: int = 0):
    """A VQA `datasets` folder (train / test; image, question, answer, qtype): colour and side questions."""
    from datasets import Dataset, DatasetDict, Features, Value
    from datasets import Image as ImageFeature
    from PIL import Image

    rng = np.random.default_rng(seed)
    features = Features({"image": ImageFeature(), "question": Value("string"), "answer": Value("string"),
                         "qtype": Value("string")})  # fmt: skip

    def rows(n: int) -> dict:
        out = {k: [] for k in features}
        for i in range(n):
            img, colour, side = scene(rng, image_size)
            qtype = ("colour", "side")[i % 2]
            out["image"].append(Image.fromarray(img))
            out["question"].append(
                "what colour is the shape" if qtype == "colour" else "which side is the shape on"
            )
            out["answer"].append(colour if qtype == "colour" else side)
            out["qtype"].append(qtype)
        return out

    DatasetDict({"train": Dataset.from_dict(rows(n_train), features=features),
                 "test": Dataset.from_dict(rows(n_test), features=features)}).save_to_disk(str(dest))  # fmt: skip
    return Path(dest)


def hf_inputs(processor, family: str, images, questions, answers=None):
    """The processor's own encoding: PaliGemma with ``suffix=`` (labels built by the processor), Idefics3 with
    its chat-style user/assistant turn."""
    if family == "paligemma":
        return processor(text=["<image>" + q for q in questions], images=list(images), suffix=answers,
                         return_tensors="pt", padding="longest")  # fmt: skip
    eou = processor.end_of_utterance_token
    texts = [f"User:<image>{q}{eou}\nAssistant:" + ("" if answers is None else f" {a}{eou}")
             for q, a in zip(questions, answers or [None] * len(questions), strict=True)]  # fmt: skip
    enc = processor(text=texts, images=[[im] for im in images], return_tensors="pt", padding="longest")
    if answers is not None:
        labels = enc["input_ids"].clone()
        labels[enc["attention_mask"] == 0] = -100
        # learn the answer only: mask everything up to and including "Assistant:"
        start = processor.tokenizer.convert_tokens_to_ids("Assistant:")
        for row in labels:
            row[: int((row == start).nonzero()[-1]) + 1] = -100
        enc["labels"] = labels
    return enc


def pretrain(model_dir: str | Path, vqa_dir: str | Path, steps: int = 200, lr: float = 3e-3, batch: int = 32,
             seed: int = 0) -> None:  # fmt: skip
    """Pretrain the folder's VLM on the VQA folder's train split with transformers' own forward and loss."""
    from datasets import load_from_disk
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(model_dir, local_files_only=True)
    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    family = model.config.model_type
    train = load_from_disk(str(vqa_dir))["train"]
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(train), (batch,), generator=g).tolist()
        rows = train.select(idx)
        enc = hf_inputs(processor, family, list(rows["image"]), list(rows["question"]), list(rows["answer"]))
        loss = model(**enc).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(model_dir)


@torch.no_grad()
def transformers_accuracy(model_dir: str | Path, vqa_dir: str | Path, split: str = "test") -> dict:
    """Exact-match accuracy by ``generate`` (greedy) and the processor's decoding, one sample at a time (no
    padding question): the reference kinsul's probe must equal."""
    from datasets import load_from_disk
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(model_dir, local_files_only=True).eval()
    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    family = model.config.model_type
    data = load_from_disk(str(vqa_dir))[split]
    eos = processor.end_of_utterance_token if family == "idefics3" else processor.tokenizer.eos_token
    eos_id = processor.tokenizer.convert_tokens_to_ids(eos)
    correct: list[bool] = []
    answers: list[str] = []
    for row in data:
        enc = hf_inputs(processor, family, [row["image"]], [row["question"]])
        out = model.generate(**enc, max_new_tokens=6, do_sample=False, eos_token_id=eos_id,
                             pad_token_id=processor.tokenizer.pad_token_id)  # fmt: skip
        text = processor.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        answers.append(text)
        correct.append(text == row["answer"])
    return {"accuracy": float(np.mean(correct)), "answers": answers}


def write_example(dest: str | Path, family: str, pretrain_steps: int = 0, image_size: int = 64) -> dict:
    """``dest/model`` (a checkpoint folder) and ``dest/vqa`` (a VQA datasets folder); optionally pretrained by
    transformers. Returns the paths and, when pretrained, transformers' own probe accuracy."""
    dest = Path(dest)
    model_dir = write_vlm(dest / "model", family, image_size)
    vqa_dir = write_vqa(dest / "vqa", image_size=image_size)
    info = {"model": str(model_dir), "vqa": str(vqa_dir), "family": family}
    if pretrain_steps:
        pretrain(model_dir, vqa_dir, pretrain_steps)
        info["transformers_accuracy"] = transformers_accuracy(model_dir, vqa_dir)["accuracy"]
    (dest / "example.json").write_text(json.dumps(info, indent=1))
    return info
