"""Only assistant replies (+ their end-of-turn token) are supervised, for ChatML and Llama-3 templates."""

import pytest
import torch

from vjepa_vlm.data.label_masking import IGNORE_INDEX, tokenize_with_labels
from vjepa_vlm.data.tokenizer import IMAGE_TOKEN, train_tiny_tokenizer
from vjepa_vlm.processing_vjepa2_vlm import VJEPA2VLMProcessor

CORPUS = [
    "You are a helpful assistant. What is happening in the video? A red ball rolls to the left.",
    "Describe the image. A small blue square sits on a green floor. How many objects are there? Two.",
    "system user assistant: the cube moves up, then the sphere falls down and stops.",
]

# Llama-3's chat layout (header tokens, <|eot_id|> end of turn), with its BOS rendered by the template.
LLAMA3_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>"
    "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

MULTI_TURN = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": f"{IMAGE_TOKEN}\nWhat is happening in the video?"},
    {"role": "assistant", "content": "A red ball rolls to the left."},
    {"role": "user", "content": "How many objects are there?"},
    {"role": "assistant", "content": "Two."},
]


@pytest.fixture(scope="module")
def chatml():
    return train_tiny_tokenizer(CORPUS, vocab_size=400)


@pytest.fixture(scope="module")
def llama3():
    tokenizer = train_tiny_tokenizer(CORPUS, vocab_size=400)
    tokenizer.add_special_tokens({"additional_special_tokens": LLAMA3_SPECIALS}, replace_extra_special_tokens=False)
    tokenizer.chat_template = LLAMA3_TEMPLATE
    return tokenizer


def supervised_spans(labels):
    """Contiguous runs of supervised positions as (start, end) pairs."""
    runs, start = [], None
    for position, label in enumerate(list(labels) + [IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = position
        elif label == IGNORE_INDEX and start is not None:
            runs.append((start, position))
            start = None
    return runs


@pytest.mark.parametrize("template, end_of_turn", [("chatml", "<|im_end|>"), ("llama3", "<|eot_id|>")])
def test_exactly_the_replies_and_their_end_of_turn_tokens_are_supervised(template, end_of_turn, request):
    tokenizer = request.getfixturevalue(template)
    input_ids, labels = tokenize_with_labels(tokenizer, MULTI_TURN)
    assert len(input_ids) == len(labels)
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(input_ids, labels))
    spans = supervised_spans(labels)
    replies = [m["content"] for m in MULTI_TURN if m["role"] == "assistant"]
    assert [tokenizer.decode(input_ids[a:b]) for a, b in spans] == [reply + end_of_turn for reply in replies]
    # Everything else (system prompt, user turns incl. the placeholder, role headers, glue) is ignored.
    supervised = {p for a, b in spans for p in range(a, b)}
    ignored_text = tokenizer.decode([t for p, t in enumerate(input_ids) if p not in supervised])
    for message in MULTI_TURN:
        if message["role"] != "assistant":
            assert message["content"] in ignored_text
    assert "assistant" in ignored_text


def test_matches_the_templates_own_assistant_mask(chatml):
    input_ids, labels = tokenize_with_labels(chatml, MULTI_TURN)
    reference = chatml.apply_chat_template(MULTI_TURN, return_assistant_tokens_mask=True, return_dict=True)
    assert reference["input_ids"] == input_ids
    assert reference["assistant_masks"] == [int(label != IGNORE_INDEX) for label in labels]


def test_default_system_prompt_and_user_turn_are_ignored(chatml):
    messages = [{"role": "user", "content": "Describe the image."}, {"role": "assistant", "content": "A blue square."}]
    input_ids, labels = tokenize_with_labels(chatml, messages)
    first_supervised = next(p for p, label in enumerate(labels) if label != IGNORE_INDEX)
    prompt = chatml.decode(input_ids[:first_supervised])
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "You are a helpful assistant." in prompt and "Describe the image." in prompt
    assert labels[-1] == chatml.convert_tokens_to_ids("<|im_end|>")


def test_conversation_without_assistant_turn_is_rejected(chatml):
    with pytest.raises(ValueError, match="no assistant turn"):
        tokenize_with_labels(chatml, [{"role": "user", "content": "Hello?"}])


def test_visual_tokens_are_never_supervised_after_expansion(chatml):
    processor = VJEPA2VLMProcessor(chatml, crop_size=32, patch_size=16, num_frames=2, max_image_tiles=4)
    image = torch.randint(0, 255, (40, 90, 3), dtype=torch.uint8).numpy()
    sample = processor.encode_conversation(MULTI_TURN, images=[image])
    visual = sample["input_ids"] == processor.image_token_id
    assert int(visual.sum()) == processor.num_image_tokens(len(sample["pixel_values_images"]))
    assert bool((sample["labels"][visual] == IGNORE_INDEX).all())
    text_ids, text_labels = tokenize_with_labels(chatml, MULTI_TURN)
    kept = sample["labels"][~visual].tolist()
    placeholder_position = text_ids.index(processor.image_token_id)
    assert kept == text_labels[:placeholder_position] + text_labels[placeholder_position + 1 :]
