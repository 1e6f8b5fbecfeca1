
import torch
from research_module import load_research_module

torch.set_num_threads(1)

diag = load_research_module("diagnose_probe_features")


def test_moving_token_mask_marks_only_the_tokens_a_square_moves_through():
    clips = torch.zeros(1, 4, 3, 16, 16)  # 2 tubelets of 2 frames, 2x2 grid of 8-pixel patches
    clips[0, :2, :, :8, :8] = 2.0  # square top-left in tubelet 0
    clips[0, 2:, :, :8, 8:] = 2.0  # then top-right in tubelet 1
    mask = diag.moving_token_mask(clips, tubelet=2, patch=8).view(2, 2, 2)
    expected = torch.zeros(2, 2, 2)
    expected[:, 0, :] = 1.0  # both top tokens change between the tubelets, in both tubelets
    assert torch.equal(mask, expected)


def test_position_accuracy_reads_a_coordinate_only_when_features_carry_it():
    grid = (2, 2, 2)
    index = torch.arange(8)
    t = (index // 4).float()
    torch.manual_seed(0)
    features = torch.randn(40, 8, 4) * 0.01
    features[..., 0] += t  # time encoded, h and w not
    accuracy = diag.position_accuracy(features, grid, num_train=30)
    assert accuracy["position_t"] == 1.0
    assert accuracy["position_h"] < 0.8 and accuracy["position_w"] < 0.8


def test_bag_of_tokens_averages_the_masked_tokens():
    features = torch.arange(6.0).view(1, 3, 2)
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    assert torch.equal(diag.bag_of_tokens(features, mask), torch.tensor([[2.0, 3.0]]))


def test_object_token_auc_is_high_only_when_features_flag_the_moving_tokens():
    torch.manual_seed(0)
    moving = (torch.rand(40, 16) < 0.2).float()
    noise = torch.randn(40, 16, 4)
    flagged = noise.clone()
    flagged[..., 0] += 3 * moving
    assert diag.object_token_auc(flagged, moving, num_train=30) > 0.9
    assert abs(diag.object_token_auc(noise, moving, num_train=30) - 0.5) < 0.15
