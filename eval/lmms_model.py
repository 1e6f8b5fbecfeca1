"""lmms-eval model `vjepa2_vlm`: our VLM answering lmms-eval's video, image and text requests.

`lmms-eval --model vjepa2_vlm --model_args pretrained=DIR,num_frames=32 --tasks ...` resolves to this class
through the `lmms_eval.models` entry point (see `lmms_plugin.py`). Each request's context becomes one user
turn of the checkpoint's chat template with one `<video>` / `<image>` placeholder per visual, first and
newline-separated, as in the training conversations (`<video>\\n{prompt}`). Decoding is always greedy and
frames are sampled at fixed positions, so a run is reproducible; `run_settings` holds what a run used.

A visual that cannot be read (missing file, corrupt video) is logged with its task, document and path, its
request is answered with "" (or log-likelihood -inf), i.e. scored wrong, and the run goes on; only when
every visual of a call is unreadable (a wrong data directory) does the call raise, naming the first file.
"""

from __future__ import annotations

import difflib
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lmms_eval import utils as lmms_utils
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from loguru import logger
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from vjepa_vlm.data.video_io import SAMPLING_MODES, VideoDecodeError
from vjepa_vlm.eval.option_scoring import continuation_log_likelihoods
from vjepa_vlm.modeling_vjepa2_vlm import VJEPA2VLMForConditionalGeneration
from vjepa_vlm.processing_vjepa2_vlm import VJEPA2VLMProcessor
from vjepa_vlm.video_processing_vjepa2_vlm import load_video_frames, sample_frames

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}
# Model args that override the checkpoint processor's saved values when given.
PROCESSOR_ARGS = ("num_frames", "frame_sampling", "target_fps", "max_image_tiles")
UNREADABLE_VISUAL_ERRORS = (VideoDecodeError, FileNotFoundError, UnidentifiedImageError, OSError)


