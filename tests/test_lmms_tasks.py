"""Scoring of the local `vjepa_synth_*` tasks and the YAMLs that point them at a world directory."""

import json
import math

import pytest
from lmms_eval.api.instance import unwrap_generation_output
from lmms_eval.utils import load_yaml_config
from lmms_helpers import load_task_utils

from vjepa_vlm.eval.local_tasks import LOCAL_TASKS, write_task_configs

utils = load_task_utils()
MC_DOC = {
    "id": "test-0-q0", "question_type": "motion", "format": "mc", "answer": "Something getting smaller",
    "options": ["Moving something left", "Something getting smaller", "Something getting bigger", "Moving something up"],
    "answer_letter": "B", "video": "videos/test/000000.mp4",
    "conversations": [{"from": "human", "value": "<video>\nWhich action?\nA. x\nB. y\nAnswer with the letter."}, {"from": "gpt", "value": "B"}],
}
OPEN_DOC = {"id": "test-0-q3", "question_type": "counting", "format": "open", "answer": "3", "image": "images/test/000000.png"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("The Three.", "3"), ("  counter-clockwise ", "counter clockwise"), ("a Red, circle!", "red circle"), ("", "")],
)
def test_normalize_answer(text, expected):
    assert utils.normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("response", "letter"),
    [("B", "B"), ("(B) smaller", "B"), ("B. Something", "B"), ("The answer is B", "B"), ("something getting smaller.", "B"),
     ("E", None), ("I am not sure", None), ("", None)],
)
def test_extract_letter(response, letter):
    assert utils.extract_letter(response, MC_DOC["options"]) == letter


def test_mc_and_open_scoring_by_question_type():
    right, wrong = utils.mc_process_results(MC_DOC, ["B"]), utils.mc_process_results(MC_DOC, ["A"])
    assert set(right) == {"accuracy", "accuracy_motion", "accuracy_appearance", "accuracy_counting"}
    assert right["accuracy"]["correct"] and not wrong["accuracy"]["correct"]
    open_right = utils.image_process_results(OPEN_DOC, ["three"])
    assert set(open_right) == {"accuracy", "accuracy_appearance", "accuracy_counting"} and open_right["accuracy"]["correct"]
    records = [right["accuracy"], wrong["accuracy"], open_right["accuracy"]]
    assert utils.aggregate_accuracy(records) == pytest.approx(200 / 3)
    assert utils.aggregate_accuracy_motion(records) == 50.0
    assert utils.aggregate_accuracy_counting(records) == 100.0
    assert math.isnan(utils.aggregate_accuracy_appearance(records))


def as_lmms_eval_passes_them(scores: list[tuple[float, bool]]) -> list:
    """The responses `process_results` receives for the model's `(log_likelihood, is_greedy)` answers: lmms-eval
    unwraps each answer (its 0.7.3 `unwrap_generation_output` turns a tuple into its text) and its default
    `take_first` filter keeps the first response of each option."""
    return [unwrap_generation_output(score)[0] for score in scores]


@pytest.mark.parametrize("passed", [as_lmms_eval_passes_them, list], ids=["as lmms-eval passes them", "raw tuples"])
def test_loglikelihood_scoring_picks_the_likeliest_option_as_lmms_eval_passes_it(passed):
    # Text comparison of '(-10.5, False)' > '(-2.25, True)' would pick A, the least likely option.
    scores = [(-10.5, False), (-2.25, True), (-3.0, False), (-11.0, False)]
    scored = utils.mc_loglikelihood_process_results(MC_DOC, passed(scores))
    assert scored["accuracy"]["prediction"] == "B" and scored["accuracy"]["correct"]
    unreadable = utils.mc_loglikelihood_process_results(MC_DOC, passed([(-math.inf, False)] * 4))
    assert unreadable["accuracy"]["prediction"] is None and not unreadable["accuracy"]["correct"]


