"""Training rows that teach the option-letter mapping alone: multiple-choice questions with the answer stated.

    python research/letter_mapping_smollm2.py --world runs/smol_main/world --out runs/s18c/hinted_mc.jsonl

SmolLM2-135M-Instruct gives one letter to every question of the world even when the prompt states the answer
(research/journal_vlm.md, "Issue 18, second session"), so by-letter scoring cannot show video reading before
the mapping "answer text -> its option's letter" is taught. Each training multiple-choice row of the world is
written `--permutations` times with its options in a fresh random order and "Hint: <answer>." before the
instruction (the form `research/diagnose_smollm2_vlm.py` scores as "letter_with_hint"); its video stays, so the
rows train through the stage trainer as they are and the prompt keeps the evaluation's layout.
"""

import argparse
import json
import random
from pathlib import Path

from vjepa_vlm.data.manifests import read_jsonl
from vjepa_vlm.data.synthetic_labels import LETTERS, MC_INSTRUCTION


def hinted_row(row: dict, rng: random.Random, suffix: str = "") -> dict:
    """`row` (a multiple-choice video QA row) with its options reordered and the answer stated in the prompt."""
    options = list(row["options"])
    rng.shuffle(options)
    letter = LETTERS[options.index(row["answer"])]
    lines = "\n".join(f"{LETTERS[i]}. {option}" for i, option in enumerate(options))
    prompt = f"<video>\n{row['question']}\n{lines}\nHint: {row['answer']}.\n{MC_INSTRUCTION}"
    return {**row, "id": f"{row['id']}-hint{suffix}", "options": options, "answer_letter": letter,
            "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": letter}]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--permutations", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = [r for r in read_jsonl(Path(args.world) / "train" / "video_qa.jsonl") if r["format"] == "mc"]
    out = [hinted_row(row, rng, str(k)) for k in range(args.permutations) for row in rows]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("".join(json.dumps(row) + "\n" for row in out))
    print(f"{len(out)} hinted rows from {len(rows)} questions -> {args.out}")


if __name__ == "__main__":
    main()
