"""Language and anticipation labels of a synthetic clip: captions, question/answer pairs, EK100-style events.

Questions come in two formats: multiple choice ("mc", 4 lettered options) and short open answers ("open",
with the closed list of valid answers in `candidates` so exact-match scoring and chance are well defined).
Every multiple-choice question also has a cloze twin (`cloze_row`): the same question asked openly, its
options as the candidates, for models scored by option likelihood (lmms-eval's `multiple_choice` output
type) rather than by letter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vjepa_vlm.data.synthetic_motion import DIRECTIONS, MOTIONS_BY_NAME, MotionClass
from vjepa_vlm.data.synthetic_objects import CATEGORIES, COLOR_NAMES, object_phrase

MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
OPEN_INSTRUCTION = "Answer the question using a single word or phrase."
LETTERS = "ABCDE"
NUM_MC_OPTIONS = 4
QUESTION_TYPES = ("motion", "appearance", "counting")
VIDEO_CAPTION_PROMPTS = (
    "Describe what happens in the video.",
    "Write a short caption for this video.",
    "What is happening in this video? Answer in one sentence.",
)
IMAGE_CAPTION_PROMPTS = ("Describe the image.", "Write a short caption for this image.", "What does this image show?")

# Time-reversed (or otherwise single-frame-indistinguishable) partners: a motion question always offers the
# partner of the correct class, so answering needs the order of frames.
PARTNERS = {
    "move_right": "move_left", "move_up": "move_down", "move_up_right": "move_down_left",
    "move_up_left": "move_down_right", "rotate_cw": "rotate_ccw", "grow": "shrink", "start": "stop",
    "approach": "move_away", "pass_behind": "pass_front",
}
PARTNERS.update({b: a for a, b in list(PARTNERS.items())})


@dataclass
class SceneObjectLabel:
    """Appearance of one object of a clip, as the labels see it.

    Args:
        category: entry of CATEGORIES.
        color: entry of COLOR_NAMES.
        role: "main", "second" (the other object of a two-object motion) or "distractor".
        moving: whether the object moves in the clip.
    """

    category: str
    color: str
    role: str
    moving: bool

    @property
    def phrase(self) -> str:
        return object_phrase(self.category, self.color)


def _article(phrase: str) -> str:
    return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def video_caption(motion: MotionClass, objects: list[SceneObjectLabel], facts: dict) -> str:
    """One-sentence description of the motion plus a mention of the still distractors."""
    main = objects[0]
    second = next((o for o in objects if o.role == "second"), None)
    fields = {"a": _article(main.phrase), "b": f"the {second.phrase}" if second else "", "speed": facts.get("speed", ""), "wall": facts.get("wall", ""), "direction": facts.get("direction", "")}
    sentence = motion.caption.format(**fields).replace("  ", " ")
    caption = sentence[0].upper() + sentence[1:] + "."
    distractors = [_article(o.phrase) for o in objects if o.role == "distractor"]
    if distractors:
        listed = _join(distractors)
        caption += f" {listed[0].upper()}{listed[1:]} {'stays' if len(distractors) == 1 else 'stay'} still."
    return caption


def image_caption(objects: list[SceneObjectLabel]) -> str:
    phrases = _join([_article(o.phrase) for o in objects])
    return f"{phrases[0].upper()}{phrases[1:]} on a textured background."


def _with_options(item: dict, options: list[str], rng: np.random.Generator) -> dict:
    """Turn `item` into a multiple-choice item over `options` (answer included) in a random order."""
    ordered = [options[i] for i in rng.permutation(len(options))]
    lines = "\n".join(f"{LETTERS[i]}. {option}" for i, option in enumerate(ordered))
    item.update(options=ordered, answer_letter=LETTERS[ordered.index(item["answer"])], prompt=f"{item['question']}\n{lines}\n{MC_INSTRUCTION}")
    return item


def _qa(question: str, answer: str, question_type: str, template: str, candidates: list[str], fmt: str, rng: np.random.Generator) -> dict:
    """A QA item in `fmt`; for "mc", `candidates` beyond the answer are the distractor pool."""
    item = {"question": question, "answer": answer, "question_type": question_type, "template": template, "format": fmt}
    if fmt == "open":
        item["candidates"] = list(candidates)
        item["prompt"] = f"{question}\n{OPEN_INSTRUCTION}"
        return item
    pool = [c for c in candidates if c != answer]
    chosen = [answer] + [pool[i] for i in rng.choice(len(pool), size=min(NUM_MC_OPTIONS - 1, len(pool)), replace=False)]
    return _with_options(item, chosen, rng)


def _motion_options(motion: MotionClass, enabled: tuple[str, ...], rng: np.random.Generator) -> list[str]:
    """Class labels offered with `motion`: its partner and a whole other partner pair when possible."""
    partner = PARTNERS.get(motion.name)
    if partner in enabled:
        pairs = sorted({tuple(sorted((a, b))) for a, b in PARTNERS.items() if a in enabled and b in enabled} - {tuple(sorted((motion.name, partner)))})
        names = [motion.name, partner]
        if pairs:
            names += list(pairs[rng.integers(len(pairs))])
    else:
        unpaired = [n for n in enabled if n not in PARTNERS and n != motion.name]
        names = [motion.name] + [unpaired[i] for i in rng.choice(len(unpaired), size=min(3, len(unpaired)), replace=False)]
    others = [n for n in enabled if n not in names]
    while len(names) < min(NUM_MC_OPTIONS, len(enabled)):
        names.append(others.pop(int(rng.integers(len(others)))))
    return [MOTIONS_BY_NAME[n].label for n in names]


def motion_choice_question(motion: MotionClass, objects: list[SceneObjectLabel], enabled: tuple[str, ...], rng: np.random.Generator) -> dict:
    """Multiple choice over class labels: 'Which best describes what the red triangle does?'."""
    question = f"Which action best describes what happens to the {objects[0].phrase}?"
    item = {"question": question, "answer": motion.label, "question_type": "motion", "template": "motion_class", "format": "mc"}
    return _with_options(item, _motion_options(motion, enabled, rng), rng)


def motion_open_question(motion: MotionClass, objects: list[SceneObjectLabel], facts: dict, rng: np.random.Generator) -> dict:
    """Short-answer question about direction, rotation sense, size change, order of events or speed."""
    a = objects[0].phrase
    second = next((o for o in objects if o.role == "second"), None)
    family = motion.family
    if family == "direction":
        answer = "it does not move" if motion.name == "still" else facts["direction"]
        return _qa(f"In which direction does the {a} move?", answer, "motion", "direction", [*DIRECTIONS, "it does not move"], "open", rng)
    if family == "rotation":
        return _qa(f"Does the {a} rotate clockwise or counter-clockwise?", facts["sense"], "motion", "rotation", ["clockwise", "counter-clockwise"], "open", rng)
    if family == "size":
        return _qa(f"Does the {a} get bigger or smaller?", facts["size_change"], "motion", "size", ["bigger", "smaller"], "open", rng)
    if family == "bounce":
        return _qa(f"Which wall does the {a} bounce off?", facts["wall"], "motion", "bounce", ["left", "right", "top", "bottom"], "open", rng)
    if family == "start_stop":
        answer = "it starts moving" if facts["start_or_stop"] == "start" else "it stops moving"
        return _qa(f"Does the {a} start moving or stop moving?", answer, "motion", "start_stop", ["it starts moving", "it stops moving"], "open", rng)
    if family == "approach":
        return _qa(f"Does the {a} move towards or away from the {second.phrase}?", facts["relation"], "motion", "approach", ["towards", "away from"], "open", rng)
    if family == "occlusion":
        return _qa(f"Does the {a} pass in front of or behind the {second.phrase}?", facts["occlusion"], "motion", "occlusion", ["in front of", "behind"], "open", rng)
    pair = [a, second.phrase]
    ordered = [pair[i] for i in rng.permutation(2)]
    if family == "push":
        answer = a if facts["first_mover"] == "a" else second.phrase
        return _qa(f"Which starts moving first, the {ordered[0]} or the {ordered[1]}?", answer, "motion", "order", ordered, "open", rng)
    answer = a if facts["faster"] == "a" else second.phrase
    return _qa(f"Which moves faster, the {ordered[0]} or the {ordered[1]}?", answer, "motion", "speed", ordered, "open", rng)


def appearance_question(objects: list[SceneObjectLabel], fmt: str, rng: np.random.Generator) -> dict:
    """Ask for the category of an object named by its color, or the color of an object named by its category."""
    target = objects[int(rng.integers(len(objects)))]
    if rng.random() < 0.5:
        return _qa(f"What is the {target.color} object?", target.category, "appearance", "category", list(CATEGORIES), fmt, rng)
    return _qa(f"What color is the {target.category}?", target.color, "appearance", "color", list(COLOR_NAMES), fmt, rng)


def counting_question(objects: list[SceneObjectLabel], fmt: str, rng: np.random.Generator, *, video: bool) -> dict:
    """How many objects (images and videos) or how many moving objects (videos only)."""
    if video and rng.random() < 0.5:
        moving = str(sum(o.moving for o in objects))
        return _qa("How many objects are moving?", moving, "counting", "count_moving", ["0", "1", "2", "3"], fmt, rng)
    return _qa("How many objects are there?", str(len(objects)), "counting", "count", ["1", "2", "3", "4"], fmt, rng)


def video_questions(motion: MotionClass, objects: list[SceneObjectLabel], facts: dict, enabled: tuple[str, ...], rng: np.random.Generator) -> list[dict]:
    """The QA items of one clip: motion class (mc), a motion detail (open), appearance and counting (either)."""
    formats = ("mc", "open")
    return [
        motion_choice_question(motion, objects, enabled, rng),
        motion_open_question(motion, objects, facts, rng),
        appearance_question(objects, formats[rng.integers(2)], rng),
        counting_question(objects, formats[rng.integers(2)], rng, video=True),
    ]


def image_questions(objects: list[SceneObjectLabel], rng: np.random.Generator) -> list[dict]:
    formats = ("mc", "open")
    return [appearance_question(objects, formats[rng.integers(2)], rng), counting_question(objects, formats[rng.integers(2)], rng, video=False)]


def conversation_row(row_id: str, media_key: str, media_path: str, prompt: str, answer: str) -> dict:
    """LLaVA / PerceptionLM conversation row; `media_key` is "video" or "image"."""
    return {
        "id": row_id,
        media_key: media_path,
        "conversations": [{"from": "human", "value": f"<{media_key}>\n{prompt}"}, {"from": "gpt", "value": answer}],
    }


def qa_row(row_id: str, media_key: str, media_path: str, item: dict) -> dict:
    """Conversation row of a QA item, with its structured fields kept alongside for scoring."""
    answer = item["answer_letter"] if item["format"] == "mc" else item["answer"]
    row = conversation_row(row_id, media_key, media_path, item["prompt"], answer)
    row.update({k: v for k, v in item.items() if k != "prompt"})
    return row


def cloze_row(row: dict) -> dict:
    """The cloze twin of a multiple-choice QA row: the question without its option list, answered by the
    option's text; `candidates` are the options, so likelihood scoring picks among exactly those.

    A from-scratch LLM of the tiny VLM's size learns to read an answer off the video long before it learns
    to map that answer to an option letter (README, "Small-scale result"); the cloze form measures the former.
    """
    if row["format"] != "mc":
        raise ValueError(f"cloze_row: row {row.get('id')!r} has format {row['format']!r}, expected 'mc'")
    media_key = "video" if "video" in row else "image"
    item = {k: v for k, v in row.items() if k not in ("id", "conversations", "options", "answer_letter", media_key)}
    twin = conversation_row(f"{row['id']}-cloze", media_key, row[media_key], f"{row['question']}\n{OPEN_INSTRUCTION}",
                            row["answer"])
    return twin | item | {"format": "cloze", "candidates": list(row["options"])}
