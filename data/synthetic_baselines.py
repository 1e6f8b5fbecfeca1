"""Reference baselines of the synthetic world, the floor that learned models are read against.

QA (test split): chance, majority answer per question template, and two blind text-only answerers (no
video): one predicts the answer (the letter, for multiple choice) from bag-of-words of the question and
options; the other scores each option of a multiple-choice question, so it also learns which answers are
common for a question (a blind floor for models that pick an option by its text, such as option-likelihood
scoring). Motion classes: the same classifier
family on raw downsampled pixels of the middle frame only vs several frames, which measures how much the
task needs time.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from vjepa_vlm.data.manifests import dataset_root, read_jsonl
from vjepa_vlm.data.video_io import read_video, sample_frame_indices


def _target(row: dict) -> str:
    return row["answer_letter"] if row["format"] == "mc" else row["answer"]


def _accuracy_by_type(rows: list[dict], correct: list[bool]) -> dict[str, float]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for row, ok in zip(rows, correct):
        groups["all"].append(ok)
        groups[row["question_type"]].append(ok)
        groups[f"format={row['format']}"].append(ok)
    return {name: float(np.mean(values)) for name, values in sorted(groups.items())}


def chance_accuracy(rows: list[dict]) -> dict[str, float]:
    """Expected accuracy of a uniform guess among the options (mc) or valid answers (open)."""
    probabilities = [1.0 / len(row["options"] if row["format"] == "mc" else row["candidates"]) for row in rows]
    groups: dict[str, list[float]] = defaultdict(list)
    for row, p in zip(rows, probabilities):
        for name in ("all", row["question_type"], f"format={row['format']}"):
            groups[name].append(p)
    return {name: float(np.mean(values)) for name, values in sorted(groups.items())}


def majority_accuracy(train: list[dict], test: list[dict]) -> dict[str, float]:
    """Always answer the most frequent train answer of the question's (template, format)."""
    counts: dict[tuple, Counter] = defaultdict(Counter)
    for row in train:
        counts[(row["template"], row["format"])][_target(row)] += 1
    overall = {fmt: Counter(_target(r) for r in train if r["format"] == fmt) for fmt in ("mc", "open")}
    correct = []
    for row in test:
        counter = counts.get((row["template"], row["format"])) or overall[row["format"]]
        correct.append(bool(counter) and counter.most_common(1)[0][0] == _target(row))
    return _accuracy_by_type(test, correct)


def _question_text(row: dict) -> str:
    return " ".join([row["question"], *(row.get("options") or [])])


