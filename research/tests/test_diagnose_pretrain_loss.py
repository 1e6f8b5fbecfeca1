
import torch
from research_module import load_research_module

from vjepa_vlm import VJEPA2Config, VJEPA2Model

torch.set_num_threads(1)

diag = load_research_module("diagnose_pretrain_loss")


def test_loss_split_separates_moving_from_static_target_tokens(tmp_path):
    config = VJEPA2Config.from_preset("vjepa2-tiny", patch_size=8, hidden_size=48, num_hidden_layers=2, pred_hidden_size=24)
    torch.manual_seed(0)
    for name in ("online", "target"):
        VJEPA2Model(config).save_pretrained(tmp_path / name)
    clips = torch.zeros(4, 8, 3, 64, 64)
    for t in range(8):  # a bright square crossing the frame: a few moving tokens over a static background
        clips[:, t, :, 8:24, 4 * t : 4 * t + 16] = 2.0
    result = diag.loss_split(tmp_path, clips)
    assert 0.0 < result["moving_token_fraction"] < 0.5
    assert result["l1_moving"] > 0 and result["l1_static"] > 0
    expected_share = result["moving_token_fraction"] * result["l1_moving"] / (
        result["moving_token_fraction"] * result["l1_moving"] + (1 - result["moving_token_fraction"]) * result["l1_static"]
    )
    assert abs(result["moving_share_of_loss"] - expected_share) < 1e-4
