"""vjepa-anticipation's `--predictor-mask-index`: which mask token the predicted slice reads, and the warning when
pretraining never trained it (a recipe with one mask config trains token 0 only; the reference reads token 1)."""

import json

import pytest
import torch

from vjepa_vlm import VJEPA2Config, VJEPA2Model
from vjepa_vlm.data.synthetic_world import generate_world
from vjepa_vlm.modeling_vjepa2_anticipation import VJEPA2ForActionAnticipation
from vjepa_vlm.scripts import run_anticipation

TINY = {
    "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "patch_size": 16, "pred_hidden_size": 32,
    "pred_num_attention_heads": 4, "pred_num_hidden_layers": 1, "pred_num_mask_tokens": 2,
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A world and a predictor whose pretraining had one mask config: token 0 moved, token 1 still zero."""
    root = tmp_path_factory.mktemp("mask_token")
    generate_world(root / "world", n_train=16, n_test=4, seed=0, frames=32, size=64, fps=8.0,
                   motions=("bounce", "start", "stop", "push", "collide"), anticipation_s=0.5)
    torch.manual_seed(0)
    model = VJEPA2Model(VJEPA2Config(**TINY))
    with torch.no_grad():
        model.predictor.embeddings.mask_tokens[0].normal_()
    model.save_pretrained(root / "encoder")
    return root


def _run(root, name, *extra):
    argv = [
        "--encoder", str(root / "encoder"), "--world", str(root / "world"), "--features", "both", "--seeds", "0",
        "--train-draws", "1", "--val-fraction", "0.25", "--eval-times", "1.0", "--context-frames", "4", "--fps", "4",
        "--max-frames", "12", "--resolution", "32", "--num-blocks", "1", "--num-heads", "4", "--epochs", "1",
        "--batch-size", "8", "--learning-rates", "1e-3", "--weight-decays", "0.01",
        "--output", str(root / f"{name}.json"), "--save-model", str(root / name), *extra,
    ]
    return run_anticipation.main(argv)


def test_an_untrained_mask_token_is_reported_and_a_trained_one_can_be_chosen(setup, capsys):
    default = _run(setup, "default")
    assert "warning: mask token 1" in capsys.readouterr().out
    assert default["predictor_mask_index"] == 1 and default["predictor_mask_token_untrained"] is True

    chosen = _run(setup, "token0", "--predictor-mask-index", "0")
    assert "warning" not in capsys.readouterr().out
    assert chosen["predictor_mask_token_untrained"] is False
    assert json.loads((setup / "token0.json").read_text())["predictor_mask_index"] == 0
    assert VJEPA2ForActionAnticipation.from_pretrained(setup / "token0").config.predictor_mask_index == 0


def test_a_mask_index_the_predictor_does_not_have_is_refused(setup):
    with pytest.raises(ValueError, match=r"--predictor-mask-index 2: .*predictor has mask tokens 0 to 1"):
        _run(setup, "bad", "--predictor-mask-index", "2")
    assert not (setup / "bad.json").exists()
