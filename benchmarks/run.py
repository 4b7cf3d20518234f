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
import datetime as _dt
import os
import platform
import sys
import tempfile
import warnings
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmarks.class_names import class_names
from benchmarks.measure import measure_call, median, rss_peak_supported
from benchmarks.reference import decode_full, reference_detector, reference_prompt_features

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CASES = ("phase1_text", "phase1_step", "phase1_inference", "phase2_epoch", "jpeg")

# Per device: how much work each case does. CPU numbers keep `make bench` to minutes on 2 cores
# (a ViT-B/16 step at batch 64 takes tens of seconds there); GPU numbers give stable medians.
# On CPU there is no separate warm-up: the first call of every case is ours, so one-off costs can only
# understate the speed-up.
PROFILES = {
    "cpu": dict(warmup=0, repeats=1, inference_images=128, inference_classes="first", phase2_samples=128,
                jpeg_images=20, jpeg_repeats=15),
    "cuda": dict(warmup=3, repeats=10, inference_images=512, inference_classes="all", phase2_samples=2048,
                 jpeg_images=50, jpeg_repeats=10),
    "quick": dict(warmup=1, repeats=3, inference_images=64, inference_classes="first", phase2_samples=64,
                  jpeg_images=5, jpeg_repeats=3),
}


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


# ----------------------------------------------------------------------------------------------
class Bench:
    """Shared settings and the result rows of one run."""

    def __init__(self, args: argparse.Namespace) -> None:
        if args.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(args.device)
        profile = dict(PROFILES["quick" if args.quick else self.device.type])
        for key in ("warmup", "repeats", "inference_images", "inference_classes", "phase2_samples"):
            if getattr(args, key) is not None:
                profile[key] = getattr(args, key)
        self.profile = profile
        self.args = args
        self.model_name = "deft-tiny-clip" if args.quick else args.model
        precision = args.precision if args.precision != "auto" else ("bf16" if self.device.type == "cuda" else "32")
        self.precision = precision
        self.rows: list[dict] = []
        self.throughput: list[dict] = []
        self.out = Path(args.out) if args.out else RESULTS_DIR / f"{'quick-' if args.quick else ''}{self.device.type}.json"
        self.environment: dict = {}
        self.previous: dict[str, dict] = {}

    def load_previous(self) -> None:
        """Rows of an earlier, possibly interrupted run with the same settings (``--resume``)."""
        if not self.out.is_file():
            return
        import json

        earlier = json.loads(self.out.read_text())
        def workload(env: dict) -> dict:  # what the cases compute; each row records its own repeats
            return {k: v for k, v in env.get("profile", {}).items() if k not in ("warmup", "repeats")}

        same = all(earlier["environment"].get(k) == self.environment.get(k)
                   for k in ("device", "cpu_model", "torch", "precision", "model", "batch_size"))
        if same and workload(earlier["environment"]) == workload(self.environment):
            self.previous = {row["case"]: row for row in earlier["cases"]
                             if not any(text in row["case"] for text in self.args.redo)}
            print(f"resuming: {len(self.previous)} case(s) kept from {self.out}")
        else:
            print(f"not resuming: {self.out} was measured with other settings")

    def save(self, complete: bool = False) -> None:
        """Written after every case (atomically), so a run killed later keeps what it measured."""
        from deft_lightning.io import write_json

        result = {"environment": self.environment, "complete": complete, "cases": self.rows,
                  "throughput": self.throughput}
        write_json(self.out, result)

    def inference_classes(self) -> list[int]:
        chosen = self.profile["inference_classes"]
        if chosen == "all":
            return list(self.args.classes)
        return self.args.classes[:1] if chosen == "first" else list(chosen)

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def compare(self, case: str, naive: Callable[[], object], ours: Callable[[], object], unit: float = 1.0, **info) -> dict:
        """Interleaved warm-up and timed calls of both paths; one table row (``unit`` divides the times)."""
        if case in self.previous:
            row = self.previous[case]
            self.rows.append(row)
            print(format_row(row) + "   (earlier run)", flush=True)
            return row
        warmup, repeats = self.profile["warmup"], self.profile["repeats"]
        for _ in range(warmup):
            naive()
            ours()
        calls: dict[str, list] = {"naive": [], "ours": []}
        for repeat in range(repeats):
            order = [("ours", ours), ("naive", naive)]
            for label, fn in order if repeat % 2 == 0 else order[::-1]:
                calls[label].append(measure_call(fn, self.device))
        row = {"case": case, **info, "warmup": warmup, "repeats": repeats}
        for label, measured in calls.items():
            row[f"{label}_seconds"] = median([c.seconds for c in measured]) / unit
            row[f"{label}_seconds_all"] = [c.seconds / unit for c in measured]
            row[f"{label}_cpu_seconds"] = median([c.cpu_seconds for c in measured]) / unit
            row[f"{label}_peak_mib"] = max(c.peak_bytes for c in measured) / 2**20
        row["ratio"] = row["naive_seconds"] / row["ours_seconds"]
        row["cpu_time_ratio"] = row["naive_cpu_seconds"] / max(row["ours_cpu_seconds"], 1e-12)
        row["measured_at"] = _dt.datetime.now().isoformat(timespec="seconds")
        row["load_average"] = os.getloadavg()
        self.rows.append(row)
        print(format_row(row), flush=True)
        self.save()
        return row


