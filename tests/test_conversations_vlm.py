"""LLaVA / PerceptionLM manifests: normalization and load-time errors naming file and line."""

import json

import pytest

from vjepa_vlm.data.conversations import ConversationFormatError, load_conversations


def write_jsonl(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


@pytest.fixture
def media(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"")
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b.jpg").write_bytes(b"")
    return tmp_path


LLAVA_RECORD = {
    "id": "x",
    "video": "clip.mp4",
    "image": ["a.jpg", "b.jpg"],
    "conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "<image><image>\n<video>\nWhat moves?"},
        {"from": "gpt", "value": "The ball."},
        {"from": "human", "value": "Where to?"},
        {"from": "gpt", "value": "Left."},
    ],
}


def test_llava_jsonl_and_json_normalize_the_same(media):
    jsonl = load_conversations(write_jsonl(media / "train.jsonl", [LLAVA_RECORD]))
    (media / "train.json").write_text(json.dumps([LLAVA_RECORD]))
    as_json = load_conversations(media / "train.json")
    assert [c.messages for c in jsonl] == [c.messages for c in as_json]
    conversation = jsonl[0]
    assert [m["role"] for m in conversation.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert conversation.images == [str(media / "a.jpg"), str(media / "b.jpg")]
    assert conversation.videos == [str(media / "clip.mp4")]
    assert conversation.source == f"{media / 'train.jsonl'}:1"


def test_perception_lm_placeholders_are_prepended_to_the_first_user_turn(media):
    record = {"video": "clip.mp4", "conversations": [{"from": "human", "value": "Describe."}, {"from": "assistant", "value": "A ball."}]}
    (conversation,) = load_conversations(write_jsonl(media / "plm.jsonl", [record]), fmt="perception_lm")
    assert conversation.messages[0] == {"role": "user", "content": "<video>\nDescribe."}
    text_only = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "assistant", "value": "Hello"}]}
    (plain,) = load_conversations(write_jsonl(media / "text.jsonl", [text_only]), fmt="perception_lm")
    assert plain.messages[0]["content"] == "Hi" and plain.images == [] and plain.videos == []


@pytest.mark.parametrize(
    "record, message",
    [
        ({"conversations": [{"from": "human", "value": "Hi"}]}, "no assistant turn"),
        ({"image": "a.jpg", "conversations": [{"from": "human", "value": "<image><image>"}, {"from": "gpt", "value": "x"}]},
         "2 '<image>' placeholder\\(s\\) but 1 'image' path"),
        ({"video": "clip.mp4", "conversations": [{"from": "human", "value": "What?"}, {"from": "gpt", "value": "x"}]},
         "0 '<video>' placeholder\\(s\\) but 1 'video' path"),
        ({"image": "missing.jpg", "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "x"}]},
         "media file not found"),
        ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "<image>"}]},
         "assistant reply containing a media placeholder"),
        ({"conversations": [{"from": "robot", "value": "Hi"}, {"from": "gpt", "value": "x"}]}, "turn 0 must be"),
        ({"conversations": []}, "'conversations' must be a non-empty list"),
        ({"conversations": [{"from": "gpt", "value": "Hi"}, {"from": "human", "value": "x"}]}, "first non-system turn"),
        ({"video": "clip.mp4", "conversations": [{"from": "human", "value": "X <vid"}, {"from": "gpt", "value": "eo> Y."}]},
         "'<video>' placeholder is split between turns 0 and 1"),
        ({"image": "a.jpg", "conversations": [{"from": "human", "value": "<"}, {"from": "human", "value": "image>"},
                                              {"from": "gpt", "value": "x"}]},
         "'<image>' placeholder is split between turns 0 and 1"),
    ],
)
def test_bad_records_fail_at_load_time_naming_file_and_line(media, record, message):
    path = write_jsonl(media / "bad.jsonl", [LLAVA_RECORD, record])
    with pytest.raises(ConversationFormatError, match=message) as error:
        load_conversations(path)
    assert f"{path}:2" in str(error.value)


def test_invalid_json_line_and_unknown_format(media):
    path = media / "broken.jsonl"
    path.write_text(json.dumps(LLAVA_RECORD) + "\n\n{not json\n")
    with pytest.raises(ConversationFormatError, match=f"{path}:3: invalid JSON"):
        load_conversations(path)
    with pytest.raises(ValueError, match="format must be one of"):
        load_conversations(write_jsonl(media / "ok.jsonl", [LLAVA_RECORD]), fmt="sharegpt")
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        load_conversations(media / "nope.jsonl")


def test_perception_lm_rejects_llava_roles(media):
    record = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "x"}]}
    with pytest.raises(ConversationFormatError, match="turn 1 must be"):
        load_conversations(write_jsonl(media / "plm.jsonl", [record]), fmt="perception_lm")
