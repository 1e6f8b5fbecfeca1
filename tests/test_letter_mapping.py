"""The hinted multiple-choice rows of the SmolLM2 preset's stage 2 (`vjepa_vlm.data.letter_mapping`)."""

import json
import random

import pytest

from vjepa_vlm.data.letter_mapping import HINTED_MANIFEST, ensure_hinted_manifest, hinted_row
from vjepa_vlm.data.synthetic_labels import MC_INSTRUCTION
from vjepa_vlm.train.embedded import EmbeddedArgs, ensure_world


def mc_row(index: int, answer: str = "red") -> dict:
    options = ["blue", "red", "green", "white"]
    lines = "\n".join(f"{letter}. {option}" for letter, option in zip("ABCD", options))
    return {"id": f"train-{index:06d}-q0", "video": f"videos/train/{index:06d}.mp4", "format": "mc",
            "question": "What color is the star?", "answer": answer, "options": options,
            "answer_letter": "ABCD"[options.index(answer)], "question_type": "appearance",
            "conversations": [{"from": "human", "value": f"<video>\nWhat color is the star?\n{lines}\n{MC_INSTRUCTION}"},
                              {"from": "gpt", "value": "ABCD"[options.index(answer)]}]}


def test_a_hinted_row_states_the_answer_and_replies_with_its_new_letter():
    rng = random.Random(0)
    letters = set()
    for index in range(40):
        row = hinted_row(mc_row(index), rng)
        prompt, reply = (turn["value"] for turn in row["conversations"])
        assert sorted(row["options"]) == sorted(mc_row(index)["options"])
        assert reply == row["answer_letter"] and row["options"]["ABCD".index(reply)] == "red"
        assert f"{reply}. red\n" in prompt
        assert prompt.startswith("<video>\nWhat color is the star?\nA. ")
        assert prompt.endswith(f"\nHint: red.\n{MC_INSTRUCTION}")
        assert row["video"] == mc_row(index)["video"] and row["id"].endswith("-hint0")
        letters.add(reply)
    assert letters == set("ABCD")  # the options are reordered, so the hinted answer is not always one letter
    with pytest.raises(ValueError, match="not a multiple-choice row"):
        hinted_row({**mc_row(0), "format": "open"}, rng)


def test_the_manifest_is_written_once_beside_an_existing_world_and_is_reproducible(tmp_path):
    world = tmp_path / "world"
    (world / "train").mkdir(parents=True)
    (world / "meta.json").write_text("{}")  # an existing world: ensure_world must not regenerate it
    open_row = {**mc_row(9), "id": "open", "format": "open"}
    rows = [mc_row(i, answer) for i, answer in enumerate(["red", "blue", "green"])] + [open_row]
    (world / "train" / "video_qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert ensure_world(EmbeddedArgs(world_dir=str(world))) == world
    path = world / "train" / HINTED_MANIFEST
    written = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in written] == [f"train-{i:06d}-q0-hint0" for i in range(3)]
    rng = random.Random(0)
    assert written == [hinted_row(row, rng) for row in rows[:3]]
    path.write_text("kept\n")
    assert ensure_hinted_manifest(world) == path and path.read_text() == "kept\n"
    with pytest.raises(FileNotFoundError, match="video_qa.jsonl is missing"):
        ensure_hinted_manifest(tmp_path / "empty")
