"""Curate a pool of raw videos for pretraining by cluster retrieval towards target datasets (appendix A.2).

    vjepa-curate --pool videos/ --targets k710=k710/train.jsonl:0.7 ssv2=ssv2/train.jsonl:0.125 \\
        --encoder runs/pretrain_tiny_motion/checkpoints/step_00001600/target --clusters 1000 --out runs/curated
    accelerate launch scripts/curate.py ...        # scene detection and embedding split across processes

Scenes come from PySceneDetect (under --min-scene-s seconds dropped), each embedded by its middle frame with our
V-JEPA 2 encoder mean-pooled over tokens (--encoder) or any transformers `AutoModel` image encoder (--image-encoder,
a local folder with its image processor). Writes DIR/curated.jsonl (pretraining reads it in `data.sources` with its
per-scene weights), DIR/pool.jsonl (the uncurated scenes) and DIR/report.{json,md} (Table 11); rerunning the same
command resumes from the finished shards in DIR/work. Needs the `curation` extra.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from vjepa_vlm.data.curation import CurationArgs, EmbedFn, curate, parse_target
from vjepa_vlm.data.normalization import frames_to_unit_float, normalize_frames
from vjepa_vlm.data.scene_split import SceneArgs


def vjepa2_embedder(encoder_dir: Path, resolution: int | None, batch_size: int, device: torch.device) -> EmbedFn:
    """Middle frame -> our V-JEPA 2 encoder on the frame as an image -> mean over its tokens."""
    from vjepa_vlm import VJEPA2Model

    if not (encoder_dir / "config.json").is_file():
        raise FileNotFoundError(f"--encoder {encoder_dir} is not a VJEPA2Model folder (no config.json)")
    model = VJEPA2Model.from_pretrained(encoder_dir).to(device).eval()
    side = resolution or model.config.crop_size

    @torch.no_grad()
    def embed(frames: list[np.ndarray]) -> np.ndarray:
        out = []
        for start in range(0, len(frames), batch_size):
            images = torch.cat([
                F.interpolate(frames_to_unit_float(frame[None]), size=(side, side), mode="bilinear", antialias=True)
                for frame in frames[start : start + batch_size]
            ])
            tokens = model.encoder(normalize_frames(images).to(device)).last_hidden_state
            out.append(tokens.mean(dim=1).float().cpu().numpy())
        return np.concatenate(out)

    return embed


def auto_image_embedder(model_dir: Path, batch_size: int, device: torch.device) -> EmbedFn:
    """Middle frame -> a transformers image encoder (its own processor) -> pooler output, else mean of tokens."""
    from transformers import AutoImageProcessor, AutoModel

    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"--image-encoder {model_dir} is not a transformers model folder (no config.json)")
    processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True).to(device).eval()

    @torch.no_grad()
    def embed(frames: list[np.ndarray]) -> np.ndarray:
        out = []
        for start in range(0, len(frames), batch_size):
            inputs = processor(images=list(frames[start : start + batch_size]), return_tensors="pt").to(device)
            outputs = model(**inputs)
            pooled = getattr(outputs, "pooler_output", None)
            pooled = outputs.last_hidden_state.mean(dim=1) if pooled is None else pooled.flatten(1)
            out.append(pooled.float().cpu().numpy())
        return np.concatenate(out)

    return embed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, required=True, help="folder of videos, or a JSONL manifest of 'video' rows")
    parser.add_argument("--targets", nargs="+", required=True, metavar="NAME=MANIFEST:WEIGHT",
                        help="target datasets and their retrieval weights (Table 11: K710 0.7, SSv2 0.125, ...)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (rerunning resumes it)")
    encoder = parser.add_mutually_exclusive_group(required=True)
    encoder.add_argument("--encoder", type=Path, help="a VJEPA2Model folder; its tokens are mean-pooled")
    encoder.add_argument("--image-encoder", type=Path, help="a transformers AutoModel image encoder folder")
    parser.add_argument("--resolution", type=int, default=None, help="frame side for --encoder (default: its crop_size)")
    parser.add_argument("--clusters", type=int, required=True, help="k-means clusters over the pool scenes")
    parser.add_argument("--min-scene-s", type=float, default=4.0, help="drop shorter scenes (appendix A.2: 4 s)")
    parser.add_argument("--threshold", type=float, default=27.0, help="PySceneDetect ContentDetector threshold")
    parser.add_argument("--min-cut-gap-s", type=float, default=0.5, help="no two cuts closer than this")
    parser.add_argument("--iterations", type=int, default=20, help="k-means iterations")
    parser.add_argument("--seed", type=int, default=0, help="k-means seed")
    parser.add_argument("--shard-size", type=int, default=64, help="videos / frames per resumable shard")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per encoder forward")
    parser.add_argument("--cpu", action="store_true", help="embed on the CPU even when a GPU is visible")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | int | None:
    args = parse_args(argv)
    from accelerate import PartialState

    try:
        targets = [parse_target(text) for text in args.targets]
        curation = CurationArgs(
            clusters=args.clusters, iterations=args.iterations, seed=args.seed, shard_size=args.shard_size,
            scenes=SceneArgs(min_scene_s=args.min_scene_s, threshold=args.threshold, min_cut_gap_s=args.min_cut_gap_s),
        )
        # A multi-process CPU run needs gloo (NCCL needs GPUs); a single process sets up no process group.
        launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
        on_gpu = torch.cuda.is_available() and not args.cpu
        state = PartialState(cpu=not on_gpu, **({"backend": "gloo"} if launched and not on_gpu else {}))
        if args.encoder is not None:
            embed = vjepa2_embedder(args.encoder, args.resolution, args.batch_size, state.device)
            embedder_id = f"vjepa2:{args.encoder.resolve()}:{args.resolution}"
        else:
            embed = auto_image_embedder(args.image_encoder, args.batch_size, state.device)
            embedder_id = f"auto:{args.image_encoder.resolve()}"
        report = curate(args.pool, targets, args.out, embed, embedder_id=embedder_id, args=curation,
                        rank=state.process_index, world_size=state.num_processes, barrier=state.wait_for_everyone)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if report is None:
        return None
    print((args.out / "report.md").read_text())
    return report


if __name__ == "__main__":
    status = main()
    sys.exit(status if isinstance(status, int) else 0)
