"""research/diagnose_vlm_mc.py runs end to end on a tiny world and its "another clip's video" is another clip's."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from research_module import load_research_module
from vjepa_vlm.data.manifests import read_jsonl
from vjepa_vlm.data.synthetic_world import generate_world

RESEARCH = Path(__file__).parents[1]
torch.set_num_threads(1)
harness = load_research_module("diagnose_vlm_mc")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("worlds") / "world"
    generate_world(out, n_train=8, n_test=6, seed=3)
    return out


def test_one_evaluation_has_every_metric_and_they_are_finite(world, capsys):
    results = harness.main(["--world", str(world), "--steps", "2", "--eval_every", "2", "--bs", "4",
                            "--mc_perms", "2", "--text_mc", "1", "--mc_open", "1", "--warmup_steps", "2"])
    assert [r["phase"] for r in results] == ["text", "main"]
    metrics = results[1]
    assert set(metrics) == {"phase", "step", "mc_acc", "predicted", "letter_nll_right", "letter_nll_swapped",
                            "mc_cloze_acc_right", "mc_cloze_acc_swapped", "caption_loss_right",
                            "caption_loss_swapped", "open_acc_right", "open_acc_swapped", "hint_mc_acc"}
    assert metrics["step"] == 2
    assert "all" in metrics["mc_acc"] and "all" in metrics["open_acc_right"]
    numbers = [metrics[k] for k in ("letter_nll_right", "letter_nll_swapped", "caption_loss_right",
                                    "caption_loss_swapped", "hint_mc_acc")]
    numbers += [*metrics["mc_acc"].values(), *metrics["open_acc_right"].values(), *metrics["open_acc_swapped"].values(),
                *metrics["mc_cloze_acc_right"].values()]
    assert all(math.isfinite(x) for x in numbers)
    assert all(0 <= v <= 100 for v in metrics["mc_acc"].values())
    # Every MC question got one predicted letter.
    questions = [r for r in read_jsonl(world / "test" / "video_qa.jsonl") if r["format"] == "mc"]
    assert sum(metrics["predicted"]) == len(questions)
    # The video reaches the LLM: the same captions scored with other clips' videos get another loss.
    assert metrics["caption_loss_right"] != metrics["caption_loss_swapped"]
    out = capsys.readouterr().out
    assert "EVAL step 2: acc {" in out and "caption loss right" in out and "open-candidate acc (swapped video)" in out
    assert "text-only phase:" in out and "MC cloze acc (right video)" in out


def test_swapped_evaluation_uses_another_clip_for_every_row(world):
    args = harness.parse_args(["--world", str(world)])
    tokenizer = harness.tiny_tokenizer(world, args.vocab)
    _, processor = harness.build_model(args, tokenizer)
    data = harness.evaluation_set(world, processor, harness.row_filter(args, world))
    for right, other in (("mc_videos", "mc_other"), ("open_videos", "open_other"),
                         ("caption_videos", "caption_other")):
        assert len(data[right]) == len(data[other]) > 0
        # Questions of one clip are adjacent in the manifest: a plain rotation would keep the same clip.
        assert all(a != b for a, b in zip(data[right], data[other]))
        assert set(data[other]) <= set(data[right])


compare = load_research_module("compare_vlm_seeds")


def test_a_harness_log_reads_back_as_its_last_evaluation(world, capsys, tmp_path):
    results = harness.main(["--world", str(world), "--steps", "1", "--eval_every", "1", "--bs", "2", "--seed", "5",
                            "--mc_open", "1"])
    log = tmp_path / "run.log"
    log.write_text(capsys.readouterr().out)
    seed, metrics = compare.read_log(log)
    assert seed == 5
    for video in ("right", "swapped"):
        expected = results[-1][f"mc_cloze_acc_{video}"]
        assert set(expected) == {m.split("/")[1] for m in metrics if m.startswith(video)}
        assert all(metrics[f"{video}/{g}"] == pytest.approx(v, abs=0.05) for g, v in expected.items())
        assert metrics[f"caption_loss/{video}"] == pytest.approx(results[-1][f"caption_loss_{video}"], abs=5e-4)


def _fake_log(path: Path, seed: int, right_all: float, motion: float) -> None:
    path.write_text(f"{{'world': 'w', 'seed': {seed}}}\nmain step 25 loss 1.0\n"
                    f"  MC cloze acc (right video): all {right_all:.1f} motion {motion:.1f}\n"
                    f"  MC cloze acc (swapped video): all 30.0 motion 25.0\n"
                    f"  caption loss right {1 - right_all / 100:.3f} swapped 1.200\n"
                    f"EVAL step 25: acc {{'all': 25.0}}\n")


def test_variants_are_compared_on_the_seeds_both_have(tmp_path, capsys):
    for seed, (a, b) in enumerate([(50.0, 40.0), (45.0, 47.0), (60.0, 52.0)]):
        _fake_log(tmp_path / f"a_s{seed}.log", seed, a, a / 2)
        _fake_log(tmp_path / f"b_s{seed}.log", seed, b, b / 2)
    _fake_log(tmp_path / "a_s9.log", 9, 99.0, 99.0)  # no B run at seed 9: left out
    (tmp_path / "b_s7.log").write_text("{'seed': 7}\nmain step 25 loss 1.0\n")  # still training: left out
    # Still printing its evaluation: left out, not read with half its metrics.
    (tmp_path / "b_s8.log").write_text("{'seed': 8}\n  MC cloze acc (right video): all 50.0 motion 25.0\n")
    summaries = compare.main(["--a", str(tmp_path / "a_*.log"), "--b", str(tmp_path / "b_*.log")])
    assert summaries["right/all"]["mean_diff"] == pytest.approx(16 / 3)
    assert summaries["right/all"]["wins"] == 2
    assert summaries["right/motion"]["mean_diff"] == pytest.approx(8 / 3)
    assert summaries["swapped/all"]["mean_diff"] == 0 and summaries["swapped/all"]["ties"] == 3
    # A lower loss is a win: the loss here falls as the accuracy rises, so A wins the same seeds.
    assert summaries["caption_loss/right"]["mean_diff"] == pytest.approx(-16 / 300, abs=1e-6)
    assert summaries["caption_loss/right"]["wins"] == 2
    out = capsys.readouterr()
    assert "seeds [0, 1, 2]" in out.out
    assert "b_s7.log: no finished evaluation yet" in out.err and "b_s8.log" in out.err


def test_the_harness_runs_as_a_script_from_a_checkout():
    # As a script, research/ is on sys.path, not the repository: the pipeline helpers must come from the package.
    result = subprocess.run([sys.executable, str(RESEARCH / "diagnose_vlm_mc.py"), "--help"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "--feature_layer" in result.stdout