@pytest.mark.parametrize(
    ("responses", "message"),
    [(["(-1.0, False)", "oops", "(-2.0, False)", "(-3.0, False)"], r"doc 'test-0-q0': cannot read a log-likelihood from the response 'oops'"),
     ([(-1.0, False), None, (-2.0, False), (-3.0, False)], "cannot read a log-likelihood from the response None"),
     (["(nan, False)", "(-1.0, False)", "(-2.0, False)", "(-3.0, False)"], "log-likelihood is NaN"),
     (["(-1.0, False)"] * 3, "3 responses for 4 options")],
)
def test_unreadable_loglikelihood_response_is_an_error_naming_the_doc(responses, message):
    with pytest.raises(ValueError, match=message):
        utils.mc_loglikelihood_process_results(MC_DOC, responses)


def test_loglikelihood_scoring_treats_unreadable_visual_as_wrong():
    assert utils.mc_loglikelihood_process_results(MC_DOC, [(-3.0, False), (-1.0, True), (-2.0, False), (-5.0, False)])["accuracy"]["correct"]
    unreadable = [(-math.inf, False)] * 4
    assert not utils.mc_loglikelihood_process_results(MC_DOC, unreadable)["accuracy"]["correct"]


def test_cloze_scoring_picks_the_likeliest_option_text():
    doc = {**MC_DOC, "format": "cloze", "candidates": MC_DOC["options"],
           "conversations": [{"from": "human", "value": "<video>\nWhich action?\nAnswer briefly."},
                             {"from": "gpt", "value": MC_DOC["answer"]}]}
    assert utils.doc_to_text(doc) == "Which action?\nAnswer briefly."
    assert utils.cloze_doc_to_choice(doc) == MC_DOC["options"] and utils.cloze_doc_to_target(doc) == 1
    scored = utils.cloze_loglikelihood_process_results(doc, [(-3.0, False), (-1.0, True), (-2.0, False), (-5.0, False)])
    assert scored["accuracy"]["correct"] and scored["accuracy"]["prediction"] == "Something getting smaller"
    wrong = utils.cloze_loglikelihood_process_results(doc, [(-3.0, False), (-4.0, True), (-2.0, False), (-5.0, False)])
    assert not wrong["accuracy"]["correct"] and wrong["accuracy"]["prediction"] == "Something getting bigger"
    unreadable = utils.cloze_loglikelihood_process_results(doc, [(-math.inf, False)] * 4)
    assert not unreadable["accuracy"]["correct"] and unreadable["accuracy"]["prediction"] is None


def test_prompt_is_the_training_prompt_without_placeholder():
    assert utils.doc_to_text(MC_DOC) == "Which action?\nA. x\nB. y\nAnswer with the letter."
    assert utils.mc_doc_to_choice(MC_DOC) == ["A", "B", "C", "D"] and utils.mc_doc_to_target(MC_DOC) == 1
    assert utils.qa_doc_to_target(MC_DOC) == "B" and utils.qa_doc_to_target(OPEN_DOC) == "3"
    assert utils.video_doc_to_visual(MC_DOC, {"world_dir": "/data/world"}) == ["/data/world/videos/test/000000.mp4"]
    with pytest.raises(KeyError, match="world_dir"):
        utils.video_doc_to_visual(MC_DOC, None)


def test_task_configs_point_at_the_world(tmp_path):
    with pytest.raises(FileNotFoundError, match="world_dir='.*nowhere' has no test/video_qa.jsonl"):
        write_task_configs(tmp_path / "nowhere", tmp_path / "tasks")
    world = tmp_path / "world"
    (world / "test").mkdir(parents=True)
    for name in ("video_qa.jsonl", "video_qa_cloze.jsonl", "image_qa.jsonl"):
        (world / "test" / name).write_text(json.dumps(MC_DOC) + "\n")
    out = write_task_configs(world, tmp_path / "tasks", cache_dir=tmp_path / "cache")
    assert sorted(p.stem for p in out.glob("*.yaml")) == sorted(LOCAL_TASKS)
    for task in LOCAL_TASKS:
        config = load_yaml_config(str(out / f"{task}.yaml"), mode="full")
        assert config["task"] == task and config["tag"] == "vjepa_synth"
        assert config["dataset_kwargs"]["data_dir"] == str(world.resolve())
        assert config["lmms_eval_specific_kwargs"]["default"]["world_dir"] == str(world.resolve())
        assert callable(config["process_results"]) and callable(config["doc_to_visual"])
