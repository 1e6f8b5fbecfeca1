"""The tiny VLM on multiple-choice video questions, diagnosed: a fast in-process stage-3 harness.

    OMP_NUM_THREADS=1 python research/diagnose_vlm_mc.py --steps 800 --eval_every 200 --mc_perms 4
    OMP_NUM_THREADS=1 python research/diagnose_vlm_mc.py --world runs/world2k --steps 1500 --eval_every 750 \
        --mc_only --mc_perms 0 --text_mc 4
    OMP_NUM_THREADS=1 python research/diagnose_vlm_mc.py --world runs/world2k --steps 4000 --eval_every 2000 \
        --mc_open 1 --encoder <pretrained encoder directory>

Trains the tiny VLM's projector and LLM from initialization on a synthetic world's stage-3 data (video QA and
captions), with the frozen vision tower's tokens computed once per clip and cached: about twice as fast as the
stage trainer, which re-encodes every clip at every step. Same losses as stage 3 (next-token cross entropy on
the assistant turn), batch `--bs`, AdamW with linear warmup over 5% of the steps and a cosine decay to 10% of
`--lr`. Every `--eval_every` steps, on the world's test split, it prints:

- multiple-choice accuracy (the option letter with the highest next-token logit right after the assistant
  header, as `scripts/vlm_pipeline.py` scores it), overall, per question type and per template, and how often
  each letter was predicted;
- the mean NLL of the right letter (over the four letters; ln 4 = 1.386 is a model that ignores everything)
  with the question's own video and with another clip's video: their difference is what the video contributes;
- the caption loss with the right video and with another clip's;
- open questions scored by their candidate answers (the candidate with the lowest summed NLL), with the right
  video and with another clip's;
- the MC questions scored the same way in their cloze form (asked openly, the options as candidates, as
  `scripts/vlm_pipeline.py`'s "option likelihood" rows), with the right video and with another clip's;
  `--mc_open N` adds N cloze copies of each training MC question (what the world's `video_qa_cloze.jsonl`
  gives the stage trainer);
- with `--text_mc`, accuracy on the test MC questions with the answer written into the prompt in place of the
  video (`Hint: yellow.`): whether the LLM maps an option's content to its letter at all.

`--warmup_steps N` runs a text-only phase of N steps on the hint copies alone before the main phase.

The world is one made by `scripts/make_synthetic_data.py`; the tokenizer is trained on its training
conversations (`vjepa_vlm.train.embedded.tiny_tokenizer`), as the tiny stage recipes do.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vjepa_vlm.configuration_vjepa2_vlm import VJEPA2VLMConfig
from vjepa_vlm.data.label_masking import tokenize_with_labels
from vjepa_vlm.data.manifests import read_jsonl
from vjepa_vlm.data.synthetic_labels import LETTERS, MC_INSTRUCTION, cloze_row
from vjepa_vlm.modeling_vjepa2_vlm import VJEPA2VLMForConditionalGeneration
from vjepa_vlm.processing_vjepa2_vlm import VJEPA2VLMProcessor, pad_sequences
# The pipeline's own scoring, so both measure the same thing.
from vjepa_vlm.scripts.vlm_pipeline import letter_token_ids, multiple_choice_prompt, other_clip_videos
from vjepa_vlm.train.embedded import EmbeddedArgs, load_encoder_weights, tiny_tokenizer
from vjepa_vlm.video_processing_vjepa2_vlm import load_video_frames

EVAL_BATCH = 32


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--world", default="runs/synthetic_world", help="synthetic world root (make_synthetic_data.py)")
    p.add_argument("--layers", type=int, default=2, help="LLM layers")
    p.add_argument("--width", type=int, default=64, help="LLM hidden size (MLP: twice that)")
    p.add_argument("--heads", type=int, default=4, help="LLM attention heads (key/value heads: half)")
    p.add_argument("--proj", default="mlp", help="projector type (mlp, attentive_pooler, ...)")
    p.add_argument("--pool", type=int, default=1, help="projector pooling ratio")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--vocab", type=int, default=EmbeddedArgs.vocab_size,
                   help="BPE vocabulary of the tiny tokenizer (default: the embedded default's)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--bs", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--mc_perms", type=int, default=1,
                   help="option orders per training MC question (1 = as generated, 0 = no video MC questions)")
    p.add_argument("--sources", default="video_qa,video_captions", help="training manifests of the world")
    p.add_argument("--mc_only", action="store_true", help="of the sources, keep the MC questions only")
    p.add_argument("--encoder", default=None, help="pretrained encoder directory (default: random vision tower)")
    p.add_argument("--feature_layer", default=str(EmbeddedArgs.vision_feature_layer),
                   help="encoder block(s) feeding the projector, comma-separated (the config's vision_feature_layer; "
                        "default: the embedded VLM's)")
    p.add_argument("--eval_every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--single_object", action="store_true", help="only clips with one object (train and test)")
    p.add_argument("--templates", default="", help="comma-separated question templates to keep (default: all)")
    p.add_argument("--text_mc", type=int, default=0,
                   help="text-only copies of each training MC question with the answer given as a hint")
    p.add_argument("--mc_open", type=int, default=0,
                   help="copies of each training MC question in the cloze form (no options, the option text as answer)")
    p.add_argument("--warmup_steps", type=int, default=0,
                   help="steps of a text-only phase before `--steps`: the hint copies alone (`--warmup_orders` per "
                        "training MC question), at `--lr`, with its own warmup and cosine")
    p.add_argument("--warmup_orders", type=int, default=4, help="option orders per question in the text-only phase")
    p.add_argument("--init_range", type=float, default=0.02, help="weight init std (also re-draws the encoder)")
    return p.parse_args(argv)


def build_model(args: argparse.Namespace, tokenizer):
    """The tiny VLM (patch 8, as the tiny recipes) with the LLM and projector sizes of the arguments."""
    text = dict(hidden_size=args.width, intermediate_size=2 * args.width, num_hidden_layers=args.layers,
                num_attention_heads=args.heads, num_key_value_heads=max(1, args.heads // 2),
                vocab_size=len(tokenizer), initializer_range=args.init_range)
    config = VJEPA2VLMConfig.from_preset("vjepa2-tiny-qwen2", vision_overrides={"patch_size": 8}, text_overrides=text,
                                         projector_type=args.proj, pooling_ratio=args.pool,
                                         vision_feature_layer=[int(x) for x in args.feature_layer.split(",")],
                                         initializer_range=args.init_range)
    model = VJEPA2VLMForConditionalGeneration(config)
    if args.encoder:
        load_encoder_weights(model, args.encoder)
    processor = VJEPA2VLMProcessor.from_model_config(config, tokenizer, num_frames=args.frames)
    return model, processor


class FeatureCache:
    """Frozen vision-tower tokens per video path (the layers the projector reads), computed on first use (the
    encoder never trains here)."""

    def __init__(self, vlm_model, processor):
        self.vlm_model = vlm_model
        vlm_model.vision_tower.eval()
        self.processor = processor
        self.cache: dict[str, tuple[torch.Tensor, tuple]] = {}

    @torch.no_grad()
    def __call__(self, path: str):
        if path not in self.cache:
            proc = self.processor
            frames = load_video_frames(path, proc.num_frames, proc.frame_sampling, proc.target_fps)
            self.cache[path] = self.vlm_model.vision_features(proc.process_videos([frames]))
        return self.cache[path]


def mc_text(row: dict, order: list[int]) -> tuple[str, str]:
    """The MC question with its options in `order`, and the letter of the right option in that order."""
    options = [row["options"][i] for i in order]
    lines = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
    return f"<video>\n{row['question']}\n{lines}\n{MC_INSTRUCTION}", LETTERS[options.index(row["answer"])]


def hint_prompt(user: str, answer: str) -> str:
    """The question with the answer written where the video was: a text-only test of the letter mapping."""
    return user.replace("<video>\n", f"Hint: {answer}.\n")


def hint_sample(processor, row: dict) -> dict:
    """A text-only copy of an MC question in a random option order, the answer as a hint (`hint_prompt`)."""
    order = list(range(len(row["options"])))
    random.shuffle(order)
    user, letter = mc_text(row, order)
    return encode(processor, hint_prompt(user, row["answer"]), letter, None)


def encode(processor, user: str, answer: str, video: str | None) -> dict:
    """Token ids and labels (assistant turn only) of one exchange, video placeholders expanded."""
    if video is None:
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        ids, labels = tokenize_with_labels(processor.tokenizer, messages, processor.chat_template)
        return {"ids": torch.tensor(ids), "labels": torch.tensor(labels), "video": None}
    messages = [{"role": "user", "content": processor.to_model_placeholders(user)},
                {"role": "assistant", "content": answer}]
    ids, labels = tokenize_with_labels(processor.tokenizer, messages, processor.chat_template)
    ids, labels = processor.expand_placeholders(ids, [], [processor.num_video_tokens(processor.num_frames)], labels)
    return {"ids": torch.tensor(ids), "labels": torch.tensor(labels), "video": video}


def row_filter(args: argparse.Namespace, world: Path):
    """The `--single_object` / `--templates` selection, applied to training and test rows alike."""
    objects = {c["video"]: len(c["objects"]) for split in ("train", "test")
               for c in read_jsonl(world / split / "clips.jsonl")}
    templates = args.templates.split(",") if args.templates else None

    def keep(row: dict) -> bool:
        if args.single_object and objects[row["video"]] != 1:
            return False
        # Captions have no template: they stay whatever templates are selected.
        return templates is None or "template" not in row or row["template"] in templates
    return keep


def training_samples(args: argparse.Namespace, world: Path, processor, keep) -> list[dict]:
    """Stage-3 samples; MC questions repeated in `--mc_perms` option orders (the first as generated), so the
    letter cannot be predicted from the option order, plus `--text_mc` hint copies in random orders."""
    samples = []
    for source in args.sources.split(","):
        for row in read_jsonl(world / "train" / f"{source}.jsonl"):
            if not keep(row):
                continue
            video = str(world / row["video"])
            if source == "video_qa" and row["format"] == "mc":
                identity = list(range(len(row["options"])))
                orders = [identity] if args.mc_perms else []
                for _ in range(max(0, args.mc_perms - 1)):
                    order = list(identity)
                    random.shuffle(order)
                    orders.append(order)
                for order in orders:
                    samples.append(encode(processor, *mc_text(row, order), video))
                samples += [hint_sample(processor, row) for _ in range(args.text_mc)]
                samples += [encode(processor, cloze_prompt(row)[0], row["answer"], video)] * args.mc_open
            elif not args.mc_only:
                turns = row["conversations"]
                samples.append(encode(processor, turns[0]["value"], turns[1]["value"], video))
    return samples


def evaluation_set(world: Path, processor, keep) -> dict:
    """Held-out rows with their own videos and another clip's (`other_clip_videos`: never the same clip,
    although a clip has several questions in a row)."""
    qa = read_jsonl(world / "test" / "video_qa.jsonl")
    mc = [r for r in qa if r["format"] == "mc" and keep(r)]
    opens = [r for r in qa if r["format"] == "open" and keep(r)]
    captions = [r for r in read_jsonl(world / "test" / "video_captions.jsonl") if keep(r)]
    caption_samples = [encode(processor, c["conversations"][0]["value"], c["conversations"][1]["value"],
                              str(world / c["video"])) for c in captions]
    caption_videos = [c["video"] for c in caption_samples]

    def paths(videos):
        return [str(world / v) for v in videos]
    return {
        "mc": mc, "mc_videos": paths(r["video"] for r in mc), "mc_other": paths(other_clip_videos(mc)),
        "open": opens, "open_videos": paths(r["video"] for r in opens), "open_other": paths(other_clip_videos(opens)),
        # One caption per clip, so the next clip's video is always another clip's.
        "captions": caption_samples, "caption_videos": caption_videos,
        "caption_other": caption_videos[1:] + caption_videos[:1],
    }


def forward(model, features: FeatureCache, ids_list: list[torch.Tensor], videos: list[str | None]):
    """LM logits with the cached tokens of `videos` projected into the video placeholders."""
    config = model.config
    lm, projector = model.model.language_model, model.model.multi_modal_projector
    ids = pad_sequences(ids_list, features.processor.tokenizer.pad_token_id)
    mask = pad_sequences([torch.ones_like(i) for i in ids_list], 0)
    embeddings = lm.get_input_embeddings()(ids)
    cached = [features(v) for v in videos if v is not None]
    if cached:
        visual = projector(torch.cat([tokens for tokens, _ in cached]), cached[0][1]).flatten(0, 1)
        embeddings = embeddings.masked_scatter((ids == config.video_token_id).unsqueeze(-1), visual.to(embeddings))
    return model.lm_head(lm(inputs_embeds=embeddings, attention_mask=mask).last_hidden_state)


def sequence_loss(logits: torch.Tensor, labels: list[torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """Next-token cross entropy on the supervised positions; per sequence (summed) with reduction="none"."""
    labels = pad_sequences(labels, -100)
    if reduction == "none":
        return F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100,
                               reduction="none").sum(1)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)


def prompt_ids(processor, prompt: str, video: bool) -> torch.Tensor:
    ids = processor.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if video:
        ids = processor.expand_placeholders(ids, [], [processor.num_video_tokens(processor.num_frames)])[0]
    return torch.tensor(ids)


def letter_log_probs(model, features, ids: list[torch.Tensor], videos, letters: list[int]) -> torch.Tensor:
    """(B, 4) log-probabilities over the option letters at the position right after the assistant header."""
    logits = forward(model, features, ids, videos)
    last = torch.tensor([len(x) - 1 for x in ids])
    return logits[torch.arange(len(ids)), last][:, letters].log_softmax(-1)


def mc_metrics(model, features, data: dict, letters: list[int]) -> dict:
    processor, rows = features.processor, data["mc"]
    groups: dict[str, list[bool]] = {}
    nll = {"right": [], "swapped": []}
    predicted = [0] * 4
    for i in range(0, len(rows), EVAL_BATCH):
        batch = rows[i:i + EVAL_BATCH]
        ids = [prompt_ids(processor, multiple_choice_prompt(processor, r), video=True) for r in batch]
        answers = torch.tensor([LETTERS.index(r["answer_letter"]) for r in batch])
        for name, videos in (("right", data["mc_videos"]), ("swapped", data["mc_other"])):
            lp = letter_log_probs(model, features, ids, videos[i:i + EVAL_BATCH], letters)
            nll[name].extend((-lp[torch.arange(len(batch)), answers]).tolist())
            if name == "right":
                for r, k in zip(batch, lp.argmax(-1).tolist()):
                    predicted[k] += 1
                    for group in ("all", r["question_type"], r["template"]):
                        groups.setdefault(group, []).append(LETTERS[k] == r["answer_letter"])
    return {"mc_acc": {g: round(100 * sum(v) / len(v), 1) for g, v in sorted(groups.items())},
            "predicted": predicted,
            "letter_nll_right": sum(nll["right"]) / len(nll["right"]),
            "letter_nll_swapped": sum(nll["swapped"]) / len(nll["swapped"])}


def cloze_prompt(row: dict) -> tuple[str, list[str]]:
    """The user turn and the candidate answers of a QA row in the open (cloze) form: an open question as
    generated; an MC question as its cloze twin (`cloze_row`, the world's `video_qa_cloze.jsonl`)."""
    open_form = row if row["format"] == "open" else cloze_row(row)
    return open_form["conversations"][0]["value"], open_form["candidates"]


def open_candidate_accuracy(model, features, rows: list[dict], videos: list[str]) -> dict[str, float]:
    """Each question answered by the candidate with the lowest summed NLL in its cloze form (`cloze_prompt`);
    % by question type and "all"."""
    correct: dict[str, list[bool]] = {}
    for row, video in zip(rows, videos):
        user, candidates = cloze_prompt(row)
        encoded = [encode(features.processor, user, c, video) for c in candidates]
        logits = forward(model, features, [e["ids"] for e in encoded], [video] * len(encoded))
        nll = sequence_loss(logits, [e["labels"] for e in encoded], reduction="none").tolist()
        ok = candidates[min(range(len(nll)), key=nll.__getitem__)] == row["answer"]
        for group in ("all", row["question_type"]):
            correct.setdefault(group, []).append(ok)
    return {g: 100 * sum(v) / len(v) for g, v in correct.items()}


def hint_mc_accuracy(model, features, rows: list[dict], letters: list[int]) -> float:
    processor, correct = features.processor, []
    for i in range(0, len(rows), EVAL_BATCH):
        batch = rows[i:i + EVAL_BATCH]
        prompts = [processor.apply_chat_template(
            [{"role": "user", "content": hint_prompt(r["conversations"][0]["value"], r["answer"])}],
            add_generation_prompt=True) for r in batch]
        ids = [prompt_ids(processor, p, video=False) for p in prompts]
        predicted = letter_log_probs(model, features, ids, [None] * len(ids), letters).argmax(-1).tolist()
        correct += [LETTERS[k] == r["answer_letter"] for r, k in zip(batch, predicted)]
    return 100 * sum(correct) / len(correct)


@torch.no_grad()
def evaluate(model, features, data: dict, letters: list[int], text_mc: bool, step: int, start: float) -> dict:
    """Every held-out metric of the module docstring, printed and returned."""
    model.eval()
    metrics = {"step": step, **mc_metrics(model, features, data, letters)}
    for rows, label, key in (("mc", "MC cloze acc", "mc_cloze_acc"), ("open", "open-candidate acc", "open_acc")):
        for name in ("right", "swapped"):
            videos = data[f"{rows}_videos"] if name == "right" else data[f"{rows}_other"]
            acc = open_candidate_accuracy(model, features, data[rows], videos)
            metrics[f"{key}_{name}"] = acc
            by_type = " ".join(f"{k} {v:.1f}" for k, v in sorted(acc.items()) if k != "all")
            print(f"  {label} ({name} video): all {acc['all']:.1f} {by_type}", flush=True)
    captions = data["captions"]
    for name, videos in (("right", data["caption_videos"]), ("swapped", data["caption_other"])):
        logits = forward(model, features, [c["ids"] for c in captions], videos)
        metrics[f"caption_loss_{name}"] = sequence_loss(logits, [c["labels"] for c in captions]).item()
    print(f"  caption loss right {metrics['caption_loss_right']:.3f} "
          f"swapped {metrics['caption_loss_swapped']:.3f}", flush=True)
    if text_mc:
        metrics["hint_mc_acc"] = hint_mc_accuracy(model, features, data["mc"], letters)
        print(f"  text-only MC with the answer as a hint: {metrics['hint_mc_acc']:.1f}", flush=True)
    print(f"EVAL step {step}: acc {metrics['mc_acc']} pred {metrics['predicted']} "
          f"letterNLL right {metrics['letter_nll_right']:.3f} swapped {metrics['letter_nll_swapped']:.3f} "
          f"(ln4=1.386) t={time.time() - start:.0f}s", flush=True)
    model.train()
    return metrics


def learning_rate(step: int, steps: int, peak: float) -> float:
    """Linear warmup over 5% of the steps, then cosine from `peak` down to 10% of it."""
    warmup = max(1, steps // 20)
    cosine = 0.5 * (1 + math.cos(math.pi * max(0, step - warmup) / max(1, steps - warmup)))
    return peak * min(1, step / warmup) * (cosine * 0.9 + 0.1)


def hint_samples(world: Path, processor, keep, orders: int) -> list[dict]:
    """Text-only copies of every training MC question, the answer as a hint in place of the video, in
    `orders` random option orders."""
    samples = []
    for row in read_jsonl(world / "train" / "video_qa.jsonl"):
        if row["format"] != "mc" or not keep(row):
            continue
        samples += [hint_sample(processor, row) for _ in range(orders)]
    return samples


def train_phase(args, model, features, params, samples, steps, data, letters, start, results, name) -> None:
    """`steps` AdamW steps of batch `--bs` over `samples` (reshuffled epochs), evaluating every `--eval_every`."""
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    model.train()
    order: list[int] = []
    for step in range(1, steps + 1):
        lr = learning_rate(step, steps, args.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if len(order) < args.bs:
            order += random.sample(range(len(samples)), len(samples))
        batch, order = [samples[j] for j in order[:args.bs]], order[args.bs:]
        logits = forward(model, features, [b["ids"] for b in batch], [b["video"] for b in batch])
        loss = sequence_loss(logits, [b["labels"] for b in batch])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % 25 == 0:
            print(f"{name} step {step} loss {loss.item():.3f} lr {lr:.2e} t={time.time() - start:.0f}s", flush=True)
        if step % args.eval_every == 0 or step == steps:
            text_mc = bool(args.text_mc or args.warmup_steps)
            results.append({"phase": name} | evaluate(model, features, data, letters, text_mc, step, start))


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    print(vars(args), flush=True)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    world = Path(args.world)
    if not (world / "meta.json").is_file():
        raise SystemExit(f"no synthetic world at {world}: make one with scripts/make_synthetic_data.py --out {world}")
    start = time.time()
    tokenizer = tiny_tokenizer(world, args.vocab)
    model, processor = build_model(args, tokenizer)
    features = FeatureCache(model.model, processor)
    keep = row_filter(args, world)
    train = training_samples(args, world, processor, keep)
    data = evaluation_set(world, processor, keep)
    for path in [s["video"] for s in train if s["video"] is not None] + data["mc_videos"]:
        features(path)
    print(f"{len(train)} train samples, {len(data['mc'])} test MC; prep {time.time() - start:.0f}s", flush=True)

    letters = letter_token_ids(tokenizer)
    params = [p for n, p in model.named_parameters() if not n.startswith("model.vision_tower")]
    results = []
    if args.warmup_steps:
        warmup = hint_samples(world, processor, keep, args.warmup_orders)
        print(f"text-only phase: {len(warmup)} hint samples, {args.warmup_steps} steps", flush=True)
        train_phase(args, model, features, params, warmup, args.warmup_steps, data, letters, start, results, "text")
    train_phase(args, model, features, params, train, args.steps, data, letters, start, results, "main")
    return results


if __name__ == "__main__":
    main()
