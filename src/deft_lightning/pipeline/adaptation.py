"""Phase 2 as a function: fine-tune the configured backbone on the clean subset, report accuracy.

Every phase-2 run starts the same way, whatever came before it in this process (phase 1, a spawn
launch, a resume, ``phases=[adapt]`` with ``adapter.selection=PATH``): ``dm.use_selection(selection)``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from deft_lightning.data.datamodule import HELDOUT_SET, MASK_MODES, NoisyLabelDataModule
from deft_lightning.errors import ConfigError
from deft_lightning.io import write_json
from deft_lightning.modules.adapter import AdapterModule
from deft_lightning.pipeline.checkpoints import resume_checkpoint
from deft_lightning.pipeline.loggers import finish_wandb
from deft_lightning.pipeline.trainer import build_trainer
from deft_lightning.pipeline.gmm_refit import GMMRefit
from deft_lightning.selection.clean_selection import CleanSelection

ADAPTATION_DIR = "adaptation"


def run_adaptation(cfg: DictConfig, dm: NoisyLabelDataModule, run_dir: Path, selection: CleanSelection | None) -> dict:
    """Fine-tune on ``selection`` (phase 1's, or one read from a file; None for the baselines that train on
    every given label) and write ``adaptation/metrics.json``."""
    out_dir = run_dir / ADAPTATION_DIR
    if cfg.get("resume") and (out_dir / "metrics.json").is_file():  # written last: phase 2 is complete
        print(f"Phase 2 already complete in {out_dir}; reusing its metrics.")
        return json.loads((out_dir / "metrics.json").read_text())
    mask_mode = str(cfg.adapter.mask_mode)
    if mask_mode not in MASK_MODES:
        raise ConfigError(f"adapter.mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
    if dm.mask_mode != mask_mode:
        raise ValueError(f"the DataModule was built with mask_mode={dm.mask_mode!r}, the config says {mask_mode!r}")
    if cfg.method.uses_clean_subset and selection is None:
        raise ConfigError(f"method={cfg.method.name} trains on the clean subset: run phase 1 or pass adapter.selection=PATH")

    model = instantiate(cfg.backbone.model)(num_classes=dm.num_classes, class_names=dm.class_names)
    criterion = instantiate(cfg.method.loss)(num_samples=dm.num_train, num_classes=dm.num_classes)
    # the baselines train on every given label; the gmm baseline starts there too (warm-up) and then
    # hands its own per-epoch selection to dm.use_selection
    dm.use_selection(selection if cfg.method.uses_clean_subset else None,
                     source=str(cfg.detector.get("selection_source", "inference")))
    gmm_cfg = cfg.method.get("gmm")
    callbacks = []
    trainer_cfg = cfg
    if gmm_cfg is not None:
        callbacks.append(GMMRefit(dm, warmup_epochs=int(gmm_cfg.warmup_epochs), threshold=float(gmm_cfg.threshold),
                                  seed=int(cfg.seed), records_path=out_dir / "gmm_selection.json"))
        trainer_cfg = with_trainer_options(cfg, reload_dataloaders_every_n_epochs=1)  # a new selection each epoch
    dm.configure_inputs(model.input_config)
    dm.batch_size = int(cfg.backbone.batch_size)
    module = AdapterModule(
        model,
        num_classes=dm.num_classes,
        criterion=criterion,
        optimizer=instantiate(cfg.backbone.optimizer),
        scheduler=instantiate(cfg.adapter.scheduler) if cfg.adapter.get("scheduler") else None,
        eval_set_names=dm.eval_set_names,
        channels_last=bool(cfg.backbone.get("channels_last", False)),
        selection_set=HELDOUT_SET if dm.val_fraction > 0 else None,
    )
    trainer = build_trainer(trainer_cfg, "adaptation", run_dir, int(cfg.backbone.epochs), callbacks)
    trainer.fit(module, datamodule=dm, ckpt_path=resume_checkpoint(cfg, run_dir, "adaptation"),
                weights_only=True)  # a checkpoint is loaded as tensors and plain values only

    logged = trainer.callback_metrics
    if any(f"val/{name}_acc" not in logged for name in dm.eval_set_names):
        # resumed from the final epoch's checkpoint: fit had nothing left to run, so evaluate once
        trainer.validate(module, datamodule=dm, verbose=False)
        logged = trainer.callback_metrics
    metrics = {"method": str(cfg.method.name), "backbone": str(cfg.backbone.name), "mask_mode": mask_mode,
               "num_train_samples": int(len(dm.train_indices)), "test_set_selected_best_note":
               "best = max over epochs of test accuracy (as the paper selects on the test set)"}
    for name in dm.eval_set_names:
        metrics[name] = {
            "best": float(logged[f"val/{name}_acc_best"]),
            "last": float(logged[f"val/{name}_acc"]),
        }
    if dm.val_fraction > 0:
        metrics["num_heldout"] = int(dm.heldout_mask.sum())
        metrics["val_selected"] = {"epoch": int(logged["val/val_selected_epoch"]), **{
            f"{name}_acc" if name == HELDOUT_SET else name: float(logged[f"val/{name}_acc_val_selected"])
            for name in dm.eval_set_names}}
        metrics["val_selected_note"] = ("test accuracy at the (first) epoch with the best held-out accuracy: a seeded "
                                        "split of the noisy training set scored on its given labels, never trained on")
    if gmm_cfg is not None:
        metrics["gmm_selection"] = callbacks[0].load_records()
        if mask_mode == "subset" and metrics["gmm_selection"]:
            metrics["num_train_samples"] = int(metrics["gmm_selection"][-1]["num_clean"])
    if trainer.is_global_zero:
        write_json(out_dir / "metrics.json", metrics)
    trainer.strategy.barrier("adaptation_metrics")
    finish_wandb()
    return metrics



def with_trainer_options(cfg: DictConfig, **options) -> DictConfig:
    """A copy of ``cfg`` whose ``trainer`` node also sets these ``lightning.Trainer`` arguments.

    The trainer schema lists only the keys the shipped YAMLs set, so the node is replaced by a plain
    (resolved) copy with the options added; ``cfg`` itself is left as composed.
    """
    copied = copy.deepcopy(cfg)
    copied.trainer = OmegaConf.merge(OmegaConf.to_container(copied.trainer, resolve=True), options)
    return copied
