"""The benchmark's shared machinery: per-device workloads, the :class:`Bench` that holds settings and
result rows (saved atomically, resumable), the table line and the recorded environment."""


from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch

from benchmarks.measure import measure_call, median

RESULTS_DIR = Path(__file__).resolve().parent / "results"

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
