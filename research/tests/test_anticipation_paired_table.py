import json

import pytest
from research_module import load_research_module

table = load_research_module("anticipation_paired_table")


def result(path, seeds, encoder, both):
    """A run_anticipation-shaped JSON: per seed, verb@1 = action@5 = the given value at 1 s."""
    def best(value):
        return {f"test@1s_{m}": value for m in table.METRICS}
    features = {name: {"seeds": [{"seed": s, "best": best(v)} for s, v in zip(seeds, values)]}
                for name, values in (("encoder", encoder), ("both", both))}
    path.write_text(json.dumps({"complete": True, "features": features}))
    return path


def test_files_of_different_seeds_merge_and_differences_pair_by_seed(tmp_path):
    first = result(tmp_path / "a.json", [0, 1], [0.50, 0.40], [0.52, 0.41])
    second = result(tmp_path / "b.json", [2, 3], [0.45, 0.60], [0.44, 0.63])
    rows = table.merge_seeds([first, second])
    assert sorted(rows["both"]) == [0, 1, 2, 3]
    d = table.paired(rows["both"], rows["encoder"], "test@1s_verb_recall@1")
    assert d["diffs"] == pytest.approx([2.0, 1.0, -1.0, 3.0])
    assert d["mean"] == pytest.approx(1.25) and d["positive"] == 3
    assert d["sem"] == pytest.approx(d["std"] / 2) and d["t"] == pytest.approx(1.25 / d["sem"])
    text = table.main([str(first), str(second), "--times", "1"])
    assert "| both | 4 | 1 | 50.0 ± 9.8 /" in text and "+2.0, +1.0, -1.0, +3.0 | +1.2 ± 1.7 | 0.9 | 1.5 | 3 of 4 |" in text


def test_base_row_from_other_files_pairs_two_settings_by_seed(tmp_path):
    late = result(tmp_path / "late.json", [0, 1, 2], [0.50, 0.40, 0.45], [0.55, 0.46, 0.47])
    early = result(tmp_path / "early.json", [0, 1, 2], [0.50, 0.40, 0.45], [0.51, 0.40, 0.47])
    text = table.main([str(late), "--times", "1", "--minus", "both", "both", "--base-results", str(early)])
    assert "| both - both (base files) |" in text and "| verb_recall@1 | 1 | +4.0, +6.0, +0.0 |" in text


def test_a_seed_in_two_files_is_refused(tmp_path):
    first = result(tmp_path / "a.json", [0, 1], [0.5, 0.4], [0.5, 0.4])
    second = result(tmp_path / "b.json", [1, 2], [0.5, 0.4], [0.5, 0.4])
    with pytest.raises(ValueError, match="seed 1 of the encoder row"):
        table.merge_seeds([first, second])


def test_heads_table_averages_each_sweep_head_over_seeds(tmp_path):
    def head(lr, value):
        return {"lr": lr, "weight_decay": 0.4, **{f"{split}_{m}": value for split in ("val", "test@1s")
                                                  for m in table.METRICS}}
    seeds = [{"seed": s, "heads": [head(3e-3, v), head(1e-2, 0.3)], "best": {}} for s, v in ((0, 0.5), (1, 0.7))]
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"complete": True, "features": {"encoder": {"seeds": seeds}}}))
    lines = table.main([str(path), "--heads", "--times", "1"]).splitlines()
    assert lines[2] == "| encoder | 0.003 | 0.4 | 2 | " + " / ".join(["60.0 ± 14.1"] * 3) + " | " \
        + " / ".join(["60.0 ± 14.1"] * 3) + " |"
    assert lines[3].startswith("| encoder | 0.01 | 0.4 | 2 | 30.0 ± 0.0 /")
