"""`scripts/benchmark_planning.py` on the tiny preset: seconds per setting, batched vs one-at-a-time scoring, and the
meta-device FLOP count of a planned action (encode once + samples x iterations one-step predictions)."""

import torch
from vjepa2_oracle import randomize_
from vjepa_vlm.scripts import benchmark_planning

from vjepa_vlm import VJEPA2WorldModel, VJEPA2WorldModelConfig

torch.set_num_threads(1)


def test_benchmark_reports_times_speedup_and_flops(tmp_path):
    randomize_(VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")), seed=0).save_pretrained(tmp_path)
    result = benchmark_planning.main(["--model", str(tmp_path), "--settings", "8x2,4x1", "--repeats", "1",
                                      "--sequential-samples", "4", "--flops-preset", "vjepa2-ac-tiny"])
    assert set(result["seconds_per_action"]) == {"8x2", "4x1"} and all(v > 0 for v in result["seconds_per_action"].values())
    one = result["one_iteration"]
    assert one["samples"] == 4 and one["batched_s"] > 0 and one["one_at_a_time_s"] > 0
    flops = result["paper_flops"]
    assert flops["encode_frame_flops"] > 0 and flops["one_prediction_flops"] > 0
    assert flops["action_flops"] == flops["encode_frame_flops"] + 800 * 10 * flops["one_prediction_flops"]
