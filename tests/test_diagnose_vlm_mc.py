"""scripts/diagnose_vlm_mc.py runs end to end on a tiny world and its "another clip's video" is another clip's."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from vjepa_vlm.data.manifests import read_jsonl
from vjepa_vlm.data.synthetic_world import generate_world

SCRIPTS = Path(__file__).parents[1] / "scripts"
torch.set_num_threads(1)
sys.path.insert(0, str(SCRIPTS))  # the harness imports the pipeline's scoring helpers from scripts/vlm_pipeline.py
spec = importlib.util.spec_from_file_location("diagnose_vlm_mc", SCRIPTS / "diagnose_vlm_mc.py")
harness = importlib.util.module_from_spec(spec)
spec.loader.exec_module(harness)


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
