"""Is the answer in the tiny VLM's frozen video tokens? Linear read-outs of object color (and count) from them.

    OMP_NUM_THREADS=1 python research/diagnose_vlm_tokens.py --readout mean                      # default world
    OMP_NUM_THREADS=1 python research/diagnose_vlm_tokens.py --readout outlying --world runs/world2k

The vision tower is the one `research/diagnose_vlm_mc.py` trains around (tiny preset, patch 8, 4 frames, seed 0:
random unless `--encoder`). Each clip's tokens are reduced to one vector and a logistic regression reads a
label from it; accuracies are on held-out clips.

- `--readout mean`: the mean of all tokens of the first and last layers and the mean color of each frame
  (`pix`), for the first object's color and the object count; trained on the train split, scored on the test
  split, next to the majority class of the test split.
- `--readout outlying`: single-object clips only; the mean of the 4 tokens farthest from the clip's median
  token (the object's tokens among mostly background) at layers 0, 1, 2 and the last, and of the same
  tokens' pixels (`pix`); trained on the first 3/4 of the training clips, scored on the last 1/4 ("heldout")
  and on the test split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from vjepa_vlm.configuration_vjepa2_vlm import VJEPA2VLMConfig
from vjepa_vlm.data.manifests import read_jsonl
from vjepa_vlm.modeling_vjepa2_vlm import VJEPA2VLMForConditionalGeneration
from vjepa_vlm.processing_vjepa2_vlm import VJEPA2VLMProcessor
from vjepa_vlm.train.embedded import load_encoder_weights, tiny_tokenizer
from vjepa_vlm.video_processing_vjepa2_vlm import load_video_frames

VOCAB_SIZE = 512
NUM_FRAMES = 4
OUTLYING_TOKENS = 4


def vision_tower_and_processor(world: Path, encoder: str | None):
    """The tiny VLM's vision tower, drawn under seed 0 as in the MC harness, and its video processor."""
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer(world, VOCAB_SIZE)
    config = VJEPA2VLMConfig.from_preset("vjepa2-tiny-qwen2", vision_overrides={"patch_size": 8},
                                         text_overrides={"vocab_size": len(tokenizer)})
    model = VJEPA2VLMForConditionalGeneration(config)
    if encoder:
        load_encoder_weights(model, encoder)
    processor = VJEPA2VLMProcessor.from_model_config(config, tokenizer, num_frames=NUM_FRAMES)
    return model.model.vision_tower.eval(), processor


def pixels_per_token(pixels: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """(T, 3, H, W) frames -> (tokens, tubelet * 3 * patch * patch): the pixels each token is made from."""
    frames, channels, height, width = pixels.shape
    grid = pixels.reshape(frames // tubelet, tubelet, channels, height // patch, patch, width // patch, patch)
    return grid.permute(0, 3, 5, 1, 2, 4, 6).reshape((frames // tubelet) * (height // patch) * (width // patch), -1)


def outlying_mean(tokens: np.ndarray) -> np.ndarray:
    """Mean of the tokens farthest from the median token: on a static background they are the object's."""
    distance = np.linalg.norm(tokens - np.median(tokens, 0), axis=1)
    return tokens[np.argsort(distance)[-OUTLYING_TOKENS:]].mean(0)


@torch.no_grad()
def clip_features(vision_tower, processor, world: Path, clip: dict, readout: str) -> dict[str, np.ndarray]:
    frames = load_video_frames(str(world / clip["video"]), NUM_FRAMES, processor.frame_sampling, processor.target_fps)
    pixels = processor.process_videos([frames])
    if readout == "mean":
        out = vision_tower(pixels, output_layers=[0, -1])
        return {"last": out.last_hidden_state[0].mean(0).numpy(),
                "l0": out.intermediate_hidden_states[0][0].mean(0).numpy(),
                "pix": pixels[0].reshape(NUM_FRAMES, 3, -1).mean(-1).flatten().numpy()}
    out = vision_tower(pixels, output_layers=[0, 1, 2, -1])
    config = vision_tower.config
    layers = {"last": out.last_hidden_state[0], "l0": out.intermediate_hidden_states[0][0],
              "l1": out.intermediate_hidden_states[1][0], "l2": out.intermediate_hidden_states[2][0],
              "pix": pixels_per_token(pixels[0], config.tubelet_size, config.patch_size)}
    return {name: outlying_mean(tokens.numpy()) for name, tokens in layers.items()}


def split_features(vision_tower, processor, world: Path, split: str, readout: str):
    """Stacked features per name and labels (first object's color, object count) of a split's clips."""
    features: dict[str, list] = {}
    labels: dict[str, list] = {"color": [], "count": []}
    for clip in read_jsonl(world / split / "clips.jsonl"):
        if readout == "outlying" and len(clip["objects"]) != 1:
            continue
        for name, value in clip_features(vision_tower, processor, world, clip, readout).items():
            features.setdefault(name, []).append(value)
        labels["color"].append(clip["objects"][0]["color"])
        labels["count"].append(len(clip["objects"]))
    return {k: np.array(v) for k, v in features.items()}, {k: np.array(v) for k, v in labels.items()}


def fit(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    return LogisticRegression(max_iter=3000, C=1.0).fit(x, y)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--world", default="runs/synthetic_world", help="synthetic world root (make_synthetic_data.py)")
    p.add_argument("--readout", choices=("mean", "outlying"), default="mean")
    p.add_argument("--encoder", default=None, help="pretrained encoder directory (default: random vision tower)")
    args = p.parse_args(argv)
    world = Path(args.world)
    vision_tower, processor = vision_tower_and_processor(world, args.encoder)
    x_train, y_train = split_features(vision_tower, processor, world, "train", args.readout)
    x_test, y_test = split_features(vision_tower, processor, world, "test", args.readout)
    results: dict[str, dict[str, float]] = {}
    if args.readout == "mean":
        for target in ("color", "count"):
            majority = max(np.mean(y_test[target] == v) for v in set(y_test[target]))
            for name in x_train:
                acc = fit(x_train[name], y_train[target]).score(x_test[name], y_test[target])
                results[f"{target}/{name}"] = {"test": acc, "majority": majority}
                print(target, name, "acc", round(acc, 3), "majority", round(majority, 3))
        return results
    print("single-object clips", len(y_train["color"]), len(y_test["color"]))
    n = len(y_train["color"]) // 4 * 3
    for name in x_train:
        classifier = fit(x_train[name][:n], y_train["color"][:n])
        heldout = classifier.score(x_train[name][n:], y_train["color"][n:])
        test = classifier.score(x_test[name], y_test["color"])
        results[f"color/{name}"] = {"heldout": heldout, "test": test}
        print("color", name, "heldout acc", round(heldout, 3), "test", round(test, 3))
    return results


if __name__ == "__main__":
    main()
