import numpy as np
import pytest

from vjepa_vlm.data.manifests import write_jsonl
from vjepa_vlm.data.synthetic_baselines import (blind_accuracy, blind_option_accuracy, chance_accuracy, majority_accuracy,
                                                   motion_pixel_baselines)
from vjepa_vlm.data.synthetic_labels import (
    PARTNERS,
    SceneObjectLabel,
    motion_choice_question,
    motion_open_question,
    video_caption,
)
from vjepa_vlm.data.synthetic_motion import MOTION_CLASSES, MOTION_NAMES, MOTIONS_BY_NAME, sample_motion
from vjepa_vlm.data.synthetic_world import generate_world

OBJECTS = [SceneObjectLabel("triangle", "red", "main", True), SceneObjectLabel("digit 3", "blue", "second", True)]


@pytest.mark.parametrize("motion", MOTION_CLASSES, ids=MOTION_NAMES)
def test_motion_choices_offer_the_time_reversed_partner(motion):
    rng = np.random.default_rng(0)
    for _ in range(5):
        item = motion_choice_question(motion, OBJECTS, MOTION_NAMES, rng)
        assert len(item["options"]) == 4 == len(set(item["options"]))
        assert item["options"]["ABCD".index(item["answer_letter"])] == motion.label
        if motion.name in PARTNERS:
            assert MOTIONS_BY_NAME[PARTNERS[motion.name]].label in item["options"]
    sample = sample_motion(motion.name, 16, 64, (9.0, 6.0), rng)
    open_item = motion_open_question(motion, OBJECTS, sample.facts, rng)
    assert open_item["answer"] in open_item["candidates"] and open_item["question_type"] == "motion"
    caption = video_caption(motion, OBJECTS, sample.facts)
    assert "red triangle" in caption and "{" not in caption and "  " not in caption


def _row(question, answer, fmt="open", template="t", question_type="motion", options=None):
    row = {"question": question, "answer": answer, "format": fmt, "template": template, "question_type": question_type}
    if fmt == "mc":
        row.update(options=options, answer_letter="ABCD"[options.index(answer)])
    else:
        row["candidates"] = ["yes", "no", "maybe", "never"]
    return row


def test_chance_majority_and_blind_baselines_on_known_rows():
    train = [_row("is it hot", "yes"), _row("is it cold", "no")] * 10 + [_row("is it hot", "no")]
    test = [_row("is it hot", "yes"), _row("is it cold", "no"), _row("pick", "b", "mc", "m", "counting", ["a", "b", "c", "d"])]
    chance = chance_accuracy(test)
    assert chance["all"] == pytest.approx(0.25) and chance["format=mc"] == pytest.approx(0.25)
    majority = majority_accuracy(train, test)
    assert majority["format=open"] == pytest.approx(0.5) and majority["counting"] == 0.0
    # The question's words determine the answer here, so a blind model must learn it.
    assert blind_accuracy(train, test)["format=open"] == 1.0


def test_blind_option_scorer_learns_answer_priors_by_content_that_the_letter_classifier_cannot():
    # "How many move?" is answered "1" wherever "1" sits among the options: a prior on the option's text.
    rng = np.random.default_rng(0)

    def shuffled_row():
        options = [str(i) for i in rng.permutation(4)]
        return _row("how many move", "1", "mc", "count_moving", "counting", options)
    train, test = [shuffled_row() for _ in range(200)], [shuffled_row() for _ in range(40)]
    scorer = blind_option_accuracy(train, test)
    assert scorer["all"] == 1.0 and scorer["counting"] == 1.0 and set(scorer) == {"all", "counting", "format=mc"}
    assert blind_accuracy(train, test)["all"] < 0.6
    # Open rows are not its business: only the multiple-choice ones are scored.
    assert blind_option_accuracy(train + [_row("is it hot", "yes")], test + [_row("is it hot", "yes")]) == scorer


def test_motion_pixel_baselines_show_that_direction_needs_time(tmp_path):
    generate_world(tmp_path / "w", n_train=80, n_test=20, seed=0, motions=("move_left", "move_right"), max_objects=1)
    results = motion_pixel_baselines(tmp_path / "w" / "train" / "motion_classification.jsonl", tmp_path / "w" / "test" / "motion_classification.jsonl", frame_counts=(1, 4), resolution=8)
    assert set(results) == {"middle frame", "4 frames", "majority class"}
    # Left vs right: a frame only helps through position priors; four frames show the direction.
    assert results["4 frames"]["all"] >= results["middle frame"]["all"] + 0.15
