"""Wall time and peak memory of MinorityPrompt against plain DDIM on the same model.

Both methods run in this process on the same pipeline, prompts and seeds, alternating. The
script prints the ratio of median wall times and the ratio of peak memory footprints (model
weights included: the GPU allocator's peak, or the CPU resident set size). The last line
reads `time_ratio=X memory_ratio=Y`.

    python benchmarks/speed.py                      # the embedded model on the CPU
    python benchmarks/speed.py --model sd15 --batch-size 4 --repeats 5   # on a GPU
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import PeakMemory  # noqa: E402

from minorityprompt import PromptOptimizer, generate, load_pipeline  # noqa: E402
from minorityprompt.prompts import read_prompts  # noqa: E402

DEFAULT_PROMPTS = Path(__file__).resolve().parents[2] / "shared/data/prompts/coco30k/coco_30k.csv"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="embedded", help="preset, folder or hub id")
    parser.add_argument("--prompts", default=str(DEFAULT_PROMPTS), help="prompt file")
    parser.add_argument("--batch-size", type=int, default=4, help="images per call")
    parser.add_argument("--steps", type=int, default=50, help="sampling steps T")
    parser.add_argument("--guidance", type=float, default=7.5, help="CFG weight w")
    parser.add_argument("--every", type=int, default=3, help="optimize every N steps")
    parser.add_argument("--iterations", type=int, default=3, help="Adam iterations K")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method")
    parser.add_argument("--device", help="torch device (default: CUDA if available)")
    return parser.parse_args()


def timed_run(pipe, prompts, device, optimizer, args) -> tuple[float, PeakMemory, int]:
    gc.collect()
    with PeakMemory(device) as memory:
        started = time.perf_counter()
        result = generate(
            pipe, prompts, seeds=list(range(len(prompts))), optimizer=optimizer,
            num_inference_steps=args.steps, guidance_scale=args.guidance,
            output_type="latent", progress=False,
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
    return seconds, memory, result.model_evaluations


def main() -> None:
    args = parse_args()
    pipe = load_pipeline(args.model, device=args.device)
    device = pipe.unet.device
    prompts = [entry.text for entry in read_prompts(args.prompts, limit=args.batch_size)]
    optimizer = PromptOptimizer(every=args.every, iterations=args.iterations)
    methods = {"ddim": None, "minority": optimizer}

    print(f"model={args.model} device={device} dtype={pipe.unet.dtype} batch={len(prompts)} "
          f"T={args.steps} w={args.guidance} N={args.every} K={args.iterations}")
    timed_run(pipe, prompts, device, None, args)  # warm-up: kernels, allocator, caches
    times = {name: [] for name in methods}
    peaks = {name: [] for name in methods}
    calls = {}
    for _ in range(args.repeats):
        for name, method_optimizer in methods.items():
            seconds, peak, evaluations = timed_run(pipe, prompts, device, method_optimizer, args)
            times[name].append(seconds)
            peaks[name].append(peak)
            calls[name] = evaluations

    for name in methods:
        peak = max(peaks[name], key=lambda memory: memory.peak_bytes)
        print(f"{name}: median {statistics.median(times[name]):.3f} s per batch, peak "
              f"{peak.peak_bytes / 2**20:.1f} MiB (+{peak.increase_bytes / 2**20:.1f} MiB over "
              f"idle), {calls[name]} UNet calls")
    time_ratio = statistics.median(times["minority"]) / statistics.median(times["ddim"])
    memory_ratio = max(m.peak_bytes for m in peaks["minority"]) / max(
        m.peak_bytes for m in peaks["ddim"]
    )
    print(f"time_ratio={time_ratio:.3f} memory_ratio={memory_ratio:.3f}")


if __name__ == "__main__":
    main()
