"""research/vlm_feature_ceiling.py: token layout, a reader that must use the video to answer, and the command."""

import json
import sys
from pathlib import Path

import pytest
import torch
from research_module import load_research_module
from vjepa_vlm.data.synthetic_world import generate_world

from vjepa_vlm import VJEPA2Config, VJEPA2Model

RESEARCH = Path(__file__).parents[1]
torch.set_num_threads(1)

ceiling = load_research_module("vlm_feature_ceiling")
COLOURS = ["red", "green", "blue", "cyan"]


def test_patch_tokens_follow_the_encoders_t_h_w_order():
    # 4 frames, 3 channels, 16 x 16 pixels, patches of 8, tubelets of 2 -> a (2, 2, 2) grid of 2*8*8*3 values.
    pixels = torch.zeros(4, 3, 16, 16)
    pixels[2:4, 1, 8:16, 0:8] = 1.0  # second tubelet, row 1, column 0, green channel only
    tokens = ceiling.patch_tokens(pixels, tubelet=2, patch=8)
    assert tokens.shape == (8, 2 * 8 * 8 * 3)
    lit = tokens.sum(-1).nonzero().flatten().tolist()
    assert lit == [1 * 4 + 1 * 2 + 0]
    assert tokens[6].view(2, 8, 8, 3)[..., 1].eq(1).all() and tokens[6].view(2, 8, 8, 3)[..., [0, 2]].eq(0).all()


def colour_questions(count: int, seed: int) -> tuple[list[dict], torch.Tensor]:
    """Questions whose answer only the clip shows: each clip's tokens carry its colour as a one-hot channel."""
    generator = torch.Generator().manual_seed(seed)
    answers = torch.randint(0, 4, (count,), generator=generator)
    features = torch.randn(count, 6, 8, generator=generator) * 0.1
    features[torch.arange(count), 3, answers] += 3.0
    rows = [{"video": f"v{i}", "question": "What color is the star?", "options": COLOURS,
             "answer": COLOURS[int(a)], "question_type": "appearance", "template": "color"}
            for i, a in enumerate(answers)]
    return rows, features.half()


def test_the_reader_reads_the_answer_from_the_tokens_and_the_blind_reader_cannot():
    rows, features = colour_questions(240, seed=0)
    train, valid, test = rows[:160], rows[160:200], rows[200:]
    index = list(range(240))
    vocab = ceiling.Vocabulary(train)
    kwargs = {"seed": 0, "epochs": 6, "batch_size": 16, "lr": 3e-3, "blocks": 1, "visual_layers": 0}
    seeing = ceiling.train_reader(train, index[:160], valid, index[160:200], test, index[200:], features, vocab,
                                  **kwargs)
    blind = ceiling.train_reader(train, index[:160], valid, index[160:200], test, index[200:], None, vocab, **kwargs)
    assert seeing["best_valid_epoch"]["test"]["all"] >= 0.9
    assert blind["best_valid_epoch"]["test"]["all"] <= 0.5
    assert set(seeing["best_valid_epoch"]["test"]) == {"all", "type:appearance", "template:color"}
    assert len(seeing["history"]) == 6 and seeing["parameters"] > blind["parameters"]


def test_held_out_clips_keep_all_their_questions():
    rows = [{"video": f"v{i // 2}", "q": i} for i in range(40)]
    train, valid = ceiling.split_train(rows, 0.25, seed=0)
    assert len(valid) == 10 and not {r["video"] for r in train} & {r["video"] for r in valid}


def test_the_command_on_a_tiny_world(tmp_path, monkeypatch, capsys):
    world = tmp_path / "world"
    generate_world(world, n_train=8, n_test=4, seed=5)
    encoder = tmp_path / "encoder"
    config = VJEPA2Config.from_preset("vjepa2-tiny", patch_size=8)
    torch.manual_seed(123)  # the command's random encoder is seed 0: another draw of the same architecture
    VJEPA2Model(config).save_pretrained(encoder)
    out = tmp_path / "out"
    argv = ["vlm_feature_ceiling.py", "--world", str(world), "--encoder", str(encoder), "--out", str(out),
            "--epochs", "2", "--seeds", "0", "--features", "encoder", "random", "pixels", "blind"]
    monkeypatch.setattr(sys, "argv", argv)
    ceiling.main()
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"encoder", "random", "pixels", "blind"}
    encoded = torch.load(out / "features_encoder.pt", weights_only=True)["features"]
    pixels = torch.load(out / "features_pixels.pt", weights_only=True)["features"]
    assert encoded.shape[1:] == (128, config.hidden_size) and pixels.shape[1:] == (128, 2 * 8 * 8 * 3)
    random = torch.load(out / "features_random.pt", weights_only=True)["features"]
    assert not torch.equal(random, encoded)
    for runs in results.values():
        run = runs["0"]
        assert 0 <= run["best_valid_epoch"]["test"]["all"] <= 1 and run["args"]["epochs"] == 2
    assert "| blind |" in capsys.readouterr().out
    # A cache encoded for other clips is refused rather than silently reused.
    generate_world(tmp_path / "other", n_train=6, n_test=4, seed=6)
    monkeypatch.setattr(sys, "argv", [*argv[:2], str(tmp_path / "other"), *argv[3:]])
    with pytest.raises(ValueError, match="encoded for other clips"):
        ceiling.main()
