"""research/report_smollm2_runs.py: loss per wall-time window, and the paired encoder table from results files."""

import json

import pytest
from research_module import load_research_module

report = load_research_module("report_smollm2_runs")


def test_windows_average_the_steps_that_ended_in_them_and_the_step_time_skips_the_warm_up(tmp_path):
    elapsed = [10.0, 20.0, 30.0, 32.0, 34.0, 36.0, 70.0]
    rows = [{"step": i + 1, "loss": float(i), "elapsed_s": t, "peak_rss_mib": 1024.0 * (1 + i)}
            for i, t in enumerate(elapsed)]
    assert report.windowed(rows, 30.0) == [(0.0, 0.5, 2), (30.0, 3.5, 4), (60.0, 6.0, 1)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = report.curves([f"a={tmp_path}"], 30.0)
    # Steps 4+ took 2, 2, 2 and 34 seconds: median 2; peak RSS 7 GiB; the last window's loss is step 7's.
    assert "| a | 7 | 70 | 2.00 | 7.00 | 6.000 |" in table
    assert "| 30-60 | 3.500 (4) |" in table
    with pytest.raises(SystemExit, match="NAME=RUN_DIR"):
        report.curves([str(tmp_path)], 30.0)


def pipeline_result(seed: int, pretrained_right: list[bool], random_right: list[bool]) -> dict:
    questions = [{"id": f"q{i}", "question_type": "motion" if i < 2 else "counting",
                  "clips": "compositional" if i % 2 else "in-distribution", "answer_letter": "B", "answer": "up"}
                 for i in range(4)]
    answers = {}
    for encoder, right in (("pretrained", pretrained_right), ("random", random_right)):
        for video in ("", ", another clip's video"):
            answers[f"VLM, {encoder} encoder{video}"] = {"letter": ["B" if r else "A" for r in right],
                                                         "option": ["up" if r else "down" for r in right]}
    return {"seed": seed, "questions": questions, "answers": answers,
            "models": {"pretrained encoder": "p", "random encoder": "r"}}


def test_pairs_pool_the_paired_question_differences_over_seeds(tmp_path):
    paths = []
    for seed, (a, b) in enumerate([([True, True, False, True], [True, False, False, False]),
                                   ([False, True, True, True], [False, True, False, True])]):
        paths.append(tmp_path / f"s{seed}.json")
        paths[-1].write_text(json.dumps(pipeline_result(seed, a, b)))
    lines = report.pairs([str(p) for p in paths]).splitlines()
    row = next(line for line in lines if line.startswith("| option likelihood | all (8) |"))
    # Differences over the 8 question pairs: 0, 1, 0, 1, 0, 0, 1, 0 -> mean 3/8, s.e. sd / sqrt(8).
    assert "75.0 / 25.0 | 75.0 / 50.0 | +37.5 ± 18.3 | 3 / 0 |" in row
    motion = next(line for line in lines if line.startswith("| option letter | motion (4) |"))
    assert "100.0 / 50.0 | 50.0 / 50.0 | +25.0 ± 25.0 | 1 / 0 |" in motion
    assert any(line.startswith("| option letter, another clip's video | compositional (4) |") for line in lines)
    (tmp_path / "old.json").write_text(json.dumps({"seed": 0, "models": {"pretrained encoder": "p"}}))
    with pytest.raises(SystemExit, match="per-question answers of both encoders"):
        report.pairs([str(tmp_path / "old.json")])
