"""scripts/vlm_pipeline.py scores the position and the tokens that training supervises (issue 6's "always A")."""

from pathlib import Path

import pytest
import torch

from vjepa_vlm import VJEPA2VLMConfig, VJEPA2VLMProcessor
from vjepa_vlm.data.label_masking import IGNORE_INDEX
from vjepa_vlm.data.synthetic_labels import LETTERS as DATA_LETTERS
from vjepa_vlm.data.tokenizer import train_tiny_tokenizer
from vjepa_vlm.scripts import vlm_pipeline as pipeline

torch.set_num_threads(1)

QUESTION = ("Which action best describes what happens to the blue digit 8?\nA. Moving something down\n"
            "B. Something getting smaller\nC. Moving something up\nD. Something getting bigger\n"
            "Answer with the option's letter from the given choices directly.")


@pytest.fixture(scope="module")
def processor():
    # Captions start with the article "A": the same token as option letter A (why a collapsed model says "A").
    texts = [QUESTION, "A yellow digit 4 pushes the red cross.", "A B C D", " A B C D"]
    tokenizer = train_tiny_tokenizer(texts, 400)
    return VJEPA2VLMProcessor.from_model_config(VJEPA2VLMConfig.from_preset("vjepa2-tiny-qwen2"), tokenizer, num_frames=4)


def test_letters_are_the_pipeline_letters_and_single_tokens(processor):
    assert tuple(pipeline.LETTERS) == tuple(DATA_LETTERS[:4])
    ids = pipeline.letter_token_ids(processor.tokenizer)
    assert len(set(ids)) == 4
    assert ids == [processor.tokenizer.convert_tokens_to_ids(letter) for letter in pipeline.LETTERS]


@pytest.mark.parametrize("answer", ["A", "C"])
def test_the_scored_position_is_the_one_whose_label_is_the_answer_letter(processor, answer):
    row = {"conversations": [{"from": "human", "value": QUESTION}, {"from": "gpt", "value": answer}]}
    prompt_ids = processor(text=[pipeline.multiple_choice_prompt(processor, row)])["input_ids"][0].tolist()
    sample = processor.encode_conversation([{"role": "user", "content": QUESTION},
                                            {"role": "assistant", "content": answer}])
    ids, labels = sample["input_ids"].tolist(), sample["labels"].tolist()
    supervised = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    # The prompt is the training sequence cut right before the first supervised token, which is the letter:
    # the logits at the prompt's last position are exactly what the training loss shaped.
    assert ids[: supervised[0]] == prompt_ids
    letter_ids = pipeline.letter_token_ids(processor.tokenizer)
    assert labels[supervised[0]] == letter_ids[pipeline.LETTERS.index(answer)]
    assert processor.tokenizer.convert_ids_to_tokens([labels[i] for i in supervised]) == [answer, "<|im_end|>"]


@pytest.mark.parametrize("options", [["Something getting smaller", "C", "Moving something up"], list(pipeline.LETTERS)],
                         ids=["option texts, different lengths: padding matters", "letters: one token each"])
def test_option_likelihoods_batched_equal_each_option_scored_alone(processor, tmp_path, options):
    import numpy as np

    from vjepa_vlm import VJEPA2VLMForConditionalGeneration
    from vjepa_vlm.data.video_io import write_video

    torch.manual_seed(0)
    config = VJEPA2VLMConfig.from_preset("vjepa2-tiny-qwen2", text_overrides={"vocab_size": len(processor.tokenizer)})
    model = VJEPA2VLMForConditionalGeneration(config).eval()
    video = tmp_path / "clip.mp4"
    write_video(video, np.random.default_rng(0).integers(0, 255, (16, 64, 64, 3), dtype=np.uint8), fps=8.0)
    row = {"conversations": [{"from": "human", "value": "<video>\nWhat color is the star?"}, {"from": "gpt", "value": "red"}]}
    prompt = pipeline.multiple_choice_prompt(processor, row)
    batched = pipeline.option_log_likelihoods(model, processor, row, str(video), options)
    with torch.no_grad():
        for option, score in zip(options, batched):
            inputs = processor(text=[prompt + option], videos=[str(video)])
            n = len(processor.tokenizer.encode(option, add_special_tokens=False))
            logprobs = model(**inputs).logits[0, :-1].log_softmax(-1)
            targets = inputs["input_ids"][0, 1:]
            alone = logprobs[-n:].gather(-1, targets[-n:, None]).sum()
            torch.testing.assert_close(score, alone, rtol=1e-4, atol=1e-4)
    assert len(set(batched.tolist())) == len(options)


