"""Rows that teach the option-letter mapping alone: the world's multiple-choice questions with the answer stated.

SmolLM2-135M-Instruct picks one letter for every question of the synthetic world even when the prompt states
the answer, so by-letter scoring cannot show video reading before "answer text -> its option's letter" is
taught (research/journal_vlm.md, "Issue 18"). `hinted_row` rewrites a multiple-choice row with its options in a
fresh random order and "Hint: <answer>." before the instruction; its video stays, so the rows train through the
stage trainer like any video QA and keep the evaluation prompt's layout. `ensure_hinted_manifest` writes them
once per world as `train/video_qa_hinted.jsonl`, the manifest of `train/recipes/stage2_tiny_smollm2.yaml`.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from vjepa_vlm.data.manifests import read_jsonl
from vjepa_vlm.data.synthetic_labels import LETTERS, MC_INSTRUCTION

HINTED_MANIFEST = "video_qa_hinted.jsonl"


def hint_line(answer: str) -> str:
    """The sentence stating the answer, placed right before the instruction."""
    return f"Hint: {answer}."


def hinted_row(row: dict, rng: random.Random) -> dict:
    """`row` (a multiple-choice video QA row of the world) with its options reordered by `rng` and the answer
    stated in the prompt; the reply is the answer's new letter."""
    if row.get("format") != "mc" or row.get("answer") not in row.get("options", ()):
        raise ValueError(f"hinted_row: row {row.get('id')!r} is not a multiple-choice row whose options hold its answer")
    options = list(row["options"])
    rng.shuffle(options)
    letter = LETTERS[options.index(row["answer"])]
    lines = "\n".join(f"{LETTERS[i]}. {option}" for i, option in enumerate(options))
    prompt = f"<video>\n{row['question']}\n{lines}\n{hint_line(row['answer'])}\n{MC_INSTRUCTION}"
    return {**row, "id": f"{row['id']}-hint0", "options": options, "answer_letter": letter,
            "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": letter}]}


def ensure_hinted_manifest(world: str | os.PathLike, seed: int = 0) -> Path:
    """`<world>/train/video_qa_hinted.jsonl`: every training multiple-choice row hinted once (written atomically
    when absent; a function of the world and `seed` only)."""
    path = Path(world) / "train" / HINTED_MANIFEST
    if path.is_file():
        return path
    source = Path(world) / "train" / "video_qa.jsonl"
    if not source.is_file():
        raise FileNotFoundError(f"{source} is missing: the hinted rows are made from the world's training video QA")
    rng = random.Random(seed)
    rows = [hinted_row(row, rng) for row in read_jsonl(source) if row["format"] == "mc"]
    staging = path.with_name(f".tmp-{path.name}")
    staging.write_text("".join(json.dumps(row) + "\n" for row in rows))
    os.replace(staging, path)
    return path


__all__ = ["HINTED_MANIFEST", "ensure_hinted_manifest", "hint_line", "hinted_row"]
