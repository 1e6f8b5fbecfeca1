"""LLaVA and PerceptionLM conversation manifests, parsed into one validated record shape.

Record shape (what the VLM dataset stores in a Hugging Face `datasets.Dataset`)::

    {"messages": [{"role": "system" | "user" | "assistant", "content": str}, ...],
     "images": [absolute path, ...], "videos": [absolute path, ...], "source": "file:line"}

Formats:
    "llava": JSON list or JSONL; `{"image": str | [str], "video": str | [str], "conversations": [{"from":
        "human" | "gpt" | "system", "value": str}]}`; each medium is referenced by a `<image>` / `<video>`
        placeholder written whole inside a human turn, and their counts must match the listed media.
    "perception_lm": JSONL with the same keys but `from` is "human" | "assistant"; placeholders are optional
        and, when absent, are prepended to the first human turn (images, then videos), as PLM does.

Everything is checked at load time; errors name the file and line and say what was expected.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from vjepa_vlm.data.tokenizer import IMAGE_TOKEN, VIDEO_TOKEN

FORMATS = ("llava", "perception_lm")
_ROLES = {
    "llava": {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"},
    "perception_lm": {"human": "user", "user": "user", "assistant": "assistant", "system": "system"},
}


class ConversationFormatError(ValueError):
    """A manifest record that does not follow its declared conversation format."""


@dataclass(frozen=True)
class Conversation:
    """One validated multimodal conversation.

    Args:
        messages: chat turns as `{"role", "content"}` dicts, placeholders inside user turns.
        images: image paths, in placeholder order.
        videos: video paths, in placeholder order.
        source: `file:line` of the manifest record, for error messages and skip counters.
    """

    messages: list[dict]
    images: list[str]
    videos: list[str]
    source: str

    def to_record(self) -> dict:
        return {"messages": self.messages, "images": self.images, "videos": self.videos, "source": self.source}


def _as_path_list(value, key: str, source: str, media_root: Path) -> list[str]:
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise ConversationFormatError(f"{source}: '{key}' must be a path string or a list of path strings, got {value!r}")
    return [str(media_root / v) if not Path(v).is_absolute() else v for v in values]


def parse_record(record: dict, fmt: str, source: str, media_root: Path, check_media: bool = True) -> Conversation:
    """Validate one manifest record of format `fmt` (see module docstring) and normalize it."""
    if fmt not in FORMATS:
        raise ValueError(f"conversation format must be one of {FORMATS}, got {fmt!r}")
    if not isinstance(record, dict):
        raise ConversationFormatError(f"{source}: expected a JSON object, got {type(record).__name__}")
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise ConversationFormatError(f"{source}: 'conversations' must be a non-empty list of turns")
    images = _as_path_list(record.get("image", record.get("images")), "image", source, media_root)
    videos = _as_path_list(record.get("video", record.get("videos")), "video", source, media_root)
    roles = _ROLES[fmt]
    messages = []
    for number, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str) or turn.get("from") not in roles:
            raise ConversationFormatError(
                f"{source}: turn {number} must be {{'from': one of {sorted(roles)}, 'value': str}}, got {turn!r}"
            )
        role = roles[turn["from"]]
        if role == "assistant" and (IMAGE_TOKEN in turn["value"] or VIDEO_TOKEN in turn["value"]):
            raise ConversationFormatError(f"{source}: turn {number} is an assistant reply containing a media placeholder")
        messages.append({"role": role, "content": turn["value"]})
    if not any(m["role"] == "assistant" for m in messages):
        raise ConversationFormatError(f"{source}: conversation has no assistant turn (nothing to learn from)")
    first_user = next((i for i, m in enumerate(messages) if m["role"] != "system"), None)
    if messages[first_user]["role"] != "user":
        raise ConversationFormatError(f"{source}: the first non-system turn must come from the user (human)")
    # Placeholders are counted turn by turn: the chat template puts glue between turns, so a placeholder cut
    # across two turns (human "X <vid", gpt "eo> Y.") is no placeholder at all once rendered.
    for number in range(len(messages) - 1):
        for token in (IMAGE_TOKEN, VIDEO_TOKEN):
            seam = messages[number]["content"][-(len(token) - 1) :] + messages[number + 1]["content"][: len(token) - 1]
            if token in seam:
                raise ConversationFormatError(
                    f"{source}: a '{token}' placeholder is split between turns {number} and {number + 1}; "
                    "write it whole inside one human turn"
                )
    counts = {token: sum(m["content"].count(token) for m in messages) for token in (IMAGE_TOKEN, VIDEO_TOKEN)}
    if fmt == "perception_lm" and not any(counts.values()) and (images or videos):
        prefix = f"{IMAGE_TOKEN}\n" * len(images) + f"{VIDEO_TOKEN}\n" * len(videos)
        messages[first_user] = {"role": "user", "content": prefix + messages[first_user]["content"]}
        counts = {IMAGE_TOKEN: len(images), VIDEO_TOKEN: len(videos)}
    for token, media, key in ((IMAGE_TOKEN, images, "image"), (VIDEO_TOKEN, videos, "video")):
        if counts[token] != len(media):
            raise ConversationFormatError(
                f"{source}: {counts[token]} '{token}' placeholder(s) but {len(media)} '{key}' path(s); they must match"
            )
    if check_media:
        for path in images + videos:
            if not Path(path).is_file():
                raise ConversationFormatError(f"{source}: media file not found: {path}")
    return Conversation(messages=messages, images=images, videos=videos, source=source)


def _iter_raw_records(path: Path):
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConversationFormatError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from error
        if not isinstance(records, list):
            raise ConversationFormatError(f"{path}: a .json manifest must hold a list of records")
        # A JSON list has no per-record line; the record index stands in for it.
        yield from ((f"{path}:record {index}", record) for index, record in enumerate(records))
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"{path}:{number}", json.loads(line)
        except json.JSONDecodeError as error:
            raise ConversationFormatError(f"{path}:{number}: invalid JSON ({error.msg})") from error


def load_conversations(
    path: str | Path, fmt: str = "llava", media_root: str | Path | None = None, check_media: bool = True
) -> list[Conversation]:
    """Load and validate a LLaVA (.json / .jsonl) or PerceptionLM (.jsonl) manifest.

    Args:
        path: the manifest file.
        fmt: "llava" or "perception_lm".
        media_root: directory relative media paths are resolved against; the manifest's folder by default.
        check_media: fail at load time when a referenced media file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"conversation manifest not found: {path}")
    root = Path(media_root) if media_root is not None else path.parent
    return [parse_record(record, fmt, source, root, check_media) for source, record in _iter_raw_records(path)]