def test_the_control_video_is_always_another_clip():
    # Four questions per clip, adjacent as in the world's manifests.
    rows = [{"video": f"videos/test/{clip:06d}.mp4"} for clip in range(5) for _ in range(4)]
    others = pipeline.other_clip_videos(rows)
    assert all(other != row["video"] for row, other in zip(rows, others))
    assert len(set(others)) == 5  # every clip is used as a control, not one clip for all
    with pytest.raises(ValueError, match="at least two clips"):
        pipeline.other_clip_videos(rows[:4])


@pytest.mark.parametrize("stage", pipeline.STAGES)
def test_stage_data_is_read_from_the_pipeline_world(stage, tmp_path):
    import json

    sources = json.loads(pipeline.world_sources(stage, tmp_path / "world"))
    assert sources
    for source in sources:
        assert Path(source["path"]).parent == tmp_path / "world" / "train"
        assert source["media_root"] == str(tmp_path / "world")


def test_set_options_reach_their_stages_and_bad_ones_name_the_format():
    extra = pipeline.stage_overrides(["3:lora.enabled=true", "all:data.max_length=256"])
    assert extra == {"1": ["data.max_length=256"], "1_5": ["data.max_length=256"], "2": ["data.max_length=256"],
                     "3": ["lora.enabled=true", "data.max_length=256"]}
    for bad in ("4:steps=1", "3:steps"):
        with pytest.raises(SystemExit, match="STAGE:key=value"):
            pipeline.stage_overrides([bad])


@pytest.mark.parametrize("preset", sorted(pipeline.PRESET_PLANS))
def test_every_preset_recipe_reads_the_pipeline_world(preset, tmp_path):
    import json

    for stage, recipe in pipeline.PRESET_PLANS[preset]["recipes"].items():
        sources = json.loads(pipeline.world_sources(stage, tmp_path / "world", recipe))
        assert sources and all(Path(s["path"]).parent == tmp_path / "world" / "train" for s in sources)


@pytest.fixture
def stage_commands(monkeypatch):
    """The stage commands `train_stages` runs, recorded instead of run; each 'run' leaves the output a stage writes."""
    commands = []

    def fake_run(command):
        commands.append(command)
        run_dir = Path(next(arg for arg in command if arg.startswith("checkpoint.dir=")).partition("=")[2])
        (run_dir / "output").mkdir(parents=True)
        (run_dir / "output" / "stage.json").write_text("{}")

    monkeypatch.setattr(pipeline, "run", fake_run)
    return commands


def test_stages_with_zero_steps_are_skipped_and_each_stage_starts_from_the_last_output(stage_commands, tmp_path):
    commands = stage_commands
    final = pipeline.train_stages(tmp_path / "vlm", None, [0, 5, 0, 7], 8, tmp_path / "world", 0,
                                  "vjepa2-tiny-smollm2")
    assert [c[1] for c in commands] == ["vjepa_vlm.train.stage1_5", "vjepa_vlm.train.stage3"]
    assert commands[1][2].endswith("stage3_tiny_smollm2.yaml")
    assert "model.init_from=embedded" in commands[0]
    assert f"model.init_from={tmp_path / 'vlm' / 'stage1_5' / 'output'}" in commands[1]
    assert "steps=7" in commands[1] and "embedded.preset=vjepa2-tiny-smollm2" in commands[1]
    assert final == tmp_path / "vlm" / "stage3" / "output"


def test_the_smollm2_letter_stage_reads_the_hinted_rows_and_hands_over_to_stage_3(stage_commands, tmp_path):
    commands = stage_commands
    pipeline.train_stages(tmp_path / "vlm", None, [0, 0, 5, 7], 8, tmp_path / "world", 0, "vjepa2-tiny-smollm2")
    assert [(c[1], Path(c[2]).name) for c in commands] == [("vjepa_vlm.train.stage2", "stage2_tiny_smollm2.yaml"),
                                                           ("vjepa_vlm.train.stage3", "stage3_tiny_smollm2.yaml")]
    assert "model.init_from=embedded" in commands[0]
    assert f"model.init_from={tmp_path / 'vlm' / 'stage2' / 'output'}" in commands[1]
    assert str(tmp_path / "world" / "train" / "video_qa_hinted.jsonl") in next(
        arg for arg in commands[0] if arg.startswith("data.sources="))


