"""``python -m deft_lightning.experiments.toy_table``: the paper's Table 1 comparison in the toy world.

Runs, for every noise setting (default sym 0.2/0.4/0.6 and idn 0.2/0.4), each detector of Table 1
(label-match, small-loss with the oracle noise ratio, small-loss with a GMM split, DEFT) on the
offline toy world (``--experiment toy_v2``, the default, or ``toy``) with the shipped toy CLIP, then
phase 2 after DEFT's selection and the CE baseline on all noisy labels. Everything goes through the same ``train()`` as ``python -m deft_lightning.train
experiment=...``, one run directory per cell, and the tables come from ``deft_lightning.aggregate``
(``results/results.md`` and ``results/noise_curves.png`` under ``--out``). It first prints the shipped
toy CLIP's zero-shot, linear-probe and clean fine-tuning accuracy on the world (``toy.properties``),
against the targets of toy world v2: the premise DEFT builds on.

Each cell is run ``--seeds`` times (default 3), replicate k with its own noise draw and training seed;
the tables average over them (mean ± sample std). Finished cells are skipped, so an interrupted table
resumes where it stopped. ``--jobs`` runs that many cells at once, each in its own process with
``--threads`` torch threads (default: one process per core, one thread each); ``--first-seed`` splits
replicates over separate invocations. A cell that fails is reported with its run directory, the others
go on, and the table exits 1. The world's properties (zero-shot, linear probe, clean fine-tuning) are
measured first, once per output folder.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from deft_lightning.cli import compose_config

DEFAULT_SETTINGS = ("sym:0.2", "sym:0.4", "sym:0.6", "idn:0.2", "idn:0.4")
EXPERIMENTS = ("toy_v2", "toy")


@dataclass(frozen=True)
class Cell:
    """One run of the table: a detector and/or an adaptation method on one noise setting."""

    name: str
    overrides: tuple[str, ...]
    needs: str  # the result file that marks the run finished


CELLS = (
    Cell("label_match", ("detector=label_match", "phases=[detect]"), "detection/summary.json"),
    Cell("small_loss", ("detector=small_loss", "phases=[detect]"), "detection/summary.json"),
    Cell("small_loss_gmm", ("detector=small_loss_gmm", "phases=[detect]"), "detection/summary.json"),
    Cell("deft", ("detector=deft", "method=deft", "phases=[detect,adapt]"), "adaptation/metrics.json"),
    Cell("ce", ("method=ce", "phases=[adapt]"), "adaptation/metrics.json"),
)


def parse_setting(text: str) -> tuple[str, float]:
    mode, _, ratio = text.partition(":")
    if mode not in ("sym", "asym", "idn") or not ratio:
        raise argparse.ArgumentTypeError(f"a setting is MODE:RATIO with MODE in sym/asym/idn, got {text!r}")
    try:
        return mode, float(ratio)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the ratio in {text!r} is not a number") from None


def cell_overrides(cell: Cell, experiment: str, mode: str, ratio: float, replicate: int, run_dir: Path,
                   extra: list[str]) -> list[str]:
    """One run's overrides. Replicate k draws its own noise (``noise.seed=1+k``) and trains from its own
    seed (``seed=k``); replicate 0 is the experiment's own config."""
    return [f"experiment={experiment}", f"noise={mode}", f"noise.ratio={ratio}", f"noise.seed={1 + replicate}",
            f"seed={replicate}", *cell.overrides, f"paths.output_dir={run_dir}", "callbacks.progress_bar=false",
            "logger=csv", *extra]


def world_properties(experiment: str, extra: list[str], out: Path) -> dict:
    """Zero-shot, linear-probe and clean fine-tuning accuracy of the shipped toy CLIP on the experiment's
    dataset (``toy.properties``), measured once per table folder (``properties.json``) and printed
    against the targets. The zero-shot accuracy is the premise DEFT builds on."""
    import json

    import hydra
    import torch

    from deft_lightning.io import write_json
    from deft_lightning.toy.properties import PROPERTY_TARGETS, load_toy_model, measure_properties

    path = out / "properties.json"
    if path.is_file():
        properties = json.loads(path.read_text())
    else:
        cfg = compose_config([f"experiment={experiment}", *extra])
        data = hydra.utils.instantiate(cfg.dataset.reader)(root=cfg.dataset.root)
        torch.manual_seed(0)
        model, tokenizer, inputs = load_toy_model("deft-toy", cfg.paths.cache_dir)
        properties = measure_properties(model, tokenizer, data, inputs.mean, inputs.std)
        write_json(path, properties)
    print(f"world {properties['dataset']} ({properties['num_classes']} classes), shipped toy CLIP:", flush=True)
    for key, (low, high) in PROPERTY_TARGETS.items():
        value = properties.get(key)
        verdict = "within" if value is not None and low <= value <= high else "OUTSIDE"
        print(f"  {key:<20} {value} % ({verdict} the target {low:g}-{high:g})", flush=True)
    return properties


def run_cell(cell: Cell, experiment: str, mode: str, ratio: float, replicate: int, run_dir: Path, extra: list[str],
             verbose: bool) -> str:
    """Run one cell unless its results exist; return what happened."""
    from deft_lightning.train import train

    if (run_dir / cell.needs).is_file():
        return "done earlier"
    start = time.perf_counter()
    cfg = compose_config(cell_overrides(cell, experiment, mode, ratio, replicate, run_dir, extra))
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with sink:
        train(cfg)
    return f"{time.perf_counter() - start:.0f} s"


