"""Decode-ahead of `vjepa2_vlm`: `generate_until` wall time with videos decoded serially vs in threads ahead.

    python scripts/benchmark_lmms_decode.py --pretrained CKPT --world runs/synthetic_world --requests 32

Requests are the world's test video QA rows. "serial" decodes each batch's videos in one thread and only then
runs the model (decode_workers=1, decode_ahead=0); "ahead" decodes the next batches in `--workers` threads
while the model runs. Both orders alternate over `--repeats` rounds; the minimum per setting is reported
(the least disturbed by other load). Predictions must be identical, or the script fails.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from lmms_eval.api.instance import Instance

from vjepa_vlm.eval.lmms_model import VJEPA2VLMLmms

TASK, SPLIT = "video_qa", "test"


def _requests(docs: list[dict], max_new_tokens: int) -> list[Instance]:
    def doc_to_visual(doc: dict) -> list[str]:
        return [doc["video_path"]]

    return [
        Instance(
            request_type="generate_until",
            arguments=(doc["conversations"][0]["value"].removeprefix("<video>\n"), {"max_new_tokens": max_new_tokens, "until": ["\n"]}, doc_to_visual, i, TASK, SPLIT),
            idx=0,
            metadata={"task": TASK, "doc_id": i, "repeats": 1},
        )
        for i, doc in enumerate(docs)
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", required=True)
    parser.add_argument("--world", required=True)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max_new_tokens", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    world = Path(args.world)
    with open(world / SPLIT / "video_qa.jsonl", encoding="utf-8") as handle:
        docs = [json.loads(line) for line in handle][: args.requests]
    for doc in docs:
        doc["video_path"] = str(world / doc["video"])
    settings = {"serial": dict(decode_workers=1, decode_ahead=0), "ahead": dict(decode_workers=args.workers, decode_ahead=2)}
    models = {}
    for name, decode in settings.items():
        models[name] = VJEPA2VLMLmms(pretrained=args.pretrained, num_frames=args.num_frames, batch_size=args.batch_size, **decode)
        models[name].task_dict = {TASK: {SPLIT: docs}}
    timings: dict[str, list[float]] = {name: [] for name in settings}
    answers: dict[str, list[str]] = {}
    for round_index in range(args.repeats):
        order = list(settings) if round_index % 2 == 0 else list(reversed(settings))
        for name in order:
            started = time.perf_counter()
            answers[name] = models[name].generate_until(_requests(docs, args.max_new_tokens))
            timings[name].append(time.perf_counter() - started)
    if answers["serial"] != answers["ahead"]:
        raise SystemExit("decode-ahead changed the predictions")
    print(f"{len(docs)} requests, {args.num_frames} frames, batch {args.batch_size}, {args.threads} torch threads")
    for name in settings:
        best = min(timings[name])
        print(f"{name:>6}: {best:.2f} s ({len(docs) / best:.1f} requests/s), rounds {[round(t, 2) for t in timings[name]]}")
    print(f"speed-up of decode-ahead: {min(timings['serial']) / min(timings['ahead']):.2f}x")


if __name__ == "__main__":
    main()