@dataclass
class LmmsModelArgs:
    """The `--model_args` of `vjepa2_vlm` (lmms-eval's `--batch_size` / `--device` fill the same fields).

    Args:
        pretrained: checkpoint directory written by `save_pretrained` (model and processor).
        num_frames: frames per video, a multiple of the encoder's tubelet size; None keeps the checkpoint
            processor's (what the model was trained with). The paper's video-QA suite uses 32 or 128 (see
            `paper_suite.py`).
        frame_sampling: "uniform" over the whole video (Table 22) or "fps" (from the start at `target_fps`);
            None keeps the checkpoint processor's.
        target_fps: frame rate of "fps" sampling (1 fps, Table 22); None keeps the checkpoint processor's.
        max_image_tiles: most Dynamic S² tiles per image; None keeps the checkpoint processor's value.
        batch_size: requests per forward pass (a positive integer; "auto" is not supported).
        device: torch device; None picks cuda:LOCAL_RANK when CUDA is available, else cpu.
        dtype: "float32", "bfloat16", "float16" or "auto" (the checkpoint's).
        attn_implementation: "sdpa", "eager", "flash_attention_2", ... (transformers' names).
        max_new_tokens: generation budget of tasks whose `generation_kwargs` give none.
        decode_workers: threads decoding visuals while the model runs.
        decode_ahead: batches whose visuals are decoded ahead of the one being run.
    """

    pretrained: str
    num_frames: int | None = None
    frame_sampling: str | None = None
    target_fps: float | None = None
    max_image_tiles: int | None = None
    batch_size: int = 1
    device: str | None = None
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    max_new_tokens: int = 64
    decode_workers: int = 4
    decode_ahead: int = 2

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> "LmmsModelArgs":
        """Strict parsing: an unknown key is an error naming it and the closest known ones."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            hints = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
            described = ", ".join(f"{k!r}" + (f" (did you mean {hints[k][0]!r}?)" if hints[k] else "") for k in unknown)
            raise ValueError(f"vjepa2_vlm: unknown model arg {described}; known model args: {', '.join(known)}")
        if "pretrained" not in kwargs:
            raise ValueError("vjepa2_vlm: model arg 'pretrained' is required (a checkpoint directory): --model_args pretrained=DIR")
        return cls(**kwargs)

    def __post_init__(self):
        self.pretrained = str(self.pretrained)
        for required in ("config.json", "processor_config.json"):
            if not Path(self.pretrained, required).is_file():
                raise FileNotFoundError(
                    f"vjepa2_vlm: pretrained={self.pretrained!r} is not a checkpoint directory (no {required}; expected "
                    "the model's and the processor's save_pretrained output in one directory)"
                )
        for name in ("num_frames", "batch_size", "max_new_tokens", "decode_workers", "max_image_tiles", "decode_ahead"):
            value = getattr(self, name)
            if value is None and name in ("num_frames", "max_image_tiles"):
                continue
            if not str(value).isdigit() or int(value) < (0 if name == "decode_ahead" else 1):
                raise ValueError(f"vjepa2_vlm: model arg {name} must be a positive integer, got {value!r}")
            setattr(self, name, int(value))
        if self.frame_sampling is not None and self.frame_sampling not in SAMPLING_MODES:
            raise ValueError(f"vjepa2_vlm: model arg frame_sampling must be one of {SAMPLING_MODES}, got {self.frame_sampling!r}")
        if self.target_fps is not None:
            self.target_fps = float(self.target_fps)
            if not self.target_fps > 0:
                raise ValueError(f"vjepa2_vlm: model arg target_fps must be > 0, got {self.target_fps}")
        if self.dtype not in DTYPES:
            raise ValueError(f"vjepa2_vlm: model arg dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")


@dataclass
class LoadedVisuals:
    """Decoded visuals of one request.

    Args:
        kinds: "video" / "image" per visual, in the request's order (the order of the placeholders).
        videos: uint8 (T, H, W, 3) frames of each video, already sampled to `num_frames`.
        images: RGB PIL images.
        error: why a visual could not be read (the request is then scored as wrong); None when all were read.
    """

    kinds: list[str]
    videos: list[np.ndarray]
    images: list[Image.Image]
    error: str | None = None


def _visual_kind(item: Any) -> str:
    if isinstance(item, (str, os.PathLike)):
        return "image" if Path(item).suffix.lower() in IMAGE_SUFFIXES else "video"
    if isinstance(item, Image.Image):
        return "image"
    if isinstance(item, (np.ndarray, torch.Tensor)) and item.ndim in (3, 4):
        return "video" if item.ndim == 4 else "image"
    raise TypeError(
        f"vjepa2_vlm: unsupported visual of type {type(item).__name__}; expected a video/image path, a PIL image, "
        "or uint8 frames (T, H, W, 3) / an image (H, W, 3)"
    )


def _describe_visual(item: Any) -> str:
    """How a visual is named in reports: its path, or its type for in-memory visuals."""
    return str(item) if isinstance(item, (str, os.PathLike)) else type(item).__name__


def request_fields(request: Instance) -> tuple:
    """`(context, target or generation kwargs, doc_to_visual, doc_id, task, split)` of a simple-model request.

    Unconditional log-likelihood requests (`acc_mutual_info`) carry only `(context, continuation)`.
    """
    args = request.args
    return tuple(args[:6]) if len(args) >= 6 else (*args[:2], None, None, None, None)


def truncate_at_stop(text: str, stops: Iterable[str]) -> str:
    """Cut `text` before the earliest stop sequence (lmms-eval's `until`)."""
    cut = min((text.find(s) for s in stops if s and s in text), default=len(text))
    return text[:cut]


def prefetched(batches: list[list[Any]], load: Callable[[Any], Any], workers: int, ahead: int) -> Iterator[tuple[list, list]]:
    """Yield `(batch, [load(item) ...])` while the items of the next `ahead` batches load in `workers` threads."""
    pending: deque = deque()
    remaining = iter(batches)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vjepa2-vlm-decode") as pool:

        def submit_next() -> None:
            batch = next(remaining, None)
            if batch is not None:
                pending.append((batch, [pool.submit(load, item) for item in batch]))

        for _ in range(ahead + 1):
            submit_next()
        while pending:
            batch, futures = pending.popleft()
            submit_next()
            yield batch, [future.result() for future in futures]


def _same_prompt_key(request: Instance) -> tuple:
    context, _, _, doc_id, task, split = request_fields(request)
    return context, doc_id, task, split


class VJEPA2VLMLmms(lmms):
    """lmms-eval model for `VJEPA2VLMForConditionalGeneration` checkpoints; keyword args are `LmmsModelArgs`."""

    is_simple = True

    def __init__(self, **model_args):
        super().__init__()
        self.args = LmmsModelArgs.from_kwargs(model_args)
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self._rank, self._world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        default_device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
        self._device = torch.device(self.args.device or default_device)
        self.model = VJEPA2VLMForConditionalGeneration.from_pretrained(
            self.args.pretrained, dtype=DTYPES[self.args.dtype], attn_implementation=self.args.attn_implementation
        ).to(self._device).eval()
        overrides = {name: getattr(self.args, name) for name in PROCESSOR_ARGS if getattr(self.args, name) is not None}
        self.processor = VJEPA2VLMProcessor.from_pretrained(self.args.pretrained, **overrides)
        self.tokenizer = self.processor.tokenizer
        self.missing_visuals: list[str] = []
        self._warned_sampling = False
        logger.info(f"vjepa2_vlm run settings: {self.run_settings}")

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "VJEPA2VLMLmms":
        """`--model_args` win over lmms-eval's `--batch_size` / `--device` (whose CLI defaults are always sent)."""
        cli = {k: v for k, v in (additional_config or {}).items() if v is not None}
        return cls(**{**cli, **lmms_utils.simple_parse_args_string(arg_string)})

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def batch_size(self) -> int:
        return self.args.batch_size

    @property
    def run_settings(self) -> dict:
        """Frame sampling, prompt and generation settings of this run (what makes its scores reproducible)."""
        return {
            "model": asdict(self.args) | {"pretrained": str(Path(self.args.pretrained).resolve())},
            "frames": {
                "num_frames": self.processor.num_frames,
                "sampling": self.processor.frame_sampling,
                "target_fps": self.processor.target_fps if self.processor.frame_sampling == "fps" else None,
                "crop_size": self.processor.crop_size,
                "max_image_tiles": self.processor.max_image_tiles,
            },
            "prompt": {
                "format": "chat template, one user turn: one placeholder per visual, each followed by a newline, then the task context",
                "chat_template": self.processor.chat_template,
                "placeholders": {"video": self.processor.video_token, "image": self.processor.image_token},
            },
            "generation": {
                "decoding": "greedy (do_sample=False, num_beams=1); task sampling settings are ignored",
                "default_max_new_tokens": self.args.max_new_tokens,
                "stop": "task `until` strings and the tokenizer's eos token",
            },
        }

    def _load_visuals(self, request: Instance) -> LoadedVisuals:
        _, _, doc_to_visual, doc_id, task, split = request_fields(request)
        visuals = [] if doc_to_visual is None else doc_to_visual(self.task_dict[task][split][doc_id]) or []
        loaded = LoadedVisuals(kinds=[], videos=[], images=[])
        for item in visuals:
            kind = _visual_kind(item)
            try:
                if kind == "video":
                    loaded.videos.append(self._video_frames(item))
                else:
                    loaded.images.append(self._image(item))
            except UNREADABLE_VISUAL_ERRORS as error:
                loaded.error = f"{task} doc {doc_id}: cannot read {_describe_visual(item)} ({type(error).__name__}: {error})"
                return loaded
            loaded.kinds.append(kind)
        return loaded

    def _video_frames(self, item) -> np.ndarray:
        if isinstance(item, (str, os.PathLike)):
            return load_video_frames(item, self.processor.num_frames, self.processor.frame_sampling, self.processor.target_fps)
        return sample_frames(np.asarray(item), self.processor.num_frames)

    @staticmethod
    def _image(item) -> Image.Image:
        if isinstance(item, (str, os.PathLike)):
            with Image.open(item) as image:
                return image.convert("RGB")
        if isinstance(item, Image.Image):
            return item.convert("RGB")
        return Image.fromarray(np.asarray(item, dtype=np.uint8))

    def _prompt(self, context: str, kinds: list[str]) -> str:
        tokens = {"video": self.processor.video_token, "image": self.processor.image_token}
        for token in tokens.values():
            context = context.replace(token, "")
        content = "".join(f"{tokens[kind]}\n" for kind in kinds) + context.strip()
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], chat_template=self.processor.chat_template, tokenize=False, add_generation_prompt=True
        )

    def _model_inputs(self, prompts: list[str], visuals: list[LoadedVisuals], padding_side: str = "left"):
        videos = [v for loaded in visuals for v in loaded.videos]
        images = [i for loaded in visuals for i in loaded.images]
        inputs = self.processor(text=prompts, images=images or None, videos=videos or None, padding_side=padding_side)
        inputs = inputs.to(self._device)
        for key in ("pixel_values_images", "pixel_values_videos"):
            if key in inputs:
                inputs[key] = inputs[key].to(self.model.dtype)
        return inputs

    def _report_unreadable(self, failures: list[str], total: int, call: str) -> None:
        if not failures:
            return
        self.missing_visuals.extend(failures)
        for failure in failures:
            logger.warning(f"vjepa2_vlm: {failure}; scored as wrong")
        logger.warning(f"vjepa2_vlm {call}: {len(failures)} of {total} requests had an unreadable visual and were scored as wrong")
        if len(failures) == total:
            raise VideoDecodeError(
                f"vjepa2_vlm {call}: every visual is unreadable, first: {failures[0]}; check the task's data directory"
            )

    def _generation_budget(self, gen_kwargs: dict) -> int:
        if not self._warned_sampling and (gen_kwargs.get("do_sample") or (gen_kwargs.get("temperature") or 0) > 0):
            logger.warning(f"vjepa2_vlm: task asks for sampling ({gen_kwargs}); decoding stays greedy for reproducibility")
            self._warned_sampling = True
        return int(gen_kwargs.get("max_new_tokens") or self.args.max_new_tokens)

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Greedy answers; videos and images decode in threads ahead of the batch being generated."""
        answers = [""] * len(requests)
        indexed = list(enumerate(requests))
        batches = self._batches(indexed, key=lambda pair: (pair[1].args[4], repr(sorted(pair[1].args[1].items()))), limit=self.args.batch_size)
        failures = []
        loading = prefetched(batches, lambda pair: self._load_visuals(pair[1]), self.args.decode_workers, self.args.decode_ahead)
        for batch, visuals in self._progress(loading, len(requests), "generate_until", len):
            failures += [v.error for v in visuals if v.error]
            ready = [(pair, v) for pair, v in zip(batch, visuals) if v.error is None]
            if not ready:
                continue
            gen_kwargs = dict(ready[0][0][1].args[1])
            stops = gen_kwargs.get("until") or []
            stops = [stops] if isinstance(stops, str) else list(stops)
            prompts = [self._prompt(pair[1].args[0], v.kinds) for pair, v in ready]
            inputs = self._model_inputs(prompts, [v for _, v in ready])
            with torch.inference_mode():
                output = self.model.generate(
                    **inputs,
                    max_new_tokens=self._generation_budget(gen_kwargs),
                    do_sample=False,
                    num_beams=1,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                )
            texts = self.tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            for ((index, _), _), text in zip(ready, texts):
                answers[index] = truncate_at_stop(text, stops).strip()
        self._report_unreadable(failures, len(requests), "generate_until")
        return answers

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """Sum of log-probabilities of each continuation after the templated context, and whether it is greedy.

        Requests on the same document (the options of one multiple-choice question) share one decoding of
        its visuals and run as one batch of up to `batch_size` rows.
        """
        scores: list[tuple[float, bool]] = [(-math.inf, False)] * len(requests)
        groups = self._batches(list(enumerate(requests)), key=lambda pair: _same_prompt_key(pair[1]), limit=None)
        failures = []

        def load(group: list) -> LoadedVisuals:
            return self._load_visuals(group[0][1])

        loading = prefetched([[g] for g in groups], load, self.args.decode_workers, self.args.decode_ahead)
        for wrapped, (visuals,) in self._progress(loading, len(requests), "loglikelihood", lambda wrapped: len(wrapped[0])):
            group = wrapped[0]
            if visuals.error:
                failures += [visuals.error] * len(group)
                continue
            for (index, _), score in zip(group, self._score_continuations(group, visuals)):
                scores[index] = score
        self._report_unreadable(failures, len(requests), "loglikelihood")
        return scores

    def _score_continuations(self, group: list, visuals: LoadedVisuals) -> list[tuple[float, bool]]:
        context, _, _, doc_id, task, split = request_fields(group[0][1])
        texts = []
        for _, req in group:
            target = request_fields(req)[1]
            texts.append(str(target(self.task_dict[task][split][doc_id]) if callable(target) else target))
        try:
            scored = continuation_log_likelihoods(
                self.model, self.processor, self._prompt(context, visuals.kinds), texts,
                videos=visuals.videos, images=visuals.images, batch_size=self.args.batch_size,
            )
        except ValueError as error:
            raise ValueError(f"vjepa2_vlm loglikelihood: {task} doc {doc_id}: {error}") from error
        return list(zip(scored.log_likelihoods.tolist(), scored.greedy.tolist()))

    def _progress(self, batches: Iterator[tuple[list, list]], total: int, call: str, size: Callable[[list], int]) -> Iterator[tuple[list, list]]:
        """Yield `batches` while a progress bar (rank 0) counts the `size(batch)` requests of each one done."""
        with tqdm(total=total, desc=f"vjepa2_vlm {call}", unit="request", disable=self._rank != 0) as bar:
            for batch, loaded in batches:
                yield batch, loaded
                bar.update(size(batch))

    def _batches(self, indexed: list, key: Callable, limit: int | None) -> list[list]:
        """Consecutive runs of requests sharing `key`, at most `limit` long (unbounded when None)."""
        batches: list[list] = []
        for pair in indexed:
            if batches and key(batches[-1][-1]) == key(pair) and (limit is None or len(batches[-1]) < limit):
                batches[-1].append(pair)
            else:
                batches.append([pair])
        return batches

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError(
            "vjepa2_vlm does not implement generate_until_multi_round (multi-round tasks); run single-round "
            "generate_until or multiple-choice tasks"
        )
