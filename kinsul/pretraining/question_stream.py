"""Stage-2 questions rendered fresh for every step (`pretrain.questions=rendered`, the default).

On the stored 50,000-question split the tiny VLM overfits before it generalises: by the end of stage 2 its
training loss was 0.035 per answer while probe relation accuracy stayed below 0.9 (docs/models.md). Questions
drawn from the generator the stored split comes from (`pose_question`) never repeat, cost ~20 ms per
64-question batch to render and tokenise, and need no memory for images.
"""

from __future__ import annotations

import numpy as np
import torch

from kinsul.config.schema import KinsulConfig
from kinsul.data.streams import StepStream, step_generator, step_rng
from kinsul.data.tensors import VLMTensors, answer_tokens, grouped_batch, prompt_ids
from kinsul.data.vlm import pose_question
from kinsul.tokenizers.text import TextTokenizer
from kinsul.world.foreign import domain_qtypes, vlm_renderer
from kinsul.world.language import QTYPES

LENGTH_BUCKET = 8  # answers are grouped by length rounded up to this many tokens
MAX_DRAWS = 1000  # redraws of one question before the weights and the object cap are declared incompatible


def object_cap(cfg: KinsulConfig, step: int) -> int:
    """The most objects a scene may hold at ``step``: ``pretrain.curriculum[j]`` ends the j + 1 cap."""
    d = cfg.data
    for k, until in enumerate(cfg.pretrain.curriculum):
        if step < until:
            return min(max(k + 1, d.vlm_min_objects), d.vlm_max_objects)
    return d.vlm_max_objects


def answer_buckets(data: VLMTensors, pad_id: int) -> torch.Tensor:
    return ((data.answer_ids != pad_id).sum(1) + LENGTH_BUCKET - 1) // LENGTH_BUCKET


class QuestionStream(StepStream):
    """Endless (observation, answer ids, answer mask) batches; batch k is a pure function of (seed, k).

    The questions of ``length_groups`` consecutive batches are drawn together (type by ``qtype_weights``; a
    type that the drawn scene cannot pose is redrawn, type included) and dealt out grouped by answer length,
    as ``CurriculumBatches`` does for the stored split.
    """

    # Render in a DataLoader worker, overlapping the training step (measured ~255 vs ~285 ms a step).
    workers = 1

    def __init__(self, cfg: KinsulConfig, tok: TextTokenizer):
        self.cfg, self.tok = cfg, tok
        asked = domain_qtypes(cfg.data.vlm_domain)
        w = np.array([cfg.pretrain.qtype_weights.get(q, 1.0) if q in asked else 0.0 for q in QTYPES])
        self.p = w / w.sum()
        self.renderer = vlm_renderer(cfg.data.vlm_domain, cfg.world.image_size)
        self._group: tuple[int, VLMTensors] | None = None

    def questions(self, first: int) -> VLMTensors:
        """The group of batches that starts at step ``first``, in draw order."""
        cfg, tok, n = self.cfg, self.tok, self.cfg.pretrain.length_groups * self.cfg.pretrain.batch_size
        rng = step_rng(cfg.seed, 11, first)
        cap = object_cap(cfg, first)
        images, qs, answers, qtypes = [], [], [], []
        for _ in range(n):
            for _ in range(MAX_DRAWS):
                qtype = QTYPES[rng.choice(len(QTYPES), p=self.p)]
                posed = pose_question(rng, qtype, cap, cfg.data)
                if posed is not None:
                    break
            else:
                raise ValueError(f"pretrain.qtype_weights {cfg.pretrain.qtype_weights}: no weighted question type "
                                 f"could be posed in {MAX_DRAWS} scenes of at most {cap} objects (step {first}); "
                                 "give weight to a type a one-object scene can pose or start pretrain.curriculum "
                                 "with more objects")  # fmt: skip
            scene, question, answer = posed
            images.append(self.renderer.draw(scene, rng)[0])
            qs.append(question)
            answers.append(answer)
            qtypes.append(qtype)
        suffix = tok.batch([answer_tokens(tok, a) for a in answers]).ids
        return VLMTensors(torch.from_numpy(np.stack(images)), prompt_ids(tok, qs, cfg.model.max_text_len),
                          suffix, qtypes, answers)  # fmt: skip

    def batch_indices(self, data: VLMTensors, first: int, slot: int) -> torch.Tensor:
        G = self.cfg.pretrain.length_groups
        everything = torch.arange(len(data))
        if G == 1:
            return everything
        g = step_generator(self.cfg.seed, first)
        return grouped_batch(everything, answer_buckets(data, self.tok.pad_id), G, slot, g)

    def batch(self, step: int):
        first = step - step % self.cfg.pretrain.length_groups
        if self._group is None or self._group[0] != first:
            self._group = (first, self.questions(first))
        data = self._group[1]
        return data.batch(self.batch_indices(data, first, step - first), self.tok.pad_id)
