"""Prompts and scoring of the local lmms-eval tasks over the synthetic world's test split (`vjepa_synth_*`).

The rows are the world's LLaVA QA manifests (`{split}/video_qa.jsonl`, `{split}/image_qa.jsonl`): a human turn
`<video>\\n{prompt}` plus the structured fields `question`, `answer`, `question_type` (motion / appearance /
counting), `format` (mc / open) and, for mc, `options` and `answer_letter`. Media paths are relative to the
world directory, which the task YAML gives as `lmms_eval_specific_kwargs.default.world_dir` (the same
directory as `dataset_kwargs.data_dir`; see `vjepa_vlm.eval.local_tasks`).

lmms-eval loads this file by path (`!function utils.name`), so it only imports installed packages.
Accuracies are percentages; a per-type accuracy over a split without that type is NaN.
"""

import math
import re
import string
from pathlib import Path

QUESTION_TYPES = ("motion", "appearance", "counting")
IMAGE_QUESTION_TYPES = ("appearance", "counting")
LETTERS = "ABCDE"
NUMBER_WORDS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}
ARTICLES = frozenset({"a", "an", "the"})
_LEADING_LETTER = re.compile(r"^\(?([A-E])(?:[.):\s]|$)")
_STATED_LETTER = re.compile(r"\b(?:answer|option)\s*(?:is)?\s*:?\s*\(?([A-E])\b", re.IGNORECASE)
_LOGLIKELIHOOD_TEXT = re.compile(r"^\(\s*([^,\s]+)\s*,\s*(?:True|False)\s*\)$")


def _world_path(doc: dict, key: str, kwargs: dict | None) -> str:
    if not kwargs or "world_dir" not in kwargs:
        raise KeyError(
            "vjepa_synth task: lmms_eval_specific_kwargs.default.world_dir is not set; it must name the synthetic "
            "world directory (see vjepa_vlm.eval.local_tasks.write_task_configs)"
        )
    return str(Path(kwargs["world_dir"]) / doc[key])


