"""Phase 1 as a function: train the detector, run the final inference pass, write the selection and report.

``detector.kind`` picks the detector: ``deft`` (SPEC §2), or the baselines ``label_match`` (zero-shot,
no training) and ``small_loss`` (SPEC §4). With ``detector.weights=PATH`` a saved detector artefact is
rebuilt from its own config and only the inference pass runs.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from deft_lightning.callbacks import OnlineSelectionRecorder, SelectionWriter
from deft_lightning.data.datamodule import NoisyLabelDataModule
from deft_lightning.io import atomic_path
from deft_lightning.models.clip import create_clip, get_tokenizer, resolve_logit_scale
from deft_lightning.models.inputs import InputConfig
from deft_lightning.models.prompts import DualPromptLearner
from deft_lightning.modules.detector import DetectorModule
from deft_lightning.pipeline.baselines import build_label_match, build_small_loss
from deft_lightning.pipeline.common import build_trainer, finish_wandb, log_detection_images, resume_checkpoint
from deft_lightning.reporting.report import P_CLEAN_MEANING, write_report
from deft_lightning.selection.clean_selection import CleanSelection

DETECTION_DIR = "detection"
DETECTOR_KINDS = ("deft", "label_match", "small_loss")
TRAINED_KINDS = ("deft", "small_loss")
# Keys of the current detector config that win over a reloaded artefact's: they describe this run and
# this dataset (batch size, selection rule options, where the frozen CLIP file is), not the detector.
RUNTIME_KEYS = ("batch_size", "real_noise_variant", "forget_rate", "weights")


def detector_kind(cfg: DictConfig) -> str:
    kind = str(cfg.detector.get("kind", "deft"))
    if kind not in DETECTOR_KINDS:
        raise ValueError(f"detector.kind must be one of {list(DETECTOR_KINDS)}, got {kind!r}")
    return kind


def build_detector(cfg: DictConfig, class_names: list[str], noise=None) -> tuple[L.LightningModule, InputConfig]:
    """The phase-1 module named by ``detector.kind`` and the input its CLIP expects."""
    kind = detector_kind(cfg)
    if kind == "label_match":
        return build_label_match(cfg, class_names)
    if kind == "small_loss":
        return build_small_loss(cfg, class_names, noise)
    return build_deft_detector(cfg, class_names)


def build_deft_detector(cfg: DictConfig, class_names: list[str]) -> tuple[DetectorModule, InputConfig]:
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
        logit_scale=resolve_logit_scale(cfg.detector.get("logit_scale"), clip_model),
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

    weights_path = cfg.detector.get("weights")
    artefact = None
    if weights_path:
        artefact = read_detector_weights(weights_path)
        cfg = config_from_artefact(cfg, artefact)
    kind = detector_kind(cfg)
    module, inputs = build_detector(cfg, dm.class_names, dm.noise)
    if artefact is not None:
        load_detector_weights(module, artefact, weights_path)
    module.set_eval_sets(dm.eval_set_names)
    dm.configure_inputs(inputs)
    dm.batch_size = int(cfg.detector.batch_size)
    dm.set_clean_mask(None)

    writer = SelectionWriter(out_dir, dm.given_labels, dm.true_labels, sample_ids=dm.files.train.sample_ids,
                             class_names=dm.class_names)
    train_now = kind in TRAINED_KINDS and artefact is None
    if train_now:
        online = OnlineSelectionRecorder(out_dir, dm.num_train, dm.given_labels, dm.true_labels)
        trainer = build_trainer(cfg, "detection", run_dir, int(cfg.detector.epochs), [online, writer])
        trainer.fit(module, datamodule=dm, ckpt_path=resume_checkpoint(cfg, run_dir, "detection"))
        if not any(key.startswith("val/") for key in trainer.callback_metrics):
            trainer.validate(module, datamodule=dm, verbose=False)  # resumed after the last epoch: nothing ran
    else:  # zero-shot or a reloaded artefact: only evaluate and run the inference pass
        trainer = build_trainer(cfg, "detection", run_dir, 1, [writer])
        trainer.validate(module, datamodule=dm, verbose=False)
    eval_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    trainer.predict(module, dataloaders=dm.inference_dataloader(), return_predictions=False)

    selection = writer.selection
    if selection is None:  # a spawn-launched inference pass ran in child processes: read what rank 0 wrote
        selection = CleanSelection.read_csv(out_dir / "selection.csv")
    rule = kind + ("_gmm" if kind == "small_loss" and str(cfg.detector.get("selection")) == "gmm" else "")
    summary = {"detector": str(cfg.detector.get("name", kind)), "detector_kind": kind, "p_clean": P_CLEAN_MEANING[rule],
               "selection_source": str(cfg.detector.get("selection_source", "inference")),
               "inference": selection.metrics()}
    if artefact is not None:
        summary["detector_weights_from"] = str(weights_path)
    online_mask = _online_mask(out_dir, dm) if train_now else None
    if online_mask is not None:
        summary["online_last_epoch"] = _mask_metrics(online_mask, dm)
    summary["detector_test_accuracy"] = eval_metrics
    summary["noise"] = dm.noise.summary()
    if trainer.is_global_zero:
        if any(p.requires_grad for p in module.parameters()):
            save_detector_weights(module, cfg, out_dir / "detector_weights.pt", dm.class_names)
        report = cfg.get("report") or {}
        summary = write_report(  # summary.json last: it marks phase 1 as complete
            out_dir, selection, summary, dm.files.train, dm.num_classes,
            num_suspects=int(report.get("num_suspects", 36)), parquet=bool(report.get("parquet", True)),
            title=str(cfg.dataset.get("name", "")) or None,
        )
        log_detection_images(trainer, selection, out_dir, summary)
    trainer.strategy.barrier("detection_summary")
    finish_wandb()  # phase 2 gets its own W&B run
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


def save_detector_weights(module: L.LightningModule, cfg: DictConfig, path: Path, class_names: list[str] | None = None) -> None:
    """Only the trained prompts and PEFT parameters (kilobytes to MB), plus the config that built them."""
    payload = {
        "kind": detector_kind(cfg),
        "state_dict": module.trainable_state_dict(),
        "detector": OmegaConf.to_container(cfg.detector, resolve=True),
        "peft": OmegaConf.to_container(cfg.peft, resolve=True),
        "class_names": list(class_names or []),
        "extra": module.artefact_extras() if hasattr(module, "artefact_extras") else {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_detector_weights(path: str | Path) -> dict:
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"detector.weights={path}: no such file (expected a detection/detector_weights.pt)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "state_dict" not in payload or "detector" not in payload:
        raise ValueError(f"{path} is not a detector artefact (detection/detector_weights.pt of a phase-1 run)")
    return payload


def config_from_artefact(cfg: DictConfig, artefact: dict) -> DictConfig:
    """This run's config with the detector and PEFT the artefact was trained with.

    Only ``RUNTIME_KEYS`` (and a local CLIP file given now) keep their current values; the selection
    always comes from the inference pass, since nothing is trained.
    """
    current = OmegaConf.to_container(cfg.detector, resolve=True)
    detector = dict(artefact["detector"])
    detector.setdefault("kind", "deft")
    for key in RUNTIME_KEYS:
        if key in current:
            detector[key] = current[key]
    if (current.get("clip") or {}).get("weights"):
        detector["clip"] = dict(detector.get("clip") or {}, weights=current["clip"]["weights"])
    detector["selection_source"] = "inference"
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.detector = OmegaConf.create(detector)
        cfg.peft = OmegaConf.create(artefact["peft"])
    return cfg


def load_detector_weights(module: L.LightningModule, artefact: dict, path) -> None:
    """Put the artefact's tensors into a freshly built detector; refuse one that does not fit."""
    saved = artefact["state_dict"]
    own = module.state_dict()
    expected = set(module.trainable_state_dict())
    unknown = sorted(k for k in saved if k not in own)
    wrong_shape = sorted(k for k in saved if k in own and tuple(own[k].shape) != tuple(saved[k].shape))
    absent = sorted(expected - set(saved))
    if unknown or wrong_shape or absent:
        details = "; ".join(f"{what}: {names[:3]}" for what, names in
                            (("unknown", unknown), ("shape differs", wrong_shape), ("missing", absent)) if names)
        raise ValueError(
            f"detector.weights={path} does not fit the detector built from its config ({details}). "
            "Class-specific contexts and a small-loss head need the same classes as the training data "
            f"({len(artefact.get('class_names') or [])} saved)."
        )
    module.load_state_dict(saved, strict=False)
    for name, value in (artefact.get("extra") or {}).items():
        if hasattr(module, name):
            setattr(module, name, value)


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
