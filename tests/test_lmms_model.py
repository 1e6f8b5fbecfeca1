"""The lmms-eval model `vjepa2_vlm` on a tiny random checkpoint: arguments, requests, batching, unreadable visuals."""

import math

import numpy as np
import pytest
import torch
from lmms_eval.models import get_model
from lmms_helpers import build_tiny_checkpoint, load_task_utils, make_request, visual_of, write_random_video
from PIL import Image

from vjepa_vlm.data.video_io import VideoDecodeError, load_video_frames
from vjepa_vlm.eval.lmms_model import LmmsModelArgs, VJEPA2VLMLmms, truncate_at_stop
from vjepa_vlm.scripts import vlm_pipeline

torch.set_num_threads(2)
TASK, SPLIT = "toy", "test"
GREEDY = {"max_new_tokens": 5, "until": ["\n\n"], "temperature": 0, "do_sample": False}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    image = root / "image.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (24, 40, 3), dtype=np.uint8)).save(image)
    return [
        {"visuals": [str(write_random_video(root / "a.mp4", seed=1))], "q": "What color is the square?"},
        {"visuals": [str(write_random_video(root / "b.mp4", frames=20, seed=2))], "q": "How many objects are there?"},
        {"visuals": [str(image)], "q": "What color?"},
        {"visuals": [str(root / "missing.mp4")], "q": "Does it get bigger?"},
        {"visuals": [], "q": "Answer with the option's letter."},
    ]


def make_lm(checkpoint, docs, **model_args):
    lm = VJEPA2VLMLmms(pretrained=str(checkpoint), num_frames=4, **model_args)
    lm.task_dict = {TASK: {SPLIT: docs}}
    return lm


def generation_requests(docs, ids):
    return [make_request("generate_until", (docs[i]["q"], dict(GREEDY), visual_of, i, TASK, SPLIT), TASK, i) for i in ids]


def test_entry_point_resolves_to_our_class():
    assert get_model("vjepa2_vlm") is VJEPA2VLMLmms


def test_model_arg_typo_is_named(checkpoint):
    with pytest.raises(ValueError, match=r"unknown model arg 'num_frame' \(did you mean 'num_frames'\?\)"):
        VJEPA2VLMLmms(pretrained=str(checkpoint), num_frame=8)


