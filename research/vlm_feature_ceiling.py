"""How well can the world's multiple-choice video questions be answered from a feature set at all, without an LLM?

    python research/vlm_feature_ceiling.py --world runs/smol_main2/world \
        --encoder runs/smol_main2/out/pretrain/checkpoints/step_00000400/target --out runs/s18d/ceiling \
        --features encoder random pixels blind --seeds 0 1 2

A small dedicated reader is trained on the world's TRAIN multiple-choice video questions (`video_qa.jsonl`,
format "mc") and scores each option from (visual tokens, question, option): the question and the option are
each a learned bag-of-words embedding (mean over their words), combined into one query per option; the query
cross-attends to the clip's visual tokens (each with a learned position) in `--blocks` blocks, so an option's
query can find its object in both tubelets and compare them (`--visual-layers` adds self-attention over the
tokens first), and a linear head gives the option's score; softmax over the 4 options, cross-entropy on the
answer. Every feature set gets the same reader, steps and seeds:

- `encoder`: the pretrained tiny encoder's tokens at `--layer` (0, the block the SmolLM2 VLM's projector reads),
  128 tokens of 96 dims per 4-frame clip: the ceiling of what the VLM could get from its visual tokens;
- `encoder_last`: the same encoder's normalized last block;
- `random`: the same architecture randomly initialized (`--random-seed`), same layer;
- `pixels`: the raw normalized pixels of each tubelet patch (2 frames x 8 x 8 x 3 = 384 values, the same 128-token
  grid): what the video holds, read by the same reader;
- `blind`: no visual tokens (the query alone is scored): the text prior a reader of this size finds.

A tenth of the training clips (by clip) is held out for choosing the epoch; the test questions (the world's
held-out clips) are scored at every epoch and reported at the epoch of the best held-out accuracy, and at the
last, overall and per question type and template. If the pretrained encoder's row is far under the goal
(blind + 15 points), no LLM on these tokens reaches it; its gap to the `pixels` row is what the encoder loses.
Features are cached in `--out/features_<name>.pt`, so further seeds do not re-encode the clips.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch
from torch import nn
from vjepa_vlm.data.manifests import read_jsonl
from vjepa_vlm.data.video_io import load_video_frames

from vjepa_vlm.video_processing_vjepa2_vlm import frames_to_pixels

FEATURES = ("encoder", "encoder_last", "random", "pixels", "blind")
WORD = re.compile(r"[a-z0-9]+")


def mc_rows(world: Path, split: str) -> list[dict]:
    rows = [r for r in read_jsonl(world / split / "video_qa.jsonl") if r.get("format") == "mc"]
    if not rows:
        raise ValueError(f"{world / split / 'video_qa.jsonl'} has no multiple-choice rows (format 'mc')")
    return rows


def clip_pixels(world: Path, video: str, num_frames: int, crop_size: int) -> torch.Tensor:
    """`(T, 3, crop, crop)` normalized pixels, as the VLM's processor makes them (uniform frame sampling)."""
    return frames_to_pixels(load_video_frames(world / video, num_frames), crop_size)