# ----------------------------------------------------------------------------------------------
def phase1_cases(bench: Bench, classes: list[int]) -> None:
    """Training step and inference pass of the detector, ours vs the reference text path."""
    from deft_lightning.models.clip import create_clip, get_tokenizer
    from deft_lightning.models.peft.vpt import VisualPromptTuning
    from deft_lightning.models.prompts import DualPromptLearner
    from deft_lightning.models.text_encoder import encode_dual_prompts
    from deft_lightning.modules.detector import DetectorModule

    device, batch = bench.device, bench.args.batch_size
    quick = bench.args.quick
    torch.manual_seed(0)
    clip_model, inputs = create_clip(bench.model_name, pretrained=None)
    visual = VisualPromptTuning(clip_model.visual, num_tokens=4 if quick else 20)
    clip_model.to(device)
    visual.to(device)
    tokenizer = get_tokenizer(bench.model_name)
    size = inputs.image_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator).to(device)
    indices = torch.arange(batch, device=device)
    optimizer = partial(torch.optim.SGD, lr=0.03, momentum=0.9, weight_decay=5e-4)

    for num_classes in classes:
        learner = DualPromptLearner(
            class_names(num_classes), tokenizer, clip_model.token_embedding,
            n_ctx=4 if quick else 16, context_length=clip_model.context_length,
        )
        # warmup_epochs=0: the post-warm-up step, as in 9 of the paper's 10 epochs
        ours = DetectorModule(clip_model, visual, learner, optimizer=optimizer, warmup_epochs=0).to(device)
        naive = reference_detector(ours)
        labels = torch.randint(0, num_classes, (batch,), generator=generator).to(device)
        info = {
            "classes": num_classes,
            "prompt_tokens_naive": int(clip_model.context_length),
            "prompt_tokens_ours": int(learner.token_embeds.shape[1]),
            "shared_prefix_tokens": int(learner.shared_prefix_length) if ours.shared_prefix_text else 0,
        }

        if "phase1_text" in bench.args.cases:
            # the text part of a training step alone: where the step's speed-up comes from, per technique
            def text_step(encode: Callable[[], torch.Tensor]) -> None:
                learner.zero_grad(set_to_none=True)
                with bench.autocast():
                    features = encode()
                features.float().square().sum().backward()
                learner.zero_grad(set_to_none=True)

            def naive_text() -> torch.Tensor:
                return torch.cat([reference_prompt_features(naive, learner.pos_ctx),
                                  reference_prompt_features(naive, learner.neg_ctx)])

            for label, shared in (("cut at EOT", False), ("cut at EOT + shared prefix", True)):
                if shared and not ours.shared_prefix_text:
                    continue
                bench.compare(f"phase-1 text fwd+bwd, C={num_classes}, {label}", partial(text_step, naive_text),
                              partial(text_step, partial(encode_dual_prompts, clip_model, learner, shared)), **info)

        if "phase1_step" in bench.args.cases:
            def step(module: DetectorModule) -> None:
                module.train()
                module.on_train_epoch_start()
                opt = module.configure_optimizers()
                with bench.autocast():
                    loss = module.training_step((images, labels, indices), 0)["loss"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            row = bench.compare(f"phase-1 train step, C={num_classes}", partial(step, naive), partial(step, ours), **info)
            bench.throughput.append({"what": f"phase-1 train, C={num_classes}", "batch": batch,
                                     "naive_images_per_s": batch / row["naive_seconds"],
                                     "ours_images_per_s": batch / row["ours_seconds"]})

        if "phase1_inference" in bench.args.cases and num_classes in bench.inference_classes():
            count = bench.profile["inference_images"]
            batches = max(1, count // batch)

            def inference(module: DetectorModule) -> None:
                module.eval()
                module.on_predict_epoch_start()
                with torch.inference_mode(), bench.autocast():
                    for index in range(batches):
                        module.predict_step((images, labels, indices), index)

            row = bench.compare(f"phase-1 inference, {batches * batch} images, C={num_classes}",
                                partial(inference, naive), partial(inference, ours), **info, images=batches * batch)
            bench.throughput.append({"what": f"phase-1 inference, C={num_classes}", "batch": batch,
                                     "naive_images_per_s": batches * batch / row["naive_seconds"],
                                     "ours_images_per_s": batches * batch / row["ours_seconds"]})
        del ours, naive, learner


def phase2_case(bench: Bench) -> None:
    """One phase-2 epoch at sym 0.6: loss-masked over all samples vs sampling the clean subset."""
    from deft_lightning.data.datamodule import NoisyLabelDataModule
    from deft_lightning.data.readers.synthetic import read_synthetic
    from deft_lightning.losses.robust import CrossEntropy
    from deft_lightning.models.backbones import build_clip_classifier
    from deft_lightning.modules.adapter import AdapterModule

    device, batch = bench.device, bench.args.batch_size
    num_classes = 100
    samples = bench.profile["phase2_samples"]
    reader = partial(read_synthetic, num_classes=num_classes, num_train=samples, num_test=8, image_size=32, seed=0)
    workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    dm = NoisyLabelDataModule(reader, None, "bench", {"mode": "sym", "ratio": 0.6, "seed": 0},
                              batch_size=batch, num_workers=workers)
    dm.load()
    torch.manual_seed(0)
    model = build_clip_classifier(num_classes, model_name=bench.model_name, pretrained=None).to(device)
    dm.configure_inputs(model.input_config)
    clean = dm.given_labels == dm.true_labels
    optimizer = partial(torch.optim.SGD, lr=5e-4, momentum=0.9, weight_decay=5e-4)
    naive = AdapterModule(model, num_classes, CrossEntropy(), optimizer).to(device)
    ours = AdapterModule(model, num_classes, CrossEntropy(), optimizer).to(device)
    # one loader per path, made once as Lightning does per fit, so persistent workers persist across epochs
    from deft_lightning.selection.clean_selection import CleanSelection

    loaders = {}
    selection = CleanSelection(np.arange(len(clean)), dm.given_labels, dm.given_labels, clean.astype(float), clean)
    for label, chosen in (("naive", None), ("ours", selection)):
        dm.use_selection(chosen)
        loaders[label] = dm.train_dataloader()
    is_clean = torch.as_tensor(clean, device=device)  # the reference's loss mask: every sample seen, the noisy weighted 0
    seen: dict[str, int] = {}  # images trained per epoch

    def epoch(module: AdapterModule, label: str) -> None:
        module.train()
        opt = module.configure_optimizers()
        count = 0
        for index, (x, y, idx) in enumerate(loaders[label]):
            x, y, idx = (t.to(device, non_blocking=True) for t in (x, y, idx))
            batch = (x, y, idx, is_clean[idx]) if label == "naive" else (x, y, idx)
            with bench.autocast():
                loss = module.training_step(batch, index)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            count += len(x)
        opt.zero_grad(set_to_none=True)
        seen[label] = count

    info = {"samples": samples, "clean_samples": int(clean.sum()), "noise": "sym 0.6", "classes": num_classes,
            "naive_images": samples, "ours_images": int(clean.sum())}
    row = bench.compare(f"phase-2 epoch, sym 0.6, {samples} samples", partial(epoch, naive, "naive"),
                        partial(epoch, ours, "ours"), **info)
    if seen:
        assert seen == {"naive": row["naive_images"], "ours": row["ours_images"]}, seen
    bench.throughput.append({"what": "phase-2 train", "batch": batch,
                             "naive_images_per_s": row["naive_images"] / row["naive_seconds"],
                             "ours_images_per_s": row["ours_images"] / row["ours_seconds"]})


def jpeg_cases(bench: Bench) -> None:
    """Decode + resize of one JPEG, per image (ms), full decode vs reduced-size decode."""
    from PIL import Image, ImageOps
    from torchvision import transforms as T

    from deft_lightning.data.image_io import load_rgb

    count = bench.profile["jpeg_images"]
    saved_profile = dict(bench.profile)
    bench.profile.update(warmup=1, repeats=bench.profile["jpeg_repeats"])
    photo, source = sample_photo()
    with tempfile.TemporaryDirectory() as tmp:
        for (width, height), target in (((500, 500), 224), ((500, 500), 256), ((1024, 768), 256)):
            path = os.path.join(tmp, f"{width}x{height}.jpg")
            ImageOps.fit(photo, (width, height), Image.BICUBIC).save(path, quality=JPEG_QUALITY)
            resize = T.Resize(target)

            def naive() -> None:
                for _ in range(count):
                    resize(decode_full(path))

            def ours() -> None:
                for _ in range(count):
                    resize(load_rgb(path, target))

            decoded = load_rgb(path, target).size
            bench.compare(f"JPEG {width}x{height} -> {target} (per image, ms)", naive, ours, unit=count / 1000.0,
                          decoded_size_ours=list(decoded), decoded_size_naive=[width, height], source=source,
                          quality=JPEG_QUALITY, file_bytes=os.path.getsize(path))
    bench.profile.clear()
    bench.profile.update(saved_profile)


JPEG_QUALITY = 75  # libjpeg's and Pillow's default


def sample_photo():
    """A real photograph (scikit-learn's sample image, a project dependency): decoding cost depends on
    image content, and synthetic textures are far from photos. Falls back to a smooth synthetic image."""
    from PIL import Image

    try:
        import sklearn.datasets

        path = Path(sklearn.datasets.__file__).parent / "images" / "china.jpg"
        with Image.open(path) as image:
            return image.convert("RGB"), "scikit-learn sample photo china.jpg (640x427), re-encoded"
    except (ImportError, OSError):
        rng = np.random.default_rng(0)
        coarse = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
        return Image.fromarray(coarse).resize((640, 480), Image.BICUBIC), "synthetic smooth image (no sample photo found)"


# ----------------------------------------------------------------------------------------------
def format_row(row: dict) -> str:
    """One table line: median wall time and peak memory of each path, the wall-time ratio, and the
    ratio of process CPU time (user + system), which other processes' load disturbs much less."""
    unit = "ms" if "ms)" in row["case"] else "s"

    def cell(label: str) -> str:
        return f"{row[f'{label}_seconds']:9.3f} {unit:>2} {row[f'{label}_peak_mib']:8.1f} MiB"

    cpu_ratio = row.get("cpu_time_ratio")
    cpu = f"   {cpu_ratio:5.2f}x" if cpu_ratio is not None else ""
    return f"{row['case']:<56} | {cell('naive')} | {cell('ours')} | {row['ratio']:5.2f}x{cpu}"


def environment(bench: Bench) -> dict:
    import open_clip
    import PIL

    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "device": str(bench.device),
        "cpu_model": cpu_model,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "pillow": PIL.__version__,
        "python": platform.python_version(),
        "precision": "bf16 autocast" if bench.precision == "bf16" else "fp32",
        "model": bench.model_name + " (random weights)",
        "batch_size": bench.args.batch_size,
        "profile": bench.profile,
        "load_average_start": os.getloadavg(),
    }
    if bench.device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(bench.device)
        env["memory_metric"] = "torch.cuda.max_memory_allocated (absolute, model included)"
    else:
        env["memory_metric"] = "peak RSS above the RSS at the start of the call (VmHWM reset via /proc/self/clear_refs)"
    return env


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
