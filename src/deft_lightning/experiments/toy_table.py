"""``python -m deft_lightning.experiments.toy_table``: the paper's Table 1 comparison in the toy world.

Runs, for every noise setting (default sym 0.2/0.4/0.6 and idn 0.2/0.4), each detector of Table 1 on
the offline toy dataset with the pretrained toy CLIP (label-match, small-loss with the oracle noise
ratio, small-loss with a GMM split, DEFT), then phase 2 after DEFT's selection and the CE baseline
on all noisy labels. Everything goes through the same ``train()`` as ``python -m deft_lightning.train
experiment=toy``, one run directory per cell, and the tables come from ``deft_lightning.aggregate``
(``results/results.md`` and ``results/noise_curves.png`` under ``--out``). It first prints the toy
CLIP's zero-shot accuracy on the toy test set: the premise DEFT builds on.

Finished cells are skipped, so an interrupted table resumes where it stopped. About 21 minutes on
two CPU cores with the defaults (measured; the toy CLIP ships with the package).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from deft_lightning.cli import compose_config

DEFAULT_SETTINGS = ("sym:0.2", "sym:0.4", "sym:0.6", "idn:0.2", "idn:0.4")


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


def cell_overrides(cell: Cell, mode: str, ratio: float, run_dir: Path, extra: list[str]) -> list[str]:
    return ["experiment=toy", f"noise={mode}", f"noise.ratio={ratio}", *cell.overrides,
            f"paths.output_dir={run_dir}", "callbacks.progress_bar=false", "logger=csv", *extra]


def print_zero_shot(extra: list[str]) -> float:
    """Zero-shot accuracy of the toy CLIP on the configured toy test set (the shipped weights: no pretraining)."""
    import hydra
    import numpy as np
    import torch

    from deft_lightning.toy.pretrain import input_config, load_pretrained
    from deft_lightning.toy.zero_shot import PROMPT, zero_shot_accuracy

    cfg = compose_config(["experiment=toy", *extra])
    reader = hydra.utils.instantiate(cfg.dataset.reader)
    data = reader(root=cfg.dataset.root)
    test = next(iter(data.test.values()))
    torch.manual_seed(0)
    model, tokenizer = load_pretrained(cfg.paths.cache_dir)
    inputs = input_config()
    accuracy = zero_shot_accuracy(model, tokenizer, test.images, np.asarray(test.clean_labels), data.class_names,
                                  inputs.mean, inputs.std)
    print(f"toy CLIP zero-shot accuracy on the toy test set ({len(test)} images, {PROMPT!r}): {100 * accuracy:.1f}%",
          flush=True)
    return accuracy


def run_cell(cell: Cell, mode: str, ratio: float, run_dir: Path, extra: list[str], verbose: bool) -> str:
    """Run one cell unless its results exist; return what happened."""
    from deft_lightning.train import train

    if (run_dir / cell.needs).is_file():
        return "done earlier"
    start = time.perf_counter()
    cfg = compose_config(cell_overrides(cell, mode, ratio, run_dir, extra))
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with sink:
        train(cfg)
    return f"{time.perf_counter() - start:.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deft_lightning.experiments.toy_table",
                                     description=__doc__.split("\n\n")[0].split(": ", 1)[-1])
    parser.add_argument("--out", default="outputs/toy_table", help="folder of the run directories and results/")
    parser.add_argument("--settings", nargs="+", type=parse_setting, default=[parse_setting(s) for s in DEFAULT_SETTINGS],
                        metavar="MODE:RATIO", help=f"noise settings (default: {' '.join(DEFAULT_SETTINGS)})")
    parser.add_argument("--cells", nargs="+", choices=[c.name for c in CELLS], default=[c.name for c in CELLS])
    parser.add_argument("--verbose", action="store_true", help="show each run's own output")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run, e.g. dataset.reader.num_train=2000")
    args = parser.parse_args(argv)

    import logging
    import warnings

    import lightning.pytorch  # noqa: F401  (sets its loggers' levels on import; ours below must come after)

    from deft_lightning.aggregate import aggregate

    if not args.verbose:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module="lightning")
    out = Path(args.out)
    start = time.perf_counter()
    print_zero_shot(args.overrides)
    cells = [c for c in CELLS if c.name in args.cells]
    total = len(cells) * len(args.settings)
    done = 0
    for mode, ratio in args.settings:
        for cell in cells:
            done += 1
            run_dir = out / f"{mode}_{ratio:g}" / cell.name
            status = run_cell(cell, mode, ratio, run_dir, args.overrides, args.verbose)
            print(f"[{done}/{total}] {mode} {ratio:g} {cell.name}: {status}", flush=True)
    files = aggregate(out, out / "results")
    print(files["markdown"].read_text())
    print(f"tables: {files['markdown']}\nplot:   {files['plot']}\ntotal:  {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
