"""The one option scorer: how likely a VLM finds each candidate answer after a prompt.

lmms-eval's log-likelihood requests (`VJEPA2VLMLmms.loglikelihood`, hence every `multiple_choice` task), the
pipeline's held-out evaluation (`scripts/vlm_pipeline.py`: option letters and option texts) and anything else
that ranks options call `continuation_log_likelihoods`, so the same prompt, visuals and options give the same
numbers everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vjepa_vlm.processing_vjepa2_vlm import pad_sequences

PIXEL_KEYS = ("pixel_values_images", "pixel_values_videos")


@dataclass(frozen=True)
class ContinuationScores:
    """Scores of the continuations of one prompt, in their order.

    Args:
        log_likelihoods: (N,) float32, the summed log-probability of each continuation's tokens after the prompt.
        greedy: (N,) bool, whether greedy decoding after the prompt produces exactly that continuation.
    """

    log_likelihoods: torch.Tensor
    greedy: torch.Tensor


@torch.inference_mode()
def continuation_log_likelihoods(
    model,
    processor,
    prompt: str,
    continuations: Sequence[str],
    *,
    videos: Sequence | None = None,
    images: Sequence | None = None,
    batch_size: int | None = None,
) -> ContinuationScores:
    """Score each continuation as the text that follows `prompt`, the prompt's visuals decoded once.

    Args:
        model: a `VJEPA2VLMForConditionalGeneration` (in eval mode), on any device and dtype.
        processor: its `VJEPA2VLMProcessor`. Continuations are tokenized without special tokens, right after the
            prompt's last token, as a training answer follows the assistant header.
        prompt: the templated text up to where the answer starts, one placeholder per visual.
        continuations: the candidate answers; each must tokenize to at least one token.
        videos / images: the prompt's visuals (paths, decoded frames or PIL images, as the processor takes them).
        batch_size: continuations per forward pass; None scores them all in one.
    """
    token_ids = []
    for text in continuations:
        ids = processor.tokenizer.encode(text, add_special_tokens=False)
        if not ids:
            raise ValueError(f"continuation {text!r} tokenizes to nothing: it cannot be scored")
        token_ids.append(torch.tensor(ids))
    inputs = processor(text=[prompt], images=images or None, videos=videos or None).to(model.device)
    pixels = {key: inputs[key].to(model.dtype) for key in PIXEL_KEYS if key in inputs}
    if all(len(ids) == 1 for ids in token_ids):
        # A causal LM's next-token distribution after the prompt scores every one-token answer (option
        # letters) at once: one row instead of one per option.
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], **pixels).logits[0, -1].float()
        targets = torch.cat(token_ids).to(logits.device)
        return ContinuationScores(logits.log_softmax(-1)[targets].cpu(), (targets == logits.argmax()).cpu())
    prompt_ids = inputs["input_ids"][0].cpu()
    start = len(prompt_ids) - 1
    scores, greedy = [], []
    step = batch_size or len(token_ids)
    for first in range(0, len(token_ids), step):
        chunk = token_ids[first : first + step]
        rows = [torch.cat([prompt_ids, ids]) for ids in chunk]
        input_ids = pad_sequences(rows, processor.tokenizer.pad_token_id).to(model.device)
        attention_mask = pad_sequences([torch.ones_like(row) for row in rows], 0).to(model.device)
        repeated = {key: value.repeat(len(rows), *[1] * (value.dim() - 1)) for key, value in pixels.items()}
        logits = model(input_ids=input_ids, attention_mask=attention_mask, **repeated).logits
        for row, ids in enumerate(chunk):
            span, ids = logits[row, start : start + len(ids)].float(), ids.to(logits.device)
            scores.append(span.log_softmax(-1).gather(-1, ids[:, None]).sum().cpu())
            greedy.append(bool((span.argmax(-1) == ids).all()))
    return ContinuationScores(torch.stack(scores), torch.tensor(greedy))