def quiet_logging() -> None:
    """Keep Lightning's messages and the runs' epoch lines out of the table's output (one line per cell)."""
    import logging
    import warnings

    import lightning.pytorch  # noqa: F401  (sets its loggers' levels on import; ours below must come after)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # a run sets its own loggers back to INFO (progress.configure_logging), so levels alone do not hold
    logging.disable(logging.INFO)
    warnings.filterwarnings("ignore", module="lightning")


def start_worker(threads: int, verbose: bool) -> None:
    """Set up one process that runs cells: its torch threads and, unless verbose, quiet logging."""
    import torch

    torch.set_num_threads(threads)
    if not verbose:
        quiet_logging()


def try_cell(*args) -> tuple[bool, str]:
    """:func:`run_cell` that reports a failure instead of raising, so the other cells go on."""
    try:
        return True, run_cell(*args)
    except Exception as error:  # any failure of one run: reported with its run directory, the table exits 1
        detail = traceback.format_exc(limit=-3)
        return False, f"FAILED ({type(error).__name__}: {error}); see {args[5]}\n{detail}"


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deft_lightning.experiments.toy_table",
                                     description=__doc__.split("\n\n")[0].split(": ", 1)[-1])
    parser.add_argument("--experiment", choices=EXPERIMENTS, default="toy_v2",
                        help="the toy world and its settings: toy_v2 (default, CLIP-like headroom) or toy (v1)")
    parser.add_argument("--seeds", type=int, default=3, help="replicates per cell: noise and training seeds (default 3)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="first replicate to run (e.g. 2 with --seeds 1 in a second process on another core)")
    parser.add_argument("--out", default=None,
                        help="folder of the run directories and results/ (default outputs/toy_table/EXPERIMENT)")
    parser.add_argument("--settings", nargs="+", type=parse_setting, default=[parse_setting(s) for s in DEFAULT_SETTINGS],
                        metavar="MODE:RATIO", help=f"noise settings (default: {' '.join(DEFAULT_SETTINGS)})")
    parser.add_argument("--cells", nargs="+", choices=[c.name for c in CELLS], default=[c.name for c in CELLS])
    parser.add_argument("--jobs", type=int, default=None,
                        help="cells run at once, each in its own process (default: one per core)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per cell (default: the cores divided by --jobs, at least 1)")
    parser.add_argument("--verbose", action="store_true", help="show each run's own output")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run, e.g. dataset.reader.num_train=2000")
    args = parser.parse_args(argv)

    from deft_lightning.aggregate import aggregate

    if args.seeds < 1 or args.first_seed < 0:
        parser.error("--seeds must be at least 1 and --first-seed at least 0")
    if (args.jobs is not None and args.jobs < 1) or (args.threads is not None and args.threads < 1):
        parser.error("--jobs and --threads must be at least 1")
    cores = available_cores()
    jobs = args.jobs or cores
    threads = args.threads or max(1, cores // jobs)
    if not args.verbose:
        quiet_logging()
    out = Path(args.out or f"outputs/toy_table/{args.experiment}")
    start = time.perf_counter()
    world_properties(args.experiment, args.overrides, out)
    cells = [c for c in CELLS if c.name in args.cells]
    # One whole table per replicate, in order: an early stop still covers every cell.
    work = [(cell, args.experiment, mode, ratio, replicate, out / f"{mode}_{ratio:g}" / f"seed{replicate}" / cell.name,
             args.overrides, args.verbose)
            for replicate in range(args.first_seed, args.first_seed + args.seeds)
            for mode, ratio in args.settings for cell in cells]
    print(f"{len(work)} runs, {min(jobs, len(work))} at a time with {threads} torch thread(s) each", flush=True)
    failed = []
    for done, (item, (ok, status)) in enumerate(run_all(work, jobs, threads, args.verbose), start=1):
        cell, _, mode, ratio, replicate, run_dir = item[:6]
        print(f"[{done}/{len(work)}] {mode} {ratio:g} seed {replicate} {cell.name}: {status}", flush=True)
        if not ok:
            failed.append(run_dir)
    files = aggregate(out, out / "results")
    print(files["markdown"].read_text())
    print(f"tables: {files['markdown']}\nplot:   {files['plot']}\ntotal:  {time.perf_counter() - start:.0f} s")
    if failed:
        print(f"{len(failed)} run(s) failed and are missing from the tables:", *failed, sep="\n  ", file=sys.stderr)
        return 1
    return 0


def run_all(work: list[tuple], jobs: int, threads: int, verbose: bool):
    """Yield (item, (ok, status)) for every item of ``work``, in process when ``jobs`` is 1, else as they finish."""
    if jobs == 1 or len(work) <= 1:
        start_worker(threads, verbose)
        for item in work:
            yield item, try_cell(*item)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no forked torch state
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=start_worker, initargs=(threads, verbose)) as pool:
        futures = {pool.submit(try_cell, *item): item for item in work}
        for future in as_completed(futures):
            yield futures[future], future.result()


if __name__ == "__main__":
    sys.exit(main())