def video_doc_to_visual(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> list[str]:
    return [_world_path(doc, "video", lmms_eval_specific_kwargs)]


def image_doc_to_visual(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> list[str]:
    return [_world_path(doc, "image", lmms_eval_specific_kwargs)]


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The training prompt of the row (question, lettered options, answer instruction) without its placeholder."""
    human = doc["conversations"][0]["value"]
    return re.sub(r"^(?:<video>|<image>)\s*", "", human)


def mc_doc_to_choice(doc: dict) -> list[str]:
    return list(LETTERS[: len(doc["options"])])


def mc_doc_to_target(doc: dict) -> int:
    return LETTERS.index(doc["answer_letter"])


def qa_doc_to_target(doc: dict) -> str:
    """The reference answer as logged with each sample: the option letter (mc) or the short answer (open)."""
    return doc["answer_letter"] if doc["format"] == "mc" else doc["answer"]


def keep_multiple_choice(dataset):
    return dataset.filter(lambda doc: doc["format"] == "mc")


def keep_open_answer(dataset):
    return dataset.filter(lambda doc: doc["format"] == "open")


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation or articles, number words as digits, single spaces: 'The Three.' -> '3'."""
    text = text.lower().replace("-", " ")
    text = text.translate(str.maketrans("", "", string.punctuation))
    words = [NUMBER_WORDS.get(w, w) for w in text.split() if w not in ARTICLES]
    return " ".join(words)


def extract_letter(response: str, options: list[str]) -> str | None:
    """The option letter a free-form response picks: 'B', '(B)', 'B. bigger', 'The answer is B', or an option's text."""
    response = response.strip()
    for pattern in (_LEADING_LETTER, _STATED_LETTER):
        match = pattern.search(response)
        if match and LETTERS.index(match.group(1).upper()) < len(options):
            return match.group(1).upper()
    normalized = normalize_answer(response)
    for letter, option in zip(LETTERS, options):
        if normalized and normalized == normalize_answer(option):
            return letter
    return None


def _scored(doc: dict, correct: bool, prediction, types: tuple[str, ...] = QUESTION_TYPES) -> dict:
    """One record per metric of the task (`types` are the question types it reports separately)."""
    record = {"question_type": doc["question_type"], "correct": bool(correct), "id": doc["id"], "prediction": prediction}
    return {"accuracy": record, **{f"accuracy_{t}": record for t in types}}


def mc_process_results(doc: dict, results: list[str], types: tuple[str, ...] = QUESTION_TYPES) -> dict:
    letter = extract_letter(results[0], doc["options"])
    return _scored(doc, letter == doc["answer_letter"], letter, types)


def open_process_results(doc: dict, results: list[str], types: tuple[str, ...] = QUESTION_TYPES) -> dict:
    return _scored(doc, normalize_answer(results[0]) == normalize_answer(doc["answer"]), results[0], types)


def image_process_results(doc: dict, results: list[str]) -> dict:
    """Image QA mixes formats: mc rows by option letter, open rows by normalized exact match; images have no motion."""
    score = mc_process_results if doc["format"] == "mc" else open_process_results
    return score(doc, results, IMAGE_QUESTION_TYPES)


def log_likelihood(result, doc: dict) -> float:
    """The log-likelihood of one option's `loglikelihood` response, as lmms-eval hands it to `process_results`.

    The model answers `(log_likelihood, is_greedy)`, but lmms-eval 0.7.3's `unwrap_generation_output` keeps
    only strings and turns anything else into `str(output)`, so the response arrives as the text
    `'(-2.6858, False)'` (full float precision, `-inf` for an unreadable visual). Both forms are read; anything
    else, or a NaN score, is an error naming the document rather than a silently wrong prediction.
    """
    value = result[0] if isinstance(result, (tuple, list)) and len(result) == 2 else None
    if isinstance(result, str):
        match = _LOGLIKELIHOOD_TEXT.match(result.strip())
        value = match.group(1) if match else None
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"vjepa_synth task, doc {doc.get('id')!r}: cannot read a log-likelihood from the response {result!r}; "
            "expected (log_likelihood, is_greedy) or its text '(-2.6858, False)'"
        ) from None
    if math.isnan(score):
        raise ValueError(f"vjepa_synth task, doc {doc.get('id')!r}: the model's log-likelihood is NaN ({result!r})")
    return score


def _likeliest(results: list, doc: dict, n_choices: int) -> int | None:
    """Index of the highest log-likelihood choice; None when all are -inf (unreadable visual), never choice 0."""
    if len(results) != n_choices:
        raise ValueError(f"vjepa_synth task, doc {doc.get('id')!r}: {len(results)} responses for {n_choices} options")
    scores = [log_likelihood(r, doc) for r in results]
    if all(s == -math.inf for s in scores):
        return None
    return max(range(len(scores)), key=scores.__getitem__)


def mc_loglikelihood_process_results(doc: dict, results: list) -> dict:
    """Highest-likelihood option letter; an unreadable visual is wrong, not option A."""
    best = _likeliest(results, doc, len(doc["options"]))
    letter = None if best is None else LETTERS[best]
    return _scored(doc, letter is not None and letter == doc["answer_letter"], letter)


def cloze_doc_to_choice(doc: dict) -> list[str]:
    """The options of a cloze row (`video_qa_cloze.jsonl`): the MC question's options, scored as answer texts."""
    return list(doc["candidates"])


def cloze_doc_to_target(doc: dict) -> int:
    return doc["candidates"].index(doc["answer"])


def cloze_loglikelihood_process_results(doc: dict, results: list) -> dict:
    """Highest-likelihood option text; an unreadable visual is wrong, not the first option."""
    best = _likeliest(results, doc, len(doc["candidates"]))
    option = None if best is None else doc["candidates"][best]
    return _scored(doc, option is not None and option == doc["answer"], option)


def _percent_correct(records: list[dict]) -> float:
    return 100.0 * sum(r["correct"] for r in records) / len(records) if records else math.nan


def aggregate_accuracy(records: list[dict]) -> float:
    return _percent_correct(records)


def aggregate_accuracy_motion(records: list[dict]) -> float:
    return _percent_correct([r for r in records if r["question_type"] == "motion"])


def aggregate_accuracy_appearance(records: list[dict]) -> float:
    return _percent_correct([r for r in records if r["question_type"] == "appearance"])


def aggregate_accuracy_counting(records: list[dict]) -> float:
    return _percent_correct([r for r in records if r["question_type"] == "counting"])
