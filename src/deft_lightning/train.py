"""``python -m deft_lightning.train``: phase 1 (detection) → clean selection → phase 2 (adaptation).

``train(cfg)`` is the plain, testable entry function; ``main`` wraps it with Hydra and turns known
user errors (missing data, unavailable weights, bad options) into one clear message and exit code 2.

Lightning, torch and the pipeline are imported inside the task function, after Hydra has parsed the
command line: ``--help``, ``--cfg job`` and shell completion never pay for them.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from deft_lightning import resolvers  # noqa: F401  (registers the config resolvers hydra.run.dir uses)
from deft_lightning.cli import is_rank_zero, main_entry, run_entry
from deft_lightning.errors import ConfigError

PHASES = ("detect", "adapt")


def train(cfg: DictConfig) -> dict:
    """Run the configured phases; return their metrics. Files go to ``cfg.paths.output_dir``."""
    from deft_lightning.run_dir import open_run

    with open_run(cfg) as run_dir:  # locked; resume checked against the stored config; removed if nothing ran
        return _train(cfg, run_dir)


def _train(cfg: DictConfig, run_dir: Path) -> dict:
    import lightning as L

    from deft_lightning.pipeline.adaptation import run_adaptation
    from deft_lightning.pipeline.data import load_datamodule
    from deft_lightning.pipeline.loggers import finish_wandb
    from deft_lightning.pipeline.detection import load_selection, run_detection
    from deft_lightning.progress import log_to_files
    from deft_lightning.reporting.summary import format_summary

    phases = list(cfg.phases)
    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases:
        raise ConfigError(f"phases must be a non-empty list drawn from {list(PHASES)}, got {phases}")
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    results: dict = {"run_dir": str(run_dir)}
    try:
        dm = load_datamodule(cfg, run_dir)
        selection = None
        if "detect" in phases:
            selection, results["detection"] = run_detection(cfg, dm, run_dir)
        if "adapt" in phases:
            if selection is None and cfg.method.uses_clean_subset:
                path = cfg.adapter.selection or run_dir / "detection" / "selection.csv"
                selection = load_selection(path, dm)  # checks its fingerprint against this run
            # phase 2 depends on the seed alone, not on whether phase 1 ran in this process (resume, phases=[adapt])
            L.seed_everything(int(cfg.seed), workers=True, verbose=False)
            results["adaptation"] = run_adaptation(cfg, dm, run_dir, selection)  # -> dm.use_selection(selection)
    finally:
        finish_wandb()  # multirun jobs must never share, or leave open, a W&B run
    if is_rank_zero():
        text = format_summary(results)
        print(text)
        log_to_files(text)  # the run's train.log too
    return results


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> dict | None:
    return run_entry(train, cfg)


def cli_main() -> None:
    """``python -m deft_lightning.train`` and the console script: Hydra's own config errors exit with 2 too."""
    main_entry(main)


if __name__ == "__main__":
    cli_main()
