import runpy
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"


def test_demo_encodes_a_generated_clip(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["demo.py", "--world", str(tmp_path / "world"), "--frames", "8"])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    printed = capsys.readouterr().out
    assert "generated 12 clips" in printed
    assert "pixel_values (1, 8, 3, 64, 64)" in printed
    assert "last_hidden_state (1, 64, 96)" in printed  # 4 x 4 x 4 tubelets of the tiny preset's width
    assert "masked encoder (10% context): (1, 6, 96)" in printed
    assert "predictor: (1, 58, 96)" in printed
