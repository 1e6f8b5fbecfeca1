"""A tiny ChatML tokenizer trained offline, for tests and the tiny recipe.

Real runs use the LLM's own tokenizer (Qwen2-7B-Instruct, Llama-3.1-8B-Instruct); `add_visual_tokens` gives
it the `<image>` / `<video>` placeholders. Nothing here downloads anything: the tiny tokenizer is a byte-level
BPE trained on the texts it is given, so it can encode any string.
"""

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"
SPECIAL_TOKENS = (PAD_TOKEN, IM_START, IM_END, IMAGE_TOKEN, VIDEO_TOKEN)

# Qwen2-Instruct's ChatML layout (default system turn included); `{% generation %}` marks the assistant span so
# `apply_chat_template(..., return_assistant_tokens_mask=True)` can cross-check our label masking.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}"
    "<|im_start|>assistant\n{% generation %}{{ message['content'] }}<|im_end|>{% endgeneration %}\n"
    "{% else %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen2's pre-tokenization split: unlike GPT-2's byte-level regex it keeps a run of newlines together
# (`\s*[\r\n]+`), so template glue and a reply's leading newline can become one token, as with the real model.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS = ("byte_level", "qwen2")


def train_tiny_tokenizer(
    texts: Iterable[str], vocab_size: int = 512, pre_tokenizer: str = "byte_level"
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with ChatML special tokens.

    Args:
        texts: training corpus; any iterable of strings (a few sentences are enough).
        vocab_size: target vocabulary size including the 256 byte tokens and the special tokens.
        pre_tokenizer: "byte_level" (GPT-2's split) or "qwen2" (Qwen2's split, `QWEN2_SPLIT_PATTERN`).
    """
    texts = list(texts)
    if not texts:
        raise ValueError("train_tiny_tokenizer: `texts` is empty; give at least one training sentence")
    if pre_tokenizer not in PRE_TOKENIZERS:
        raise ValueError(f"train_tiny_tokenizer: pre_tokenizer must be one of {PRE_TOKENIZERS}, got {pre_tokenizer!r}")
    backend = Tokenizer(models.BPE())
    if pre_tokenizer == "qwen2":
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=IM_END,
        additional_special_tokens=[IM_START, IMAGE_TOKEN, VIDEO_TOKEN],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return add_visual_tokens(tokenizer)


def add_visual_tokens(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """Make `<image>` and `<video>` single special tokens and expose them as attributes.

    Returns the same tokenizer; when tokens were added, the LLM's embedding matrix must be resized to
    `len(tokenizer)` (see `VJEPA2VLMForConditionalGeneration.resize_token_embeddings`).
    """
    missing = [token for token in (IMAGE_TOKEN, VIDEO_TOKEN) if token not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:
        # Llama-3 ships without a pad token; padding positions are masked out anyway.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.image_token = IMAGE_TOKEN
    tokenizer.video_token = VIDEO_TOKEN
    tokenizer.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    tokenizer.video_token_id = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
    return tokenizer
