"""Phase 1 as a function: train the detector, run the final inference pass, write the selection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from deft_lightning.callbacks import OnlineSelectionRecorder, SelectionWriter
from deft_lightning.data.datamodule import NoisyLabelDataModule
from deft_lightning.io import atomic_path, write_json
from deft_lightning.models.clip import create_clip, get_tokenizer
from deft_lightning.models.inputs import InputConfig
from deft_lightning.models.prompts import DualPromptLearner
from deft_lightning.modules.detector import DetectorModule
from deft_lightning.pipeline.common import build_trainer, resume_checkpoint
from deft_lightning.selection.clean_selection import CleanSelection

DETECTION_DIR = "detection"


def build_detector(cfg: DictConfig, class_names: list[str]) -> tuple[DetectorModule, InputConfig]:
    """CLIP (frozen) + the configured visual PEFT + dual prompts, wrapped in a DetectorModule."""
    clip_cfg = cfg.detector.clip
    clip_model, inputs = create_clip(clip_cfg.model_name, clip_cfg.pretrained, clip_cfg.weights, cfg.paths.cache_dir)
    visual_encoder = instantiate(cfg.peft.module)(visual=clip_model.visual)
    prompt = cfg.detector.prompt
    prompt_learner = DualPromptLearner(
        class_names,
        get_tokenizer(clip_cfg.model_name),
        clip_model.token_embedding,
        n_ctx=prompt.n_ctx,
        class_specific=prompt.class_specific,
        class_position=prompt.class_position,
        init_words=prompt.init_words,
        context_length=clip_model.context_length,
    )
    module = DetectorModule(
        clip_model,
        visual_encoder,
        prompt_learner,
        optimizer=instantiate(cfg.detector.optimizer),
        scheduler=instantiate(cfg.detector.scheduler) if cfg.detector.get("scheduler") else None,
        warmup_epochs=cfg.detector.warmup_epochs,
        logit_scale=cfg.detector.logit_scale,
        real_noise_variant=cfg.detector.real_noise_variant,
    )
    return module, inputs


def detection_done(run_dir: Path) -> bool:
    """A phase 1 is complete once its summary exists: it is written last, atomically."""
    return (run_dir / DETECTION_DIR / "summary.json").is_file()


def run_detection(cfg: DictConfig, dm: NoisyLabelDataModule, run_dir: Path) -> tuple[CleanSelection, dict]:
    out_dir = run_dir / DETECTION_DIR
    if cfg.get("resume") and detection_done(run_dir):
        print(f"Phase 1 already complete in {out_dir}; reusing its selection.")
        return load_selection(out_dir / "selection.csv", dm.num_train), _read_json(out_dir / "summary.json")

    module, inputs = build_detector(cfg, dm.class_names)
    module.set_eval_sets(dm.eval_set_names)
    dm.configure_inputs(inputs)
    dm.batch_size = int(cfg.detector.batch_size)
    dm.set_clean_mask(None)

    writer = SelectionWriter(out_dir, dm.given_labels, dm.true_labels)
    online = OnlineSelectionRecorder(out_dir, dm.num_train)
    trainer = build_trainer(cfg, "detection", run_dir, int(cfg.detector.epochs), [online, writer])
    trainer.fit(module, datamodule=dm, ckpt_path=resume_checkpoint(cfg, run_dir, "detection"))
    eval_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    trainer.predict(module, dataloaders=dm.inference_dataloader(), return_predictions=False)

    selection = CleanSelection.read_csv(out_dir / "selection.csv")
    summary = {"selection_source": str(cfg.detector.selection_source), "inference": selection.metrics()}
    online_mask = _online_mask(out_dir, dm)
    if online_mask is not None:
        summary["online_last_epoch"] = _mask_metrics(online_mask, dm)
    summary["detector_test_accuracy"] = eval_metrics
    summary["noise"] = dm.noise.summary()
    if trainer.is_global_zero:
        save_detector_weights(module, cfg, out_dir / "detector_weights.pt")
        write_json(out_dir / "summary.json", summary)
    trainer.strategy.barrier("detection_summary")
    return selection, summary


def mask_for_phase2(cfg: DictConfig, selection: CleanSelection, run_dir: Path, dm: NoisyLabelDataModule) -> np.ndarray:
    """The inference-pass mask (default), or the reference's last-epoch online decisions."""
    if str(cfg.detector.get("selection_source", "inference")) == "online":
        online = _online_mask(run_dir / DETECTION_DIR, dm)
        if online is None:
            raise FileNotFoundError(f"no online_mask.npy in {run_dir / DETECTION_DIR}: rerun phase 1")
        return online
    return selection.mask(dm.num_train)


def load_selection(path: str | Path, num_samples: int) -> CleanSelection:
    selection = CleanSelection.read_csv(path)
    selection.mask(num_samples)  # validates coverage
    return selection


def save_detector_weights(module: DetectorModule, cfg: DictConfig, path: Path) -> None:
    """Only the trained prompts and PEFT parameters (kilobytes to MB), plus the config that built them."""
    payload = {
        "state_dict": module.trainable_state_dict(),
        "detector": OmegaConf.to_container(cfg.detector, resolve=True),
        "peft": OmegaConf.to_container(cfg.peft, resolve=True),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _online_mask(out_dir: Path, dm: NoisyLabelDataModule) -> np.ndarray | None:
    path = out_dir / "online_mask.npy"
    if not path.is_file():
        return None
    return np.load(path) == 1


def _mask_metrics(mask: np.ndarray, dm: NoisyLabelDataModule) -> dict:
    index = np.arange(dm.num_train)
    return CleanSelection(index, dm.given_labels, dm.given_labels, mask.astype(float), mask, dm.true_labels).metrics()


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text())