def patch_tokens(pixels: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """`(T, C, H, W)` -> `(t * h * w, tubelet * patch * patch * C)`, the encoder's (t, h, w) token order."""
    frames, channels, height, width = pixels.shape
    grid = pixels.reshape(frames // tubelet, tubelet, channels, height // patch, patch, width // patch, patch)
    return grid.permute(0, 3, 5, 1, 4, 6, 2).reshape((frames // tubelet) * (height // patch) * (width // patch), -1)


@torch.no_grad()
def encode_clips(world: Path, videos: list[str], name: str, encoder_dir: str | None, layer: int,
                 random_seed: int, num_frames: int) -> torch.Tensor:
    """`(clips, tokens, dim)` float16 features of one feature set for every video, in order."""
    from vjepa_vlm import VJEPA2Config, VJEPA2Model

    if encoder_dir is None:
        raise ValueError("--encoder is needed for every feature set but 'blind' (its config defines the random one too)")
    config = VJEPA2Config.from_pretrained(encoder_dir)
    if name == "random":
        torch.manual_seed(random_seed)
        encoder = VJEPA2Model(config).encoder
    else:
        encoder = VJEPA2Model.from_pretrained(encoder_dir).encoder
    encoder.eval()
    rows = []
    for video in videos:
        pixels = clip_pixels(world, video, num_frames, config.crop_size)
        if name == "pixels":
            rows.append(patch_tokens(pixels, config.tubelet_size, config.patch_size))
        elif name == "encoder_last":
            rows.append(encoder(pixels[None]).last_hidden_state[0])
        else:
            rows.append(encoder(pixels[None], output_layers=[layer]).intermediate_hidden_states[0][0])
    return torch.stack(rows).half()


class Vocabulary:
    """Lower-cased words of the training questions and options; unknown words map to 0."""

    def __init__(self, rows: list[dict]):
        counts = Counter(w for r in rows for text in (r["question"], *r["options"]) for w in WORD.findall(text.lower()))
        self.index = {word: i + 1 for i, word in enumerate(sorted(counts))}

    def __len__(self) -> int:
        return len(self.index) + 1

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, 0) for w in WORD.findall(text.lower())] or [0]


def bags(texts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat ids and offsets for `nn.EmbeddingBag`."""
    offsets = torch.tensor([0] + [len(t) for t in texts[:-1]]).cumsum(0)
    return torch.tensor([i for t in texts for i in t]), offsets


class OptionReader(nn.Module):
    """Scores (visual tokens, question, option); `visual_dim` 0 reads no video.

    Args:
        vocab_size: words of the bag-of-words embeddings.
        visual_dim: channels of a visual token (0: blind).
        num_tokens: visual tokens per clip (learned positions).
        dim, heads, blocks: width, attention heads and cross-attention blocks.
        visual_layers: self-attention layers over the visual tokens before the cross-attention (each doubles the
            step's cost; the options' queries can already compare tokens of both tubelets through their heads).
    """

    def __init__(self, vocab_size: int, visual_dim: int, num_tokens: int, dim: int = 64, heads: int = 4,
                 blocks: int = 2, visual_layers: int = 0):
        super().__init__()
        self.question = nn.EmbeddingBag(vocab_size, dim, mode="mean")
        self.option = nn.EmbeddingBag(vocab_size, dim, mode="mean")
        self.query = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.blind = visual_dim == 0
        if not self.blind:
            self.visual_in = nn.Sequential(nn.LayerNorm(visual_dim), nn.Linear(visual_dim, dim))
            self.position = nn.Parameter(torch.randn(1, num_tokens, dim) * 0.02)
            self.visual_self = nn.Sequential(*(
                nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
                for _ in range(visual_layers)))
            self.cross = nn.ModuleList(nn.MultiheadAttention(dim, heads, batch_first=True) for _ in range(blocks))
            self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(blocks))
            self.mlps = nn.ModuleList(
                nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
                for _ in range(blocks))
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 1))

    def forward(self, visual: torch.Tensor | None, question: tuple, options: tuple, num_options: int) -> torch.Tensor:
        """`visual` `(B, tokens, visual_dim)`; question bags for B questions, option bags for B * num_options
        options (question-major) -> `(B, num_options)` scores."""
        q = self.question(*question).repeat_interleave(num_options, 0)
        query = self.query(torch.cat([q, self.option(*options)], -1)).view(-1, num_options, q.shape[-1])
        if not self.blind:
            tokens = self.visual_self(self.visual_in(visual.float()) + self.position)
            # The options of a question are separate queries of one cross-attention: none attends to another.
            for cross, norm, mlp in zip(self.cross, self.norms, self.mlps):
                query = query + cross(norm(query), tokens, tokens, need_weights=False)[0]
                query = query + mlp(query)
        return self.head(query).squeeze(-1)


def question_batch(rows: list[dict], vocab: Vocabulary) -> tuple[tuple, tuple, torch.Tensor]:
    question = bags([vocab.encode(r["question"]) for r in rows])
    options = bags([vocab.encode(o) for r in rows for o in r["options"]])
    answers = torch.tensor([r["options"].index(r["answer"]) for r in rows])
    return question, options, answers


@torch.no_grad()
def predict(model: OptionReader, rows: list[dict], clip_index: list[int], features: torch.Tensor | None,
            vocab: Vocabulary, batch_size: int = 256) -> list[int]:
    model.eval()
    answers = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        question, options, _ = question_batch(chunk, vocab)
        visual = None if features is None else features[clip_index[start:start + batch_size]]
        answers.extend(model(visual, question, options, len(chunk[0]["options"])).argmax(-1).tolist())
    return answers


def accuracy_table(rows: list[dict], predicted: list[int]) -> dict:
    """Accuracy overall, per question type and per template."""
    groups = defaultdict(list)
    for row, answer in zip(rows, predicted):
        hit = row["options"][answer] == row["answer"]
        for key in ("all", f"type:{row['question_type']}", f"template:{row['template']}"):
            groups[key].append(hit)
    return {key: sum(hits) / len(hits) for key, hits in sorted(groups.items())}


def train_reader(train: list[dict], train_clips: list[int], valid: list[dict], valid_clips: list[int],
                 test: list[dict], test_clips: list[int], features: torch.Tensor | None, vocab: Vocabulary,
                 seed: int, epochs: int, batch_size: int, lr: float, blocks: int, visual_layers: int) -> dict:
    """Train one reader; the test accuracies at the best held-out epoch and at the last."""
    torch.manual_seed(seed)
    num_tokens, visual_dim = (0, 0) if features is None else features.shape[1:]
    model = OptionReader(len(vocab), visual_dim, num_tokens, blocks=blocks, visual_layers=visual_layers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    history, best = [], None
    started = time.monotonic()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator).tolist()
        total = 0.0
        for start in range(0, len(train), batch_size):
            picked = order[start:start + batch_size]
            rows = [train[i] for i in picked]
            question, options, answers = question_batch(rows, vocab)
            visual = None if features is None else features[[train_clips[i] for i in picked]]
            loss = nn.functional.cross_entropy(model(visual, question, options, len(rows[0]["options"])), answers)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(rows)
        valid_acc = accuracy_table(valid, predict(model, valid, valid_clips, features, vocab))["all"]
        test_table = accuracy_table(test, predict(model, test, test_clips, features, vocab))
        history.append({"epoch": epoch + 1, "train_loss": total / len(train), "valid": valid_acc,
                        "test": test_table["all"]})
        if best is None or valid_acc > best["valid"]:
            best = {"epoch": epoch + 1, "valid": valid_acc, "test": test_table}
    train_acc = accuracy_table(train, predict(model, train, train_clips, features, vocab))["all"]
    return {"best_valid_epoch": best, "last_epoch": {"train": train_acc, "test": test_table}, "history": history,
            "seconds": time.monotonic() - started,
            "parameters": sum(p.numel() for p in model.parameters())}


def split_train(rows: list[dict], valid_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out a fraction of the training clips (all their questions) for choosing the epoch."""
    videos = sorted({r["video"] for r in rows})
    generator = torch.Generator().manual_seed(seed)
    held = {videos[i] for i in torch.randperm(len(videos), generator=generator)[: round(valid_fraction * len(videos))]}
    return [r for r in rows if r["video"] not in held], [r for r in rows if r["video"] in held]


def summarize(results: dict) -> list[str]:
    """A markdown table: mean and spread over seeds of the test accuracy at the best held-out epoch."""
    keys = sorted({k for runs in results.values() for run in runs.values() for k in run["best_valid_epoch"]["test"]})
    lines = ["| features | " + " | ".join(keys) + " | last epoch: train / test |",
             "| --- |" + " --- |" * (len(keys) + 1)]
    for name, runs in results.items():
        cells = []
        for key in keys:
            values = torch.tensor([run["best_valid_epoch"]["test"][key] for run in runs.values()]) * 100
            cells.append(f"{values.mean():.1f} ± {values.std(unbiased=False):.1f}")
        last = torch.tensor([[run["last_epoch"]["train"], run["last_epoch"]["test"]["all"]] for run in runs.values()])
        cells.append(f"{100 * last[:, 0].mean():.1f} / {100 * last[:, 1].mean():.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", required=True)
    parser.add_argument("--encoder", default=None, help="a pretrained tiny encoder directory (VJEPA2Model)")
    parser.add_argument("--features", nargs="+", choices=FEATURES, default=list(FEATURES))
    parser.add_argument("--layer", type=int, default=0, help="encoder block read by 'encoder' and 'random'")
    parser.add_argument("--random-seed", type=int, default=0, help="initialization of the 'random' encoder")
    parser.add_argument("--num-frames", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--visual-layers", type=int, default=0)
    parser.add_argument("--valid-fraction", type=float, default=0.1)
    parser.add_argument("--max-train", type=int, default=None,
                        help="use only the first N training questions (a learning curve); results go to "
                             "results_<N>.json")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    world, out = Path(args.world), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    every_train, test = mc_rows(world, "train"), mc_rows(world, "test")
    train_all = every_train[: args.max_train]
    train, valid = split_train(train_all, args.valid_fraction, seed=0)
    # Every clip of the world is encoded, so runs on fewer training questions reuse the same feature cache.
    videos = sorted({r["video"] for r in every_train + test})
    position = {video: i for i, video in enumerate(videos)}
    clips = {name: [position[r["video"]] for r in rows] for name, rows in
             (("train", train), ("valid", valid), ("test", test))}
    vocab = Vocabulary(train_all)
    results_path = out / ("results.json" if args.max_train is None else f"results_{args.max_train}.json")
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for name in args.features:
        features = None
        if name != "blind":
            cache = out / f"features_{name}.pt"
            if cache.is_file():
                cached = torch.load(cache, weights_only=True)
                if cached["videos"] != videos:
                    raise ValueError(f"{cache} was encoded for other clips; delete it or use another --out")
                features = cached["features"]
            else:
                started = time.monotonic()
                features = encode_clips(world, videos, name, args.encoder, args.layer, args.random_seed,
                                        args.num_frames)
                torch.save({"videos": videos, "features": features}, cache)
                print(f"{name}: encoded {len(videos)} clips -> {tuple(features.shape)} "
                      f"({time.monotonic() - started:.0f} s)", flush=True)
        runs = results.setdefault(name, {})
        for seed in args.seeds:
            run = train_reader(train, clips["train"], valid, clips["valid"], test, clips["test"], features, vocab,
                               seed, args.epochs, args.batch_size, args.lr, args.blocks, args.visual_layers)
            run["args"] = {k: v for k, v in vars(args).items() if k not in ("features", "seeds")}
            runs[str(seed)] = run
            best = run["best_valid_epoch"]
            print(f"{name} seed {seed}: test {100 * best['test']['all']:.1f}% at epoch {best['epoch']} "
                  f"(held-out {100 * best['valid']:.1f}%), last epoch train {100 * run['last_epoch']['train']:.1f}% "
                  f"test {100 * run['last_epoch']['test']['all']:.1f}% ({run['seconds']:.0f} s)", flush=True)
            results_path.write_text(json.dumps(results, indent=1))
    print("\n".join(summarize(results)))


if __name__ == "__main__":
    main()
