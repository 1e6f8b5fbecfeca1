"""The README's 10-second check: generate a few synthetic clips, encode one with a tiny V-JEPA 2, print shapes
and times.

    python scripts/demo.py [--world runs/demo_world] [--preset vjepa2-tiny]

The world is generated only when `--world` does not exist yet. The encoder has random weights (nothing is
downloaded); pass `--encoder DIR` to use a converted or pretrained checkpoint directory instead.
The full pipeline (pretraining, staged VLM training, evaluation) is `scripts/vlm_pipeline.py`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from vjepa_vlm import VJEPA2Config, VJEPA2Model
from vjepa_vlm.data.manifests import read_jsonl
from vjepa_vlm.data.normalization import normalize_frames
from vjepa_vlm.data.synthetic_world import generate_world
from vjepa_vlm.data.video_io import read_video, sample_frame_indices, video_info

def timed(fn):
    started = time.perf_counter()
    with torch.no_grad():
        result = fn()
    return result, (time.perf_counter() - started) * 1000.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--world", default="runs/demo_world", help="synthetic world directory (generated if absent)")
    parser.add_argument("--preset", default="vjepa2-tiny", help="encoder preset when --encoder is not given")
    parser.add_argument("--encoder", default=None, help="a VJEPA2Model directory (from_pretrained)")
    parser.add_argument("--frames", type=int, default=16, help="frames sampled uniformly from the clip")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    world = Path(args.world)
    if not world.exists():
        summary = generate_world(world, n_train=8, n_test=4, seed=0, frames=16, size=64)
        print(f"generated {sum(summary.num_clips.values())} clips in {world} ({summary.seconds:.1f} s)")
    clip = read_jsonl(world / "test" / "clips.jsonl")[0]
    path = world / clip["video"]
    info = video_info(path)
    frames = read_video(path, sample_frame_indices(info.num_frames, args.frames))
    pixel_values = normalize_frames(frames).unsqueeze(0)
    print(f"clip {clip['id']}: '{clip['caption']}' ({clip['motion_label']})")
    print(f"pixel_values {tuple(pixel_values.shape)}  (B, T, C, H, W)")

    if args.encoder:
        model = VJEPA2Model.from_pretrained(args.encoder).eval()
    else:
        print(f"{args.preset}: random weights (no checkpoint given)")
        model = VJEPA2Model(VJEPA2Config.from_preset(args.preset)).eval()

    full, full_ms = timed(lambda: model.encoder(pixel_values, output_layers=[0, -1]))
    t, h, w = full.grid_size
    print(f"encoder: grid (t, h, w) = {full.grid_size}, last_hidden_state {tuple(full.last_hidden_state.shape)}, "
          f"{len(full.intermediate_hidden_states)} intermediate layers, {full_ms:.1f} ms")

    num_tokens = t * h * w
    order = torch.randperm(num_tokens)
    context = order[: max(1, num_tokens // 10)].sort().values.unsqueeze(0)
    target = order[num_tokens // 10 :].sort().values.unsqueeze(0)
    masked, masked_ms = timed(lambda: model.encoder(pixel_values, context_indices=context))
    print(f"masked encoder (10% context): {tuple(masked.last_hidden_state.shape)}, {masked_ms:.1f} ms")
    predicted, predictor_ms = timed(lambda: model.predictor(masked.last_hidden_state, context, target, full.grid_size))
    print(f"predictor: {tuple(predicted.shape)} target features, {predictor_ms:.1f} ms")

    image = pixel_values[:, args.frames // 2]
    encoded_image, image_ms = timed(lambda: model.encoder(image))
    print(f"image {tuple(image.shape)} -> {tuple(encoded_image.last_hidden_state.shape)}, {image_ms:.1f} ms")


if __name__ == "__main__":
    main()
