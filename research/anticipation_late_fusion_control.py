"""Is late fusion's gain the predicted slice, or a second reader, and can the probe use a future slice at all? Late
fusion with another slice in place of the predicted one: the context's last slice copied, or the real future slice.

    python research/anticipation_late_fusion_control.py --output runs/copy_late.json -- \
        --encoder runs/ant/pt_fastpred_shared/checkpoints/step_00001600 --world runs/ant/world_shared \
        --features encoder both --seeds 0 1 2 ...   # the rest of a run_anticipation command
    python research/anticipation_late_fusion_control.py --second-stream real \
        --target-encoder runs/ant/pt_fastpred_shared/checkpoints/step_00001600 --output runs/real_late.json -- ...

Late fusion (`run_anticipation --fusion late`) gives the "both" row a second pooler of its own over the 64 tokens of
one slice. A pooler focused on one slice might read the verb better than one over the context's 256 tokens whatever
that slice is, so a gain over the encoder row is the imagined future's only if it is larger than with a slice that
holds nothing new (`--second-stream copy`): the context's last slice, the copy baseline of the slice diagnostic
(`anticipation_future_slice.py`). And the predictor can only fall short of a ceiling the probe can reach: with
`--second-stream real` the second stream is the slice the predictor was trained to imagine, the target encoder's
tokens of the context and the frames after it at the predicted slice's position (`real_future_slices` of the slice
diagnostic), layer-normed as the pretraining loss compares them with the prediction. If that beats the copy, the
reader can use a future slice and the predictor is what falls short.

This runs `run_anticipation.main` with the given arguments and `--fusion late` (or the control's `--fusion`, another
late fusion), the tokens cached for the predicted stream being the chosen slice; everything else (split, draws,
seeds, heads, the encoder row) is the command's own, so the "both" row pairs by seed with a run of the same arguments
and fusion. Under `late_delta` the second pooler also reads each slice token's change from the
context's last slice, which is zero for the copy by construction: that copy row reads the context alone (its last
slice twice) with a dead change input, so plain late fusion's copy row stays the control to beat as well. A
"predictor" row, if asked for, reads the chosen slice alone. The result JSON is run_anticipation's with
`"second_stream"` (and `"target_encoder"`).
"""

from __future__ import annotations

import argparse
import importlib.util
from contextlib import contextmanager
from pathlib import Path

import torch.nn.functional as F
from vjepa_vlm.scripts import run_anticipation
from vjepa_vlm.scripts.run_probe import load_encoder

from vjepa_vlm.configuration_vjepa2_anticipation import LATE_FUSIONS

# research/ is a folder of scripts: the slice diagnostic is loaded from its file (as anticipation_probe_gap does).
_spec = importlib.util.spec_from_file_location("anticipation_future_slice",
                                               Path(__file__).with_name("anticipation_future_slice.py"))
future_slice = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(future_slice)

SECOND_STREAMS = {"copy": "last context slice", "real": "real future slice (target encoder, layer-normed)"}


@contextmanager
def second_stream_as_predicted(stream: str, target_encoder=None):
    """Within the block, run_anticipation caches `stream`'s slice in place of the predicted tokens: "copy" the
    context's last slice, "real" the real future slice of each context from `target_encoder` (a `VJEPA2Model`)."""
    if stream not in SECOND_STREAMS:
        raise ValueError(f"second stream must be one of {sorted(SECOND_STREAMS)}, got {stream!r}")
    if (stream == "real") != (target_encoder is not None):
        raise ValueError("the real future slice needs the target encoder that gives it, and only it does")
    extract = run_anticipation.extract_anticipation_tokens

    def extract_with_second_stream(model, segments, draws, resolution, batch_size=16):
        encoded, predicted = extract(model, segments, draws, resolution, batch_size)
        if stream == "copy":
            # The last slice has as many tokens as the one predicted slice (`num_output_frames` = one tubelet).
            return encoded, encoded[..., -predicted.shape[-2]:, :]
        real = future_slice.real_future_slices(target_encoder.encoder, model.config, segments, draws, resolution,
                                               batch_size)
        return encoded, F.layer_norm(real, real.shape[-1:])

    run_anticipation.extract_anticipation_tokens = extract_with_second_stream
    try:
        yield
    finally:
        run_anticipation.extract_anticipation_tokens = extract


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--second-stream", choices=sorted(SECOND_STREAMS), default="copy",
                        help="what replaces the predicted slice: the context's last slice (copy) or the real future "
                             "slice (real, needs --target-encoder)")
    parser.add_argument("--target-encoder", type=Path,
                        help="VJEPA2Model directory, or a pretraining checkpoint folder (its target/), whose encoder "
                             "gives the real future slice")
    parser.add_argument("--fusion", choices=LATE_FUSIONS, default="late",
                        help="the late fusion that reads the context and the second stream")
    parser.add_argument("--output", type=Path, required=True, help="result JSON")
    parser.add_argument("run_anticipation_args", nargs=argparse.REMAINDER,
                        help="after --: run_anticipation's arguments (its --output, --fusion and --save-model are set "
                             "here or refused)")
    cli = parser.parse_args(argv)
    args = [a for a in cli.run_anticipation_args if a != "--"]
    for refused in ("--output", "--fusion", "--save-model"):
        if refused in args:
            parser.error(f"{refused} is set by this script (the second stream replaces the predicted slice with late "
                         "fusion: give the control's own --fusion before --)")
    if (cli.second_stream == "real") != (cli.target_encoder is not None):
        parser.error("--target-encoder is needed with --second-stream real, and only there")
    target = None
    if cli.target_encoder is not None:
        cli.target_encoder = run_anticipation.resolve_encoder_dir(cli.target_encoder, "target")
        target = load_encoder(cli.target_encoder, False, 0).eval()
    with second_stream_as_predicted(cli.second_stream, target):
        summary = run_anticipation.main(args + ["--fusion", cli.fusion, "--output", str(cli.output)])
    summary["second_stream"] = SECOND_STREAMS[cli.second_stream]
    if cli.target_encoder is not None:
        summary["target_encoder"] = str(cli.target_encoder)
    run_anticipation.write_json(summary, cli.output)
    return summary


if __name__ == "__main__":
    main()
