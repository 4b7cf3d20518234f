"""``python -m deft_lightning.detect``: phase 1 only — which of my labels are wrong?

Trains the configured detector (``detector=deft`` by default; ``label_match`` and ``small_loss`` are
the paper's baselines), or reloads a saved one with ``detector.weights=PATH``, and writes the
label-issue report to ``RUN/detection/``. ``detect(cfg)`` is the testable entry function.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from deft_lightning import resolvers  # noqa: F401  (registers the config resolvers hydra.run.dir uses)
from deft_lightning.cli import is_rank_zero, main_entry, run_entry

DETECTION_DIR = "detection"  # = pipeline.detection.DETECTION_DIR (not imported here: it pulls in torch)


def detect(cfg: DictConfig) -> dict:
    """Run phase 1 and write its report; return the detection summary. Files go to ``cfg.paths.output_dir``."""
    from deft_lightning.run_dir import open_run

    with open_run(cfg) as run_dir:  # locked; resume checked against the stored config; removed if nothing ran
        return _detect(cfg, run_dir)


def _detect(cfg: DictConfig, run_dir: Path) -> dict:
    import lightning as L

    from deft_lightning.pipeline.data import load_datamodule
    from deft_lightning.pipeline.loggers import finish_wandb
    from deft_lightning.pipeline.detection import run_detection
    from deft_lightning.progress import log_to_files
    from deft_lightning.reporting.summary import format_summary

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    results: dict = {"run_dir": str(run_dir)}
    try:
        dm = load_datamodule(cfg, run_dir)
        _, results["detection"] = run_detection(cfg, dm, run_dir)
    finally:
        finish_wandb()
    if is_rank_zero():
        text = format_summary(results) + f"\nlabel-issue report: {run_dir / DETECTION_DIR / 'report.md'}"
        print(text)
        log_to_files(text)  # the run's detect.log too
    return results


@hydra.main(version_base="1.3", config_path="conf", config_name="detect")
def main(cfg: DictConfig) -> dict | None:
    return run_entry(detect, cfg)


def cli_main() -> None:
    """``python -m deft_lightning.detect`` and the console script: Hydra's own config errors exit with 2 too."""
    main_entry(main)


if __name__ == "__main__":
    cli_main()
