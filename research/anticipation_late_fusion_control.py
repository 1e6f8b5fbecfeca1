"""Is late fusion's gain the predicted slice, or a second reader? Late fusion with the context's last slice copied
in place of the predicted slice.

    python research/anticipation_late_fusion_control.py --output runs/copy_late.json -- \
        --encoder runs/ant/pt_fastpred_shared/checkpoints/step_00001600 --world runs/ant/world_shared \
        --features encoder both --seeds 0 1 2 ...   # the rest of a run_anticipation command

Late fusion (`run_anticipation --fusion late`) gives the "both" row a second pooler of its own over the 64 tokens of
one slice. A pooler focused on one slice might read the verb better than one over the context's 256 tokens whatever
that slice is, so a gain over the encoder row is the imagined future's only if it is larger than with a slice that
holds nothing new: the context's last slice, the copy baseline of the slice diagnostic
(`anticipation_future_slice.py`). This runs `run_anticipation.main` with the given arguments and `--fusion late`, the
"both" row's second stream being that copy; everything else (split, draws, seeds, heads, the encoder row) is the
command's own, so the "both" row pairs by seed with a `--fusion late` run of the same arguments. The result JSON is
run_anticipation's with `"second_stream": "last context slice"`.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

import torch
from vjepa_vlm.scripts import run_anticipation

SECOND_STREAM = "last context slice"


@contextmanager
def copy_as_predicted():
    """Within the block, run_anticipation's "both" features are the context and its last slice concatenated."""
    select = run_anticipation.select_anticipation_features

    def context_and_copy(encoded: torch.Tensor, predicted: torch.Tensor, features: str, fusion: str = "early"):
        if features == "both":
            # The last slice has as many tokens as the one predicted slice (`num_output_frames` = one tubelet).
            predicted = encoded[..., -predicted.shape[-2]:, :]
        return select(encoded, predicted, features, fusion)

    run_anticipation.select_anticipation_features = context_and_copy
    try:
        yield
    finally:
        run_anticipation.select_anticipation_features = select


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="result JSON")
    parser.add_argument("run_anticipation_args", nargs=argparse.REMAINDER,
                        help="after --: run_anticipation's arguments (its --output, --fusion and --save-model are set "
                             "here or refused)")
    cli = parser.parse_args(argv)
    args = [a for a in cli.run_anticipation_args if a != "--"]
    for refused in ("--output", "--fusion", "--save-model"):
        if refused in args:
            parser.error(f"{refused} is set by this script (the copy replaces the predicted slice with late fusion)")
    with copy_as_predicted():
        summary = run_anticipation.main(args + ["--fusion", "late", "--output", str(cli.output)])
    summary["second_stream"] = SECOND_STREAM
    run_anticipation.write_json(summary, cli.output)
    return summary


if __name__ == "__main__":
    main()
