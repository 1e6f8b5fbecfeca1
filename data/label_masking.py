"""Supervise exactly the assistant replies of a chat, whatever the chat template.

Decision (documented once, relied on by the trainer): a label is the token id for every token of an assistant
reply *and its end-of-turn token* (`<|im_end|>` for ChatML, `<|eot_id|>` for Llama 3) so the model learns to
stop; every other token (system prompt, user turns, role headers such as `<|im_start|>assistant\\n`, the
newline glue between turns, visual placeholders, padding) is `IGNORE_INDEX`.

How: the template is rendered for the conversation cut before and after each assistant turn; the characters
in between (trailing whitespace removed) are that turn's span. The full rendering is tokenized with offsets
and a token is supervised iff it lies inside a span. This works for any prefix-stable template (ChatML,
Llama 3) instead of hard-coding one, which is where LLaVA-NeXT's per-model preprocessors go wrong. A token
that straddles a span boundary raises instead of being guessed.
"""

from collections.abc import Sequence

IGNORE_INDEX = -100


def _render(tokenizer, messages, chat_template, add_generation_prompt=False) -> str:
    return tokenizer.apply_chat_template(
        list(messages), chat_template=chat_template, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def assistant_spans(tokenizer, messages: Sequence[dict], chat_template: str | None = None):
    """Render `messages` and find the character span of every assistant reply.

    Returns `(text, spans)` with `spans` a list of `(start, end)` character offsets into `text`.
    """
    text = _render(tokenizer, messages, chat_template)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = _render(tokenizer, messages[:index], chat_template, add_generation_prompt=True)
        through = _render(tokenizer, messages[: index + 1], chat_template)
        if not (text.startswith(through) and through.startswith(prefix)):
            raise ValueError(
                "chat template is not prefix-stable (rendering a conversation cut at an assistant turn is not a "
                "prefix of the full rendering); label masking needs a ChatML- or Llama-3-like template"
            )
        spans.append((len(prefix), len(through.rstrip())))
    if not spans:
        raise ValueError("conversation has no assistant turn: nothing would be supervised")
    return text, spans


def tokenize_with_labels(
    tokenizer, messages: Sequence[dict], chat_template: str | None = None
) -> tuple[list[int], list[int]]:
    """Tokenize a chat and build labels that supervise only the assistant replies (+ end-of-turn tokens).

    Args:
        tokenizer: a fast tokenizer (offsets are needed) with a chat template.
        messages: `[{"role": "system" | "user" | "assistant", "content": str}, ...]`.
        chat_template: overrides `tokenizer.chat_template` when given.

    Returns:
        `(input_ids, labels)` of equal length; `labels[i]` is `input_ids[i]` or `IGNORE_INDEX`.
    """
    text, spans = assistant_spans(tokenizer, messages, chat_template)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = list(encoding["input_ids"])
    labels = [IGNORE_INDEX] * len(input_ids)
    for position, (start, end) in enumerate(encoding["offset_mapping"]):
        for span_start, span_end in spans:
            if span_start <= start and end <= span_end:
                labels[position] = input_ids[position]
                break
            if start < span_start < end or start < span_end < end:
                raise ValueError(
                    f"token {position} ({text[start:end]!r}) straddles an assistant-turn boundary at characters "
                    f"{span_start}-{span_end}; the tokenizer merges template glue with reply text"
                )
    return input_ids, labels
