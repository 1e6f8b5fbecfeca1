"""`VJEPA2VLMProcessor`: text, images and videos in; `input_ids` with expanded placeholders and pixels out.

The processor is the only place that knows how many LLM tokens a medium becomes; the model only counts
placeholders and checks. One tubelet (two video frames, or one image tile) becomes
`(crop_size / patch_size)^2 / pooling_ratio` tokens: 576 for ViT-g at 384 with the MLP projector, i.e. the
paper's 288 tokens per frame (section 7). Each `<image>` / `<video>` placeholder token is replaced, at the
token level, by exactly that many copies, so text around it tokenizes the same as without media.
"""

from collections.abc import Sequence

import torch
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin

from vjepa_vlm.data.label_masking import IGNORE_INDEX, tokenize_with_labels
from vjepa_vlm.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from vjepa_vlm.data.sequences import SequenceTooLongError, pad_sequences
from vjepa_vlm.data.tokenizer import IMAGE_TOKEN, VIDEO_TOKEN
from vjepa_vlm.data.video_io import load_video_frames, sample_frames
from vjepa_vlm.image_processing_vjepa2_vlm import dynamic_s2_tiles
from vjepa_vlm.video_processing_vjepa2_vlm import frames_to_pixels


class VJEPA2VLMProcessor(ProcessorMixin):
    """Tokenizer + chat template + V-JEPA 2 pixel preprocessing for `VJEPA2VLMForConditionalGeneration`.

    Args:
        tokenizer: a fast tokenizer whose vocabulary has `image_token` and `video_token` as single tokens.
        crop_size: encoder input resolution; video frames are center-cropped to it, images tiled at it.
        patch_size: encoder patch size (16).
        tubelet_size: frames per tubelet (2).
        pooling_ratio: patch tokens per LLM token, the model config's (attentive pooler, or k x k pooling after the
            MLP projector; 1: one token per patch).
        num_frames: frames sampled per video (16 in stage 2, 32 in stage 3 of the scaling setup, Table 22).
        frame_sampling: "uniform" (Table 22) or "fps".
        target_fps: frame rate for "fps" sampling (1, Table 22).
        max_image_tiles: most Dynamic S² tiles per image besides the thumbnail (16 / 32, Table 22).
        image_mean, image_std: normalization (ImageNet).
        image_token, video_token: the model's placeholder tokens. Text and conversation data always write
            `<image>` / `<video>`; they are rewritten to these when different (e.g. Llama 3.1's reserved
            `<|reserved_special_token_0|>` / `_1|>`, which avoid resizing its embedding, as PerceptionLM does).
        chat_template: overrides the tokenizer's template.
    """

    def __init__(
        self,
        tokenizer=None,
        crop_size: int = 256,
        patch_size: int = 16,
        tubelet_size: int = 2,
        pooling_ratio: int = 1,
        num_frames: int = 16,
        frame_sampling: str = "uniform",
        target_fps: float = 1.0,
        max_image_tiles: int = 16,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        image_token: str = IMAGE_TOKEN,
        video_token: str = VIDEO_TOKEN,
        chat_template: str | None = None,
    ):
        if crop_size % patch_size or ((crop_size // patch_size) ** 2) % pooling_ratio:
            raise ValueError(
                f"crop_size={crop_size} must be a multiple of patch_size={patch_size} with (crop/patch)^2 divisible "
                f"by pooling_ratio={pooling_ratio}"
            )
        if num_frames < tubelet_size or num_frames % tubelet_size:
            raise ValueError(f"num_frames={num_frames} must be a positive multiple of tubelet_size={tubelet_size}")
        if frame_sampling not in ("uniform", "fps"):
            raise ValueError(f"frame_sampling must be 'uniform' or 'fps', got {frame_sampling!r}")
        self.crop_size, self.patch_size, self.tubelet_size = crop_size, patch_size, tubelet_size
        self.pooling_ratio, self.num_frames, self.max_image_tiles = pooling_ratio, num_frames, max_image_tiles
        self.frame_sampling, self.target_fps = frame_sampling, target_fps
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)
        self.image_token, self.video_token = image_token, video_token
        self.image_token_id = self._single_token_id(tokenizer, image_token)
        self.video_token_id = self._single_token_id(tokenizer, video_token)
        super().__init__(tokenizer, chat_template=chat_template or tokenizer.chat_template)

    @staticmethod
    def _single_token_id(tokenizer, token: str) -> int:
        ids = tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(
                f"placeholder {token!r} is {len(ids)} tokens in this tokenizer; it must be one special token "
                "(see vjepa_vlm.data.tokenizer.add_visual_tokens)"
            )
        return ids[0]

    @classmethod
    def from_model_config(cls, config, tokenizer, **kwargs) -> "VJEPA2VLMProcessor":
        """A processor whose token counts and placeholder tokens match `config` (a `VJEPA2VLMConfig`).

        The placeholder tokens default to the tokenizer's added (special) tokens at the config's ids, so Llama
        3.1's reserved tokens are picked up; the ids are checked either way.
        """
        vision = config.vision_config
        added = {token_id: token for token, token_id in tokenizer.get_added_vocab().items()}
        for key, token_id in (("image_token", config.image_token_id), ("video_token", config.video_token_id)):
            if token_id in added:
                kwargs.setdefault(key, added[token_id])
        processor = cls(
            tokenizer,
            crop_size=vision.crop_size,
            patch_size=vision.patch_size,
            tubelet_size=vision.tubelet_size,
            pooling_ratio=config.pooling_ratio,
            **kwargs,
        )
        if (processor.image_token_id, processor.video_token_id) != (config.image_token_id, config.video_token_id):
            raise ValueError(
                f"tokenizer placeholder ids (image {processor.image_token_id}, video {processor.video_token_id}) differ "
                f"from the model config's (image {config.image_token_id}, video {config.video_token_id})"
            )
        return processor

    @property
    def tokens_per_tubelet(self) -> int:
        return (self.crop_size // self.patch_size) ** 2 // self.pooling_ratio

    def num_image_tokens(self, num_tiles: int) -> int:
        return num_tiles * self.tokens_per_tubelet

    def num_video_tokens(self, num_frames: int) -> int:
        return num_frames // self.tubelet_size * self.tokens_per_tubelet

    def process_images(self, images: Sequence) -> tuple[torch.Tensor, list[int]]:
        """Dynamic S² tiles of every image, concatenated: `((sum tiles, 3, crop, crop), tiles per image)`."""
        tiles = [dynamic_s2_tiles(im, self.crop_size, self.max_image_tiles, self.image_mean, self.image_std) for im in images]
        return torch.cat(tiles), [len(t) for t in tiles]

    def process_videos(self, videos: Sequence) -> torch.Tensor:
        """Videos given as paths or uint8 (T, H, W, 3) frames -> `(num_videos, num_frames, 3, crop, crop)`."""
        clips = []
        for video in videos:
            if isinstance(video, str) or hasattr(video, "__fspath__"):
                frames = load_video_frames(video, self.num_frames, self.frame_sampling, self.target_fps)
            else:
                frames = sample_frames(video, self.num_frames)
            clips.append(frames_to_pixels(frames, self.crop_size, self.image_mean, self.image_std))
        return torch.stack(clips)

    def expand_placeholders(
        self, input_ids: Sequence[int], image_tokens: Sequence[int], video_tokens: Sequence[int], labels=None
    ):
        """Replace the i-th `<image>` / `<video>` token by `image_tokens[i]` / `video_tokens[i]` copies.

        Returns `(input_ids, labels)` lists (labels of visual tokens are `IGNORE_INDEX`; None if not given).
        """
        n_images = sum(1 for t in input_ids if t == self.image_token_id)
        n_videos = sum(1 for t in input_ids if t == self.video_token_id)
        if n_images != len(image_tokens) or n_videos != len(video_tokens):
            raise ValueError(
                f"text has {n_images} {self.image_token} and {n_videos} {self.video_token} placeholders but "
                f"{len(image_tokens)} images and {len(video_tokens)} videos were given; they must match one to one"
            )
        remaining = {self.image_token_id: iter(image_tokens), self.video_token_id: iter(video_tokens)}
        out_ids, out_labels = [], []
        for position, token in enumerate(input_ids):
            if token in remaining:
                repeat = next(remaining[token])
                out_ids.extend([token] * repeat)
                out_labels.extend([IGNORE_INDEX] * repeat)
            else:
                out_ids.append(token)
                out_labels.append(labels[position] if labels is not None else IGNORE_INDEX)
        return out_ids, (out_labels if labels is not None else None)

    def to_model_placeholders(self, text: str) -> str:
        """Rewrite the data's `<image>` / `<video>` into this model's placeholder tokens."""
        return text.replace(IMAGE_TOKEN, self.image_token).replace(VIDEO_TOKEN, self.video_token)

    def _pixels(self, images, videos) -> tuple[dict, list[int], list[int]]:
        pixels, image_tokens, video_tokens = {}, [], []
        if images:
            pixels["pixel_values_images"], tiles = self.process_images(images)
            image_tokens = [self.num_image_tokens(n) for n in tiles]
        if videos:
            pixels["pixel_values_videos"] = self.process_videos(videos)
            video_tokens = [self.num_video_tokens(self.num_frames)] * len(videos)
        return pixels, image_tokens, video_tokens

    def __call__(self, text=None, images=None, videos=None, padding_side: str = "left", **kwargs) -> BatchFeature:
        """Tokenize already-templated `text` (str or list), expand placeholders and preprocess media.

        `images` / `videos` are flat lists over the whole batch, in placeholder order. Left padding by default,
        for batched generation. Returns `input_ids`, `attention_mask` and, when given media,
        `pixel_values_images` (all tiles) / `pixel_values_videos`.
        """
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        if text is None:
            raise ValueError("VJEPA2VLMProcessor needs `text` (apply_chat_template first)")
        texts = [self.to_model_placeholders(t) for t in ([text] if isinstance(text, str) else text)]
        pixels, image_tokens, video_tokens = self._pixels(images, videos)
        sequences = []
        for sample in texts:
            ids = self.tokenizer(sample, add_special_tokens=False)["input_ids"]
            n_img = ids.count(self.image_token_id)
            n_vid = ids.count(self.video_token_id)
            expanded, _ = self.expand_placeholders(ids, image_tokens[:n_img], video_tokens[:n_vid])
            image_tokens, video_tokens = image_tokens[n_img:], video_tokens[n_vid:]
            sequences.append(expanded)
        if image_tokens or video_tokens:
            raise ValueError(f"{len(image_tokens)} images and {len(video_tokens)} videos have no placeholder in `text`")
        input_ids = pad_sequences(sequences, self.tokenizer.pad_token_id, padding_side)
        mask = pad_sequences([[1] * len(s) for s in sequences], 0, padding_side)
        return BatchFeature({"input_ids": input_ids, "attention_mask": mask, **pixels})

    def encode_conversation(
        self, messages: Sequence[dict], images: Sequence = (), videos: Sequence = (), max_length: int | None = None
    ) -> dict:
        """Training sample: tokens with only assistant replies supervised, placeholders expanded, pixels.

        Returns a dict with 1-D `input_ids` and `labels` tensors and, when given media, `pixel_values_images`
        and/or `pixel_values_videos`. Raises `SequenceTooLongError` past `max_length` (never truncates: a cut
        would separate visual tokens from their features).
        """
        messages = [{**m, "content": self.to_model_placeholders(m["content"])} for m in messages]
        ids, labels = tokenize_with_labels(self.tokenizer, messages, self.chat_template)
        pixels, image_tokens, video_tokens = self._pixels(images, videos)
        ids, labels = self.expand_placeholders(ids, image_tokens, video_tokens, labels)
        if max_length is not None and len(ids) > max_length:
            raise SequenceTooLongError(f"sample is {len(ids)} tokens after placeholder expansion, max_length is {max_length}")
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), **pixels}

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)


__all__ = ["SequenceTooLongError", "VJEPA2VLMProcessor", "pad_sequences"]
