"""``make bench``: the optimised paths against the naive reference paths, measured in one process.

Cases (paper settings: CLIP ViT-B/16 architecture with random weights, batch 64, 224 px):

- phase-1 text features alone (forward + backward of both prompt sets), naive against the cut
  prompts with and without the shared prefix: where the training-step gain comes from.
- phase-1 training step (forward + backward + SGD step) at C = 100 and C = 200. Naive: both prompt
  sets through the text tower at the full 77-token context, in two calls, every step. Ours: the
  framework's ``DetectorModule.training_step`` (prompts cut after the longest EOT, the shared
  [SOS]+context prefix run once per set, both sets in one call).
- phase-1 inference pass (``predict_step`` over a number of images). Naive: the text features are
  recomputed at full context for every batch. Ours: computed once (truncated) and cached.
- phase-2 epoch at sym 0.6 on a small synthetic dataset, same backbone and DataModule. Naive: every
  sample is forwarded and the loss masked to the clean ones (``adapter.mask_mode=loss_mask``). Ours:
  only the clean indices are sampled (``mask_mode=subset``, the default). The clean mask is the oracle
  one (given label == true label), standing in for phase 1's selection.
- JPEG decoding (plus the resize the transform does). Naive: full-size decode. Ours:
  ``data.image_io.load_rgb`` with reduced-size (draft) decoding.

Naive and ours run interleaved (ours first, then alternating) so a change in machine load hits both; each call is timed
and its peak memory recorded (see :mod:`benchmarks.measure`); the table shows medians and the
largest peak. On CUDA the model runs in bf16 autocast (as ``trainer=gpu``), on CPU in fp32. Results
go to ``benchmarks/results/<device>.json`` (written atomically).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from benchmarks.cases import jpeg_cases, phase1_cases, phase2_case
from benchmarks.harness import Bench, environment
from benchmarks.measure import rss_peak_supported

CASES = ("phase1_text", "phase1_step", "phase1_inference", "phase2_epoch", "jpeg")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--classes", nargs="+", type=int, default=[100, 200], help="C for the phase-1 cases")
    parser.add_argument("--model", default="ViT-B-16", help="open_clip architecture (random weights)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls of each path per case")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls of each path per case (median)")
    parser.add_argument("--inference-images", type=int, default=None, help="images in the inference pass")
    parser.add_argument("--inference-classes", nargs="+", type=int, default=None, help="C values of the inference case (default: the first --classes on CPU, all on CUDA)")
    parser.add_argument("--phase2-samples", type=int, default=None)
    parser.add_argument("--precision", default="auto", choices=["auto", "32", "bf16"], help="auto: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--quick", action="store_true", help="tiny CLIP and small counts: checks the harness in seconds")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/<device>.json)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the cases already in --out (same settings) and measure only the missing ones")
    parser.add_argument("--redo", nargs="+", default=[], metavar="TEXT",
                        help="with --resume: measure again the cases whose name contains TEXT")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message=".*self.log.*")
    warnings.filterwarnings("ignore", message=".*No pretrained weights loaded.*")
    import logging

    logging.getLogger().setLevel(logging.ERROR)  # open_clip's "initialized randomly" notice
    bench = Bench(args)
    if bench.device.type == "cpu" and not rss_peak_supported():
        raise SystemExit("CPU peak memory needs Linux /proc/self/clear_refs; not available here")
    env = environment(bench)
    bench.environment = env
    if args.resume:
        bench.load_previous()
    print(f"deft_lightning benchmark on {env.get('gpu', env['cpu_model'])} ({env['cpu_cores']} cores), torch "
          f"{env['torch']}, {env['precision']}, {env['model']}, batch {args.batch_size}")
    print(f"memory: {env['memory_metric']}")
    print(f"{'case':<56} | {'naive':^25} | {'ours':^25} | ratio  cpu-time ratio")
    print("-" * 131, flush=True)
    phase1 = bool({"phase1_text", "phase1_step", "phase1_inference"} & set(args.cases))
    if phase1:
        phase1_cases(bench, args.classes[:1])
    if "phase2_epoch" in args.cases:
        phase2_case(bench)
    if "jpeg" in args.cases:
        jpeg_cases(bench)
    if phase1 and len(args.classes) > 1:  # the larger C last: its naive step needs the most memory
        phase1_cases(bench, args.classes[1:])
    env["load_average_end"] = os.getloadavg()

    print("\nthroughput (images/s)")
    for item in bench.throughput:
        print(f"  {item['what']:<36} naive {item['naive_images_per_s']:9.2f}   ours {item['ours_images_per_s']:9.2f}")
    bench.save(complete=True)
    print(f"\nwrote {bench.out}")
    return {"environment": env, "complete": True, "cases": bench.rows, "throughput": bench.throughput}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
