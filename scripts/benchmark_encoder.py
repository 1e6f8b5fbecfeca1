"""Benchmark our V-JEPA 2 encoder against transformers' `VJEPA2Model` on identical weights (CPU, fp32).

    python scripts/benchmark_encoder.py                   # all three measurements, markdown tables on stdout

1. Forward time, ours vs transformers, same process, runs interleaved; medians of `--repeats` runs. With one
   thread the process CPU time is the compute time, unaffected by time spent descheduled while other jobs use the
   shared cores; wall-clock ratios are printed next to it.
2. Our masked forward on ~10% context tokens vs our full-clip forward.
3. Kernel calls of one forward (torch.profiler), ours vs transformers, on the first config; and, per config, the
   profiled self time split into the kernels both implementations share (GEMMs, SDPA, the patch convolution) and
   everything else, with the speedup ceiling that follows: transformers' total over its own shared-kernel time,
   i.e. the speedup of an implementation that spent no time at all outside the kernels both must run.
4. Peak memory of one forward+backward with and without gradient checkpointing. Each mode runs in a fresh
   subprocess; the kernel's resident-set high-water mark (VmHWM) is reset through /proc/self/clear_refs right before
   the measured step (after a warm-up step has allocated the gradients), and peak minus the resident set before the
   step is reported: the activation memory of the step.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import transformers

from vjepa_vlm import VJEPA2Config, VJEPA2Model

# (config overrides, clip shape (frames, height, width), batch). Widths/depths of ViT-Ti/S/B: sizes a shared 2-core
# CPU runs in seconds; the V-JEPA 2 presets (ViT-L and up) would take minutes per forward.
BENCH_CONFIGS = {
    "ti": (dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3), (16, 128, 128), 1),
    "small": (dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6), (8, 128, 128), 2),
    "medium": (dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12), (16, 160, 160), 1),
}
PREDICTOR = dict(pred_hidden_size=96, pred_num_attention_heads=3, pred_num_hidden_layers=1)


def build(name: str) -> tuple[VJEPA2Model, torch.Tensor]:
    overrides, (frames, height, width), batch = BENCH_CONFIGS[name]
    config = VJEPA2Config(**overrides, **PREDICTOR, crop_size=height, frames_per_clip=frames)
    torch.manual_seed(0)
    model = VJEPA2Model(config).eval()
    clip = torch.randn(batch, frames, 3, height, width, generator=torch.Generator().manual_seed(0))
    return model, clip


def build_with_reference(name: str) -> tuple[VJEPA2Model, transformers.VJEPA2Model, torch.Tensor]:
    """Our model, transformers' `VJEPA2Model` holding the same weights (SDPA attention), and the config's clip."""
    ours, clip = build(name)
    reference = transformers.VJEPA2Model(transformers.VJEPA2Config.from_dict(ours.config.to_dict())).eval()
    reference.load_state_dict(ours.state_dict())
    if reference.config._attn_implementation != "sdpa":
        raise RuntimeError(f"transformers picked {reference.config._attn_implementation!r} attention, expected sdpa")
    return ours, reference, clip


def time_once(fn) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def interleaved_medians(first, second, repeats: int) -> dict:
    """Median CPU and wall times of two callables, alternated so that load from other jobs hits both alike."""
    times = {"first": [], "second": []}
    for _ in range(repeats):
        times["first"].append(time_once(first))
        times["second"].append(time_once(second))
    return {
        f"{which}_{clock}": statistics.median(t[index] for t in runs)
        for which, runs in times.items()
        for index, clock in enumerate(("cpu", "wall"))
    }


@torch.no_grad()
def compare_with_transformers(name: str, repeats: int) -> dict:
    ours, reference, clip = build_with_reference(name)

    def run_ours():
        return ours.encoder(clip).last_hidden_state

    def run_reference():
        return reference(clip, skip_predictor=True).last_hidden_state

    ours_out = run_ours()
    max_diff = (ours_out - run_reference()).abs().max().item()  # also the warm-up
    medians = interleaved_medians(run_ours, run_reference, repeats)
    return {"config": name, "batch": clip.shape[0], "tokens": ours_out.shape[1], "max_abs_diff": max_diff, **medians}


@torch.no_grad()
def masked_vs_full(name: str, repeats: int, context_ratio: float) -> dict:
    model, clip = build(name)
    grid = model.encoder.grid_size(clip)
    num_tokens = grid[0] * grid[1] * grid[2]
    num_context = max(1, round(context_ratio * num_tokens))
    generator = torch.Generator().manual_seed(0)
    context = torch.stack([torch.randperm(num_tokens, generator=generator)[:num_context] for _ in range(clip.shape[0])])
    model.encoder(clip, context_indices=context)
    medians = interleaved_medians(
        lambda: model.encoder(clip), lambda: model.encoder(clip, context_indices=context), repeats
    )
    return {"config": name, "tokens": num_tokens, "context": num_context, **medians}


COUNTED_OPS = ("aten::addmm", "aten::sin", "aten::cos", "aten::mul", "aten::cat", "aten::copy_")


@torch.no_grad()
def op_counts(name: str) -> dict[str, dict[str, int]]:
    """Kernel calls of one forward, ours vs transformers: where the two differ besides the shared GEMMs/SDPA."""
    ours, reference, clip = build_with_reference(name)
    counts = {}
    runs = (("ours", lambda: ours.encoder(clip)), ("transformers", lambda: reference(clip, skip_predictor=True)))
    for label, run in runs:
        with torch.profiler.profile() as profiler:
            run()
        seen = {event.key: event.count for event in profiler.key_averages()}
        counts[label] = {op: seen.get(op, 0) for op in COUNTED_OPS}
    return counts


SHARED_KERNELS = (
    "aten::addmm",
    "aten::mm",
    "aten::bmm",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::mkldnn_convolution",
)


@torch.no_grad()
def kernel_time_split(name: str, repeats: int) -> dict[str, dict[str, float]]:
    """Median profiled self CPU seconds of one forward, split into the shared kernels and the rest."""
    ours, reference, clip = build_with_reference(name)
    runs = {"ours": lambda: ours.encoder(clip), "transformers": lambda: reference(clip, skip_predictor=True)}
    samples = {label: {"shared": [], "other": []} for label in runs}
    for _ in range(repeats):
        for label, run in runs.items():
            with torch.profiler.profile() as profiler:
                run()
            shared = other = 0.0
            for event in profiler.key_averages():
                if event.key in SHARED_KERNELS:
                    shared += event.self_cpu_time_total
                else:
                    other += event.self_cpu_time_total
            samples[label]["shared"].append(shared / 1e6)
            samples[label]["other"].append(other / 1e6)
    return {
        label: {part: statistics.median(values) for part, values in parts.items()} for label, parts in samples.items()
    }


def _resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line; the memory probe needs Linux")


def memory_probe(name: str, checkpointing: bool) -> dict:
    """Run in a fresh process: activation memory (KiB) of one training step of the encoder."""
    model, clip = build(name)
    model.train()
    if checkpointing:
        model.gradient_checkpointing_enable()

    def step():
        model.encoder(clip).last_hidden_state.square().mean().backward()

    step()  # allocates the gradients, which then persist: only activations differ between the modes
    before = _resident_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    step()
    peak = _resident_kib("VmHWM")
    return {"config": name, "checkpointing": checkpointing, "step_peak_mib": (peak - before) / 1024}


def memory_in_subprocess(name: str, checkpointing: bool, threads: int) -> dict:
    command = [sys.executable, __file__, "--memory-probe", name, "--threads", str(threads)]
    if checkpointing:
        command.append("--checkpointing")
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(BENCH_CONFIGS), choices=list(BENCH_CONFIGS))
    parser.add_argument("--repeats", type=int, default=5)
    # One thread by default: the machine's 2 cores are shared, and oversubscribed OpenMP threads spin-wait so badly that
    # small ops take 100x longer, which swamps what is being measured.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--context-ratio", type=float, default=0.1)
    parser.add_argument("--memory-probe", choices=list(BENCH_CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, args.checkpointing)))
        return

    print(f"torch {torch.__version__}, transformers {transformers.__version__} (attention: sdpa), "
          f"{args.threads} thread(s), medians of {args.repeats} runs\n")
    print("| config | batch x tokens | ours CPU s | transformers CPU s | speedup (CPU time) | speedup (wall) "
          "| max abs diff |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.configs:
        r = compare_with_transformers(name, args.repeats)
        print(f"| {name} | {r['batch']} x {r['tokens']} | {r['first_cpu']:.3f} | {r['second_cpu']:.3f} | "
              f"{r['second_cpu'] / r['first_cpu']:.2f}x | {r['second_wall'] / r['first_wall']:.2f}x | "
              f"{r['max_abs_diff']:.1e} |")
    print("\n| config | context / tokens | full clip CPU s | masked CPU s | speedup (CPU time) | speedup (wall) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.configs:
        r = masked_vs_full(name, args.repeats, args.context_ratio)
        print(f"| {name} | {r['context']} / {r['tokens']} | {r['first_cpu']:.3f} | {r['second_cpu']:.3f} | "
              f"{r['first_cpu'] / r['second_cpu']:.1f}x | {r['first_wall'] / r['second_wall']:.1f}x |")
    print(f"\n| {args.configs[0]}: calls per forward | " + " | ".join(COUNTED_OPS) + " |")
    print("| --- " * (len(COUNTED_OPS) + 1) + "|")
    for label, counts in op_counts(args.configs[0]).items():
        print(f"| {label} | " + " | ".join(str(counts[op]) for op in COUNTED_OPS) + " |")
    print("\n| config | ours: shared kernels / other (s) | transformers: shared kernels / other (s) | ours other share "
          "| transformers other share | ceiling: transformers total / transformers shared |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.configs:
        split = kernel_time_split(name, args.repeats)
        o, t = split["ours"], split["transformers"]
        o_total, t_total = o["shared"] + o["other"], t["shared"] + t["other"]
        print(f"| {name} | {o['shared']:.3f} / {o['other']:.3f} | {t['shared']:.3f} / {t['other']:.3f} | "
              f"{o['other'] / o_total:.0%} | {t['other'] / t_total:.0%} | {t_total / t['shared']:.2f}x |")
    print("\n| config | step peak, no checkpointing (MiB) | with checkpointing (MiB) | ratio |")
    print("| --- | --- | --- | --- |")
    for name in args.configs:
        plain = memory_in_subprocess(name, False, args.threads)["step_peak_mib"]
        checkpointed = memory_in_subprocess(name, True, args.threads)["step_peak_mib"]
        print(f"| {name} | {plain:.0f} | {checkpointed:.0f} | {checkpointed / plain:.0%} |")


if __name__ == "__main__":
    main()