def test_missing_checkpoint_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrained='.*nowhere' is not a checkpoint directory .no config.json"):
        LmmsModelArgs(pretrained=str(tmp_path / "nowhere"))
    (tmp_path / "model_only").mkdir()
    (tmp_path / "model_only" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no processor_config.json"):
        LmmsModelArgs(pretrained=str(tmp_path / "model_only"))


@pytest.mark.parametrize(("field", "value"), [("batch_size", "auto"), ("frame_sampling", "random"), ("dtype", "fp8"), ("num_frames", 0)])
def test_bad_model_arg_values_are_named(checkpoint, field, value):
    with pytest.raises(ValueError, match=field):
        LmmsModelArgs(pretrained=str(checkpoint), **{field: value})


def test_frame_settings_default_to_the_checkpoint_processor(checkpoint):
    lm = VJEPA2VLMLmms(pretrained=str(checkpoint))
    assert (lm.processor.num_frames, lm.processor.frame_sampling) == (4, "uniform")


def test_model_args_win_over_cli_defaults(checkpoint):
    lm = VJEPA2VLMLmms.create_from_arg_string(f"pretrained={checkpoint},batch_size=3,num_frames=8", {"batch_size": "1", "device": None})
    assert (lm.batch_size, lm.processor.num_frames, lm.device.type) == (3, 8, "cpu")
    assert lm.run_settings["frames"] == {"num_frames": 8, "sampling": "uniform", "target_fps": None, "crop_size": 32, "max_image_tiles": 16}


def test_generate_until_batched_equals_one_by_one(checkpoint, docs):
    ids = [0, 1, 2, 4]
    one = make_lm(checkpoint, docs, batch_size=1).generate_until(generation_requests(docs, ids))
    batched = make_lm(checkpoint, docs, batch_size=3, decode_workers=2).generate_until(generation_requests(docs, ids))
    assert batched == one
    assert len(one) == 4 and all(isinstance(answer, str) for answer in one)


def test_missing_video_is_reported_and_scored_wrong(checkpoint, docs):
    lm = make_lm(checkpoint, docs, batch_size=2)
    answers = lm.generate_until(generation_requests(docs, [0, 3, 1]))
    assert answers[1] == "" and len(lm.missing_visuals) == 1
    assert "toy doc 3" in lm.missing_visuals[0] and "missing.mp4" in lm.missing_visuals[0]
    assert answers[0] == make_lm(checkpoint, docs).generate_until(generation_requests(docs, [0]))[0]


def test_every_visual_missing_raises_naming_the_file(checkpoint, docs):
    with pytest.raises(VideoDecodeError, match="missing.mp4"):
        make_lm(checkpoint, docs).generate_until(generation_requests(docs, [3]))


def test_loglikelihood_matches_direct_forward_and_batching(checkpoint, docs):
    continuations = ["A", "B", " red", "C"]
    requests = [make_request("loglikelihood", ("Pick one.", c, visual_of, 0, TASK, SPLIT), TASK, 0) for c in continuations]
    lm = make_lm(checkpoint, docs, batch_size=1)
    scores = lm.loglikelihood(requests)
    lm.args.batch_size = 4
    assert [s[0] for s in lm.loglikelihood(requests)] == pytest.approx([s[0] for s in scores], abs=1e-5)

    frames = lm._video_frames(docs[0]["visuals"][0])
    prompt = lm._prompt("Pick one.", ["video"])
    inputs = lm.processor(text=[prompt], videos=[frames])
    target = lm.tokenizer(" red", add_special_tokens=False)["input_ids"]
    ids = torch.cat([inputs["input_ids"], torch.tensor([target])], dim=1)
    with torch.no_grad():
        logits = lm.model(input_ids=ids, pixel_values_videos=inputs["pixel_values_videos"]).logits[0]
    logprobs = torch.log_softmax(logits.float(), -1)
    start = inputs["input_ids"].shape[1]
    expected = sum(float(logprobs[start - 1 + k, t]) for k, t in enumerate(target))
    assert scores[2][0] == pytest.approx(expected, abs=1e-4)
    # is_greedy: a random tiny model's argmax is often a byte-fallback piece with no text of its own, so the
    # LM head is biased towards "A" to make "A" the greedy continuation and "B" not.
    letter_a = lm.tokenizer("A", add_special_tokens=False)["input_ids"]
    assert len(letter_a) == 1
    bias = torch.zeros(logits.shape[-1])
    bias[letter_a[0]] = 1e4
    hook = lm.model.lm_head.register_forward_hook(lambda module, args, output: output + bias)
    try:
        greedy = lm.loglikelihood([make_request("loglikelihood", ("Pick one.", c, visual_of, 0, TASK, SPLIT), TASK, 0)
                                   for c in ("A", "B")])
    finally:
        hook.remove()
    assert [g[1] for g in greedy] == [True, False]


@pytest.mark.parametrize("form", ["letters", "cloze"])
def test_pipeline_and_lmms_eval_give_the_same_log_likelihoods(checkpoint, docs, form):
    """The pipeline's held-out evaluation and an lmms-eval `multiple_choice` task score one question alike."""
    utils = load_task_utils()
    options = ["Moving something left", "Something getting smaller", "Something getting bigger", "Moving something up"]
    question = "<video>\nWhich action best describes what happens to the red circle?"
    if form == "letters":
        question += "".join(f"\n{letter}. {option}" for letter, option in zip("ABCD", options))
        question += "\nAnswer with the option's letter from the given choices directly."
        options = list(vlm_pipeline.LETTERS)
    row = {"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": options[1]}],
           "visuals": docs[0]["visuals"]}
    lm = make_lm(checkpoint, [row], batch_size=len(options))
    # The requests lmms-eval builds for a `multiple_choice` task with `target_delimiter: ""` (ours).
    requests = [make_request("loglikelihood", (utils.doc_to_text(row), option, visual_of, 0, TASK, SPLIT), TASK, 0) for option in options]
    through_lmms_eval = [score for score, _ in lm.loglikelihood(requests)]
    processor = lm.processor
    frames = load_video_frames(row["visuals"][0], processor.num_frames, processor.frame_sampling, processor.target_fps)
    through_pipeline = vlm_pipeline.option_log_likelihoods(lm.model, processor, row, frames, options).tolist()
    assert through_lmms_eval == through_pipeline and len(set(through_pipeline)) == len(options)


def test_loglikelihood_of_unreadable_visual_is_minus_infinity(checkpoint, docs):
    requests = [make_request("loglikelihood", ("Q", c, visual_of, d, TASK, SPLIT), TASK, d) for d, c in [(3, "A"), (0, "A")]]
    lm = make_lm(checkpoint, docs)
    scores = lm.loglikelihood(requests)
    assert scores[0] == (-math.inf, False) and math.isfinite(scores[1][0])


def test_multi_round_is_a_clear_not_implemented(checkpoint, docs):
    with pytest.raises(NotImplementedError, match="generate_until_multi_round"):
        make_lm(checkpoint, docs).generate_until_multi_round([])


def test_truncate_at_earliest_stop():
    assert truncate_at_stop("B. red\n\nmore", ["\n\n", "."]) == "B"
    assert truncate_at_stop("red", []) == "red"