def blind_accuracy(train: list[dict], test: list[dict]) -> dict[str, float]:
    """Logistic regression from the question's words (and options' words) to the answer, one model per format."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    predictions: dict[int, str] = {}
    for fmt in ("mc", "open"):
        train_rows = [r for r in train if r["format"] == fmt]
        test_index = [i for i, r in enumerate(test) if r["format"] == fmt]
        if not test_index:
            continue
        targets = [_target(r) for r in train_rows]
        if len(set(targets)) < 2:
            guess = targets[0] if targets else ""
            predictions.update({i: guess for i in test_index})
            continue
        model = make_pipeline(CountVectorizer(ngram_range=(1, 2)), LogisticRegression(max_iter=2000))
        model.fit([_question_text(r) for r in train_rows], targets)
        guesses = model.predict([_question_text(test[i]) for i in test_index])
        predictions.update(dict(zip(test_index, guesses)))
    return _accuracy_by_type(test, [predictions[i] == _target(row) for i, row in enumerate(test)])


def _option_features(row: dict, option: str) -> str:
    """The question's words, the option's words, and the option as one token tied to the question template."""
    words = re.sub(r"\W+", "_", option)
    return " ".join([row["question"], *(f"option_{w}" for w in re.findall(r"\w+", option)), f"{row['template']}_is_{words}"])


def blind_option_accuracy(train: list[dict], test: list[dict]) -> dict[str, float]:
    """Multiple-choice rows only: logistic regression on (question, option) says whether the option is the answer;
    the highest-scoring option of each test question is the guess. Unlike `blind_accuracy` it learns answer
    priors by content (the number of moving objects is usually "1"), as any model scoring an option's text does.
    """
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    train_rows, test_rows = ([r for r in rows if r["format"] == "mc"] for rows in (train, test))
    pairs = [(r, o) for r in train_rows for o in r["options"]]
    model = make_pipeline(CountVectorizer(ngram_range=(1, 2)), LogisticRegression(max_iter=2000))
    model.fit([_option_features(r, o) for r, o in pairs], [o == r["answer"] for r, o in pairs])
    correct = []
    for row in test_rows:
        scores = model.predict_proba([_option_features(row, o) for o in row["options"]])[:, 1]
        correct.append(row["options"][int(np.argmax(scores))] == row["answer"])
    return _accuracy_by_type(test_rows, correct)


def qa_baselines(train_manifest: str | Path, test_manifest: str | Path) -> dict[str, dict[str, float]]:
    """Chance, majority and blind accuracies on a QA manifest pair (video_qa.jsonl or image_qa.jsonl)."""
    train, test = read_jsonl(train_manifest), read_jsonl(test_manifest)
    return {"chance": chance_accuracy(test), "majority": majority_accuracy(train, test), "blind text-only": blind_accuracy(train, test),
            "blind option scorer (mc)": blind_option_accuracy(train, test)}


def pixel_features(frames: np.ndarray, num_frames: int, resolution: int) -> np.ndarray:
    """Raw pixels of `num_frames` uniformly sampled frames (the middle one when 1), box-downsampled."""
    indices = [len(frames) // 2] if num_frames == 1 else sample_frame_indices(len(frames), num_frames)
    factor = frames.shape[1] // resolution
    cropped = frames[indices, : resolution * factor, : resolution * factor]
    pooled = cropped.reshape(len(indices), resolution, factor, resolution, factor, frames.shape[-1]).mean(axis=(2, 4))
    return (pooled / 255.0).astype(np.float32).ravel()


def _features(root: Path, rows: list[dict], frame_counts: tuple[int, ...], resolution: int) -> dict[int, np.ndarray]:
    """Features per frame count, decoding each video once."""
    features: dict[int, list[np.ndarray]] = {count: [] for count in frame_counts}
    for row in rows:
        frames = read_video(root / row["video"])
        for count in frame_counts:
            features[count].append(pixel_features(frames, count, resolution))
    return {count: np.stack(values) for count, values in features.items()}


def motion_pixel_baselines(train_manifest: str | Path, test_manifest: str | Path, *, frame_counts: tuple[int, ...] = (1, 8), resolution: int = 16) -> dict[str, dict[str, float]]:
    """Test accuracy of logistic regression on raw pixels of 1 (middle) frame vs several frames.

    Test accuracy is also split into clips whose main-object triple was held out of train ("compositional")
    and the rest, read from the sibling clips.jsonl.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_rows, test_rows = read_jsonl(train_manifest), read_jsonl(test_manifest)
    root = dataset_root(train_manifest)
    clips = {r["video"]: r for r in read_jsonl(Path(test_manifest).parent / "clips.jsonl")}
    compositional = np.array([clips[r["video"]]["compositional"] for r in test_rows])
    y_train = np.array([r["label"] for r in train_rows])
    y_test = np.array([r["label"] for r in test_rows])
    train_features = _features(root, train_rows, frame_counts, resolution)
    test_features = _features(root, test_rows, frame_counts, resolution)
    results = {}
    for count in frame_counts:
        x_train, x_test = train_features[count], test_features[count]
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=0.05))
        model.fit(x_train, y_train)
        correct = model.predict(x_test) == y_test
        name = "middle frame" if count == 1 else f"{count} frames"
        results[name] = {
            "all": float(correct.mean()),
            "in-distribution": float(correct[~compositional].mean()) if (~compositional).any() else float("nan"),
            "compositional": float(correct[compositional].mean()) if compositional.any() else float("nan"),
        }
    majority = Counter(y_train.tolist()).most_common(1)[0][0]
    results["majority class"] = {"all": float((y_test == majority).mean())}
    return results
