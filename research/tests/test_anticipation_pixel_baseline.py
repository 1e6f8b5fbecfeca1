import importlib.util
import json
from pathlib import Path

import numpy as np

from vjepa_vlm.data.epic_kitchens import read_anticipation_manifest
from vjepa_vlm.data.synthetic_world import generate_world

_spec = importlib.util.spec_from_file_location(
    "anticipation_pixel_baseline", Path(__file__).parents[1] / "anticipation_pixel_baseline.py"
)
baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(baseline)


def test_pixel_baseline_sees_motion_only_where_the_context_moves(tmp_path):
    world = tmp_path / "world"
    generate_world(world, n_train=24, n_test=8, seed=0, frames=32, size=64, fps=8.0,
                   motions=("start", "stop", "bounce"), anticipation_s=0.5)
    segments = read_anticipation_manifest(world / "train" / "anticipation.jsonl", world)
    features = baseline.pixel_features(segments, 0.5, 4, 4.0, 64)
    assert features.shape == (len(segments), 3 * 3 * 256 + 3 * 256)
    motion = np.abs(features[:, : 3 * 3 * 256]).max(1)
    verbs = np.array([s.verb for s in segments])
    start = verbs == min(verbs, key=lambda v: motion[verbs == v].mean())  # "start": still until the event
    assert start.any() and (~start).any()
    assert motion[start].max() < 0.2 < motion[~start].min()  # codec noise vs a moving object

    summary = baseline.main(["--world", str(world), "--times", "0.25", "0.5", "--context-frames", "4",
                             "--output", str(tmp_path / "out.json")])
    assert json.loads((tmp_path / "out.json").read_text()) == summary
    assert set(summary["recall"]) == {"0.25", "0.5"}
    for scores in summary["recall"].values():
        assert set(scores) == {f"{t}_recall@{k}" for t in ("verb", "noun", "action") for k in (1, 5)}
        assert all(0 <= value <= 1 for value in scores.values())
        assert scores["verb_recall@5"] == 1.0  # three verbs: any top 5 holds them all
