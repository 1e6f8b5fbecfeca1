"""The paper's video-QA suite in lmms-eval 0.7.3: task names, reported metrics, frame settings, data sources.

Section 7 evaluates with lmms-eval on PerceptionTest, MVP, TempCompass, TemporalBench, TOMATO, TVBench and
MVBench, sampling frames uniformly: 128 frames in the controlled setup (appendix E.2) and 32 in the scaling
setup (appendix E.3). Nothing here downloads anything; lmms-eval fetches each dataset from the Hugging Face Hub
on first use (their configs send the user's HF token: log in with `huggingface-cli login`), except MVP's
videos, which are not redistributed and must be assembled by the user. Video folders live under `$HF_HOME`
(huggingface_hub's default when unset: `vjepa_vlm.eval.lmms_plugin` sets it for the task utils that read it).

    python -m vjepa_vlm.eval.paper_suite --pretrained CKPT --setup scaling   # prints the lmms-eval commands
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass

# Uniform sampling, 128 frames (controlled setup, appendix E.2) or 32 frames (scaling setup, appendix E.3).
FRAMES_BY_SETUP = {"controlled": 128, "scaling": 32}
FRAME_SAMPLING = "uniform"


@dataclass(frozen=True)
class PaperBenchmark:
    """One benchmark of the paper's suite (Tables 6-8).

    Args:
        name: the benchmark as the paper names it.
        task: lmms-eval task or group name.
        task_dir: the folder under `lmms_eval/tasks/` holding its YAMLs and prompt code.
        metric: what the paper reports, and the lmms-eval metric that holds it.
        data: where the data comes from and what the user must do first.
        user_fetched: the videos must be obtained by the user (lmms-eval cannot download them).
    """

    name: str
    task: str
    task_dir: str
    metric: str
    data: str
    user_fetched: bool = False


PAPER_BENCHMARKS: tuple[PaperBenchmark, ...] = (
    PaperBenchmark(
        "PerceptionTest (val)",
        "perceptiontest_val_mc",
        "perceptiontest/val",
        "accuracy after SFT on its train set (Tables 6-7)",
        "HF Hub lmms-eval/PerceptionTest_Val, videos unzipped into $HF_HOME/perceptiontest_val",
    ),
    PaperBenchmark(
        "PerceptionTest (test)",
        "perceptiontest_test_mc",
        "perceptiontest/test",
        "test accuracy (Table 8); answers are hidden: lmms-eval writes a submission file for the challenge server",
        "HF Hub lmms-eval/PerceptionTest, videos unzipped into $HF_HOME/perceptiontest",
    ),
    PaperBenchmark(
        "MVP",
        "mvp_mini",
        "mvp",
        "paired accuracy (pair_accuracy); lmms-eval ships the mini split",
        "annotations from HF facebook/minimal_video_pairs; the source videos are NOT redistributed: assemble them "
        "per github.com/facebookresearch/minimal_video_pairs under $HF_HOME/mvp_mini (or MVP_VIDEO_DIR)",
        user_fetched=True,
    ),
    PaperBenchmark("TempCompass", "tempcompass_multi_choice", "tempcompass", "multi-choice accuracy", "HF Hub lmms-eval/TempCompass"),
    PaperBenchmark(
        "TemporalBench", "temporalbench_short_qa", "temporalbench", "multi-binary accuracy on short QA (MBA-short QA)", "HF Hub microsoft/TemporalBench"
    ),
    PaperBenchmark("TOMATO", "tomato", "tomato", "accuracy", "HF Hub lmms-eval/TOMATO"),
    PaperBenchmark("TVBench", "tvbench", "tvbench", "accuracy (group of 10 subtasks)", "HF Hub FunAILab/TVBench"),
    PaperBenchmark("MVBench", "mvbench", "mvbench", "accuracy (group of 20 subtasks)", "HF Hub OpenGVLab/MVBench, revision 'video'"),
)


def suite_model_args(pretrained: str, setup: str, **extra) -> str:
    """`--model_args` for the paper's frame settings: uniform sampling of 128 (controlled) or 32 (scaling) frames."""
    if setup not in FRAMES_BY_SETUP:
        raise ValueError(f"setup must be one of {sorted(FRAMES_BY_SETUP)}, got {setup!r}")
    args = {"pretrained": pretrained, "num_frames": FRAMES_BY_SETUP[setup], "frame_sampling": FRAME_SAMPLING, **extra}
    return ",".join(f"{k}={v}" for k, v in args.items())


def suite_commands(pretrained: str, setup: str, output_path: str = "runs/paper_suite") -> list[str]:
    """One `lmms-eval` command per benchmark (each logs its samples, so the prompts and answers are kept)."""
    model_args = suite_model_args(pretrained, setup)
    return [
        " ".join(
            [
                "lmms-eval --model vjepa2_vlm",
                f"--model_args {shlex.quote(model_args)}",
                f"--tasks {b.task} --batch_size 1 --log_samples",
                f"--output_path {shlex.quote(f'{output_path}/{setup}/{b.task}')}",
            ]
        )
        for b in PAPER_BENCHMARKS
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", required=True, help="checkpoint directory")
    parser.add_argument("--setup", choices=sorted(FRAMES_BY_SETUP), default="scaling")
    parser.add_argument("--output_path", default="runs/paper_suite")
    args = parser.parse_args()
    for benchmark, command in zip(PAPER_BENCHMARKS, suite_commands(args.pretrained, args.setup, args.output_path)):
        fetch = "  [videos: fetch yourself]" if benchmark.user_fetched else ""
        print(f"# {benchmark.name}: {benchmark.metric}. Data: {benchmark.data}{fetch}\n{command}\n")


if __name__ == "__main__":
    main()