def test_the_verdict_compares_by_letter_with_the_strongest_blind_baseline_and_another_clip():
    rows = {"baseline: chance": {"all": 0.25}, "baseline: blind option scorer": {"all": 0.40},
            "VLM, random encoder: option letter": {"all": 0.60},
            "VLM, random encoder: option likelihood": {"all": 0.90},
            "VLM, random encoder, another clip's video: option letter": {"all": 0.45}}
    line = pipeline.verdict(rows, "random encoder")
    assert "60.0%" in line and "+20.0 points" in line and "blind option scorer, 40.0%" in line
    assert "+15.0 over the same VLM shown another clip's video" in line and "it reads the video" in line
    rows["VLM, random encoder, another clip's video: option letter"] = {"all": 0.55}
    assert "not reached" in pipeline.verdict(rows, "random encoder")


def mc_row(clip: int, number: int, template: str, question_type: str, answer_index: int) -> dict:
    options = ["red", "green", "blue", "yellow"] if question_type == "appearance" else ["1", "2", "3", "4"]
    return {"id": f"test-{clip:06d}-q{number}", "video": f"videos/test/{clip:06d}.mp4", "format": "mc",
            "question": f"{template} question about clip {clip}?", "template": template, "question_type": question_type,
            "options": options, "answer": options[answer_index], "answer_letter": pipeline.LETTERS[answer_index]}


def test_clip_groups_follow_the_worlds_compositional_flag_and_bad_worlds_name_the_file(tmp_path):
    import json

    rows = [mc_row(clip, q, "color", "appearance", 0) for clip in range(3) for q in range(2)]
    with pytest.raises(SystemExit, match="clips.jsonl is missing"):
        pipeline.clip_groups(tmp_path, rows)
    (tmp_path / "test").mkdir()
    clips = [{"video": f"videos/test/{clip:06d}.mp4", "compositional": clip == 1} for clip in range(2)]
    (tmp_path / "test" / "clips.jsonl").write_text("".join(json.dumps(c) + "\n" for c in clips))
    with pytest.raises(SystemExit, match="no entry for 2 questions' videos, e.g. videos/test/000002.mp4"):
        pipeline.clip_groups(tmp_path, rows)
    assert pipeline.clip_groups(tmp_path, rows[:4]) == ["in-distribution"] * 2 + ["compositional"] * 2


def test_baselines_are_scored_on_each_clip_group_and_the_groups_add_up_to_all():
    train = [mc_row(clip, q, template, kind, (clip + q) % 4 if kind == "appearance" else 0)
             for clip in range(40) for q, (template, kind) in enumerate([("color", "appearance"), ("count", "counting")])]
    test = [mc_row(clip, q, template, kind, clip % 4 if kind == "appearance" else clip % 2)
            for clip in range(8) for q, (template, kind) in enumerate([("color", "appearance"), ("count", "counting")])]
    groups = ["compositional" if clip < 3 else "in-distribution" for clip in range(8) for _ in range(2)]
    rows = pipeline.baseline_rows(train, test, groups)
    assert set(rows) == {"baseline: chance", "baseline: majority answer per template",
                         "baseline: blind text-only (question + options, no video)",
                         "baseline: blind option scorer (question + each option, no video)"}
    for name, values in rows.items():
        assert set(values) == {"all", "appearance", "counting", "compositional", "in-distribution"}, name
        weighted = (6 * values["compositional"] + 10 * values["in-distribution"]) / 16
        assert values["all"] == pytest.approx(weighted), name
    # The majority answer of "count" is "1": right on the counting questions of even clips only.
    assert rows["baseline: majority answer per template"]["counting"] == pytest.approx(0.5)
    assert rows["baseline: majority answer per template"]["compositional"] != rows[
        "baseline: majority answer per template"]["in-distribution"]


def test_the_table_shows_the_clip_groups_after_the_question_types_and_before_the_letters():
    rows = {"baseline: chance": {"all": 0.25, "motion": 0.25, "compositional": 0.25, "in-distribution": 0.25},
            "VLM, pretrained encoder: option letter": {"all": 0.5, "appearance": 0.4, "motion": 0.6, "predicted A": 0.9,
                                                       "in-distribution": 0.55, "compositional": 0.45}}
    header, _, chance, vlm = pipeline.results_table(rows).splitlines()
    assert header == ("| model | all | appearance | motion | compositional | in-distribution | predicted A |")
    assert chance == "| baseline: chance | 25.0 |  | 25.0 | 25.0 | 25.0 |  |"
    assert vlm.endswith("| 50.0 | 40.0 | 60.0 | 45.0 | 55.0 | 90.0 |")
