"""Phase 1 as a function: train the detector, run the final inference pass, write the selection and report.

``detector.kind`` names a registered detector (``modules/registry.py``): ``deft`` (SPEC §2), or the
baselines ``label_match`` (zero-shot, no training) and ``small_loss`` (SPEC §4); the entry says whether
it trains, how it is built and how its rows are labelled in the report and the tables. With ``detector.weights=PATH`` a saved detector artefact is
rebuilt from the project's own config nodes and the artefact's checked plain values (see
``pipeline/artefact.py``: an artefact is data, never code) and only the inference pass runs.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from deft_lightning.callbacks import OnlineSelectionRecorder, SelectionWriter
from deft_lightning.data.datamodule import NoisyLabelDataModule
from deft_lightning.errors import ArtifactError, ConfigError, SelectionError
from deft_lightning.io import atomic_path
from deft_lightning.models.clip import get_tokenizer
from deft_lightning.models.inputs import InputConfig
from deft_lightning.models.prompts import DualPromptLearner
from deft_lightning.modules.detector import DetectorModule
from deft_lightning.modules.registry import DetectorEntry, detector_entry
from deft_lightning.pipeline.artefact import (  # noqa: F401  (re-exported: the artefact API lives here too)
    RUNTIME_KEYS,
    artefact_payload,
    check_class_names,
    config_from_artefact,
    read_artefact,
)
from deft_lightning.pipeline.baselines import configured_logit_scale, detector_clip
from deft_lightning.pipeline.checkpoints import resume_checkpoint
from deft_lightning.pipeline.loggers import finish_wandb, log_detection_images
from deft_lightning.pipeline.trainer import build_trainer
from deft_lightning.reporting.report import write_report
from deft_lightning.selection.clean_selection import CleanSelection
from deft_lightning.selection.fingerprint import check_fingerprint, fingerprint_of

DETECTION_DIR = "detection"


def detector_of(cfg: DictConfig) -> DetectorEntry:
    """The registry entry named by ``detector.kind`` (a ConfigError listing the registered kinds otherwise)."""
    if cfg.detector.get("kind") is None:
        raise ConfigError("detector.kind is not set: name a registered detector (e.g. detector=deft)")
    return detector_entry(str(cfg.detector.kind))


def detector_kind(cfg: DictConfig) -> str:
    return detector_of(cfg).kind


def build_detector(cfg: DictConfig, class_names: list[str], noise=None) -> tuple[L.LightningModule, InputConfig]:
    """The phase-1 module and the input its CLIP expects, built by the detector config's own ``builder``
    node (``hydra.utils.instantiate``, as every other component); it must build the registered class."""
    entry = detector_of(cfg)
    if cfg.detector.get("builder") is None:
        raise ConfigError(f"detector={cfg.detector.get('name', entry.kind)} has no builder node: give it "
                          "builder: {_target_: package.module.function, _partial_: true}, a function "
                          "(cfg, class_names, noise) -> (module, InputConfig)")
    module, inputs = instantiate(cfg.detector.builder)(cfg, class_names, noise)
    if not isinstance(module, entry.module_class):
        raise ConfigError(f"detector.builder of detector.kind={entry.kind} built a {type(module).__name__}, "
                          f"not the registered {entry.module_class.__name__}")
    return module, inputs


def build_deft_detector(cfg: DictConfig, class_names: list[str], noise=None) -> tuple[DetectorModule, InputConfig]:
    """CLIP (frozen) + the configured visual PEFT + dual prompts, wrapped in a DetectorModule."""
    clip_cfg = cfg.detector.clip
    clip_model, inputs = detector_clip(cfg)
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
        dp_warmup_epochs=cfg.detector.get("dp_warmup_epochs"),
        logit_scale=configured_logit_scale(cfg, clip_model),
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
        return load_selection(out_dir / "selection.csv", dm), _read_json(out_dir / "summary.json")

    weights_path = cfg.detector.get("weights")
    artefact = None
    if weights_path:
        artefact = read_detector_weights(weights_path)  # checked: plain values only, nothing built yet
        check_class_names(artefact, dm.class_names, weights_path)
        cfg = config_from_artefact(cfg, artefact)
    entry = detector_of(cfg)
    module, inputs = build_detector(cfg, dm.class_names, dm.noise)
    if artefact is not None:
        load_detector_weights(module, artefact, weights_path)
    module.set_eval_sets(dm.eval_set_names)
    report = cfg.get("report") or {}
    module.return_features = bool(report.get("features", False))
    dm.configure_inputs(inputs)
    dm.batch_size = int(cfg.detector.batch_size)
    dm.use_selection(None)  # phase 1 trains on every sample

    fingerprint = fingerprint_of(dm)
    train_now = entry.trains and artefact is None
    online = OnlineSelectionRecorder(out_dir, dm.num_train, dm.given_labels, dm.true_labels) if train_now else None
    writer = SelectionWriter(out_dir, dm.given_labels, dm.true_labels, sample_ids=dm.files.train.sample_ids,
                             class_names=dm.class_names, fingerprint=fingerprint,
                             online_decisions=online.staged_path if online is not None else None)
    if train_now:
        trainer = build_trainer(cfg, "detection", run_dir, int(cfg.detector.epochs), [online, writer])
        trainer.fit(module, datamodule=dm, ckpt_path=resume_checkpoint(cfg, run_dir, "detection"),
                    weights_only=True)  # a checkpoint is loaded as tensors and plain values only
        if not any(key.startswith("val/") for key in trainer.callback_metrics):
            trainer.validate(module, datamodule=dm, verbose=False)  # resumed after the last epoch: nothing ran
    else:  # zero-shot or a reloaded artefact: only evaluate and run the inference pass
        trainer = build_trainer(cfg, "detection", run_dir, 1, [writer])
        trainer.validate(module, datamodule=dm, verbose=False)
    eval_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    trainer.predict(module, dataloaders=dm.inference_dataloader(), return_predictions=False)

    # what the writer wrote on rank 0, read back: the same code whether the pass ran here or in spawned processes
    selection, pred_probs = read_written_selection(out_dir, dm)
    rule = entry.rule(cfg.detector)
    summary = {"detector": str(cfg.detector.get("name", entry.kind)), "detector_kind": entry.kind,
               "detector_rule": rule.name, "detector_label": rule.label, "p_clean": rule.p_clean,
               "selection_source": str(cfg.detector.get("selection_source", "inference")),
               "inference": selection.metrics()}
    if artefact is not None:
        summary["detector_weights_from"] = str(weights_path)
    if selection.online_is_clean is not None:
        summary["online_last_epoch"] = _mask_metrics(selection.online_is_clean == 1, dm)
    summary["detector_test_accuracy"] = eval_metrics
    summary["noise"] = dm.noise.summary()
    summary["true_labels_known"] = dm.true_labels is not None
    summary["fingerprint"] = fingerprint.to_dict()
    if trainer.is_global_zero:
        if entry.trains:
            save_detector_weights(module, cfg, out_dir / "detector_weights.pt", dm.class_names,
                                  inputs={"family": dm.files.family, "native_size": dm._native_size()})
        summary["export"] = export_selection(report.get("export") or {}, out_dir, selection, dm, pred_probs)
        summary = write_report(  # summary.json last: it marks phase 1 as complete
            out_dir, selection, summary, dm.files.train, dm.num_classes,
            num_suspects=int(report.get("num_suspects", 36)), parquet=bool(report.get("parquet", True)),
            title=str(cfg.dataset.get("name", "")) or None,
        )
        log_detection_images(trainer, selection, out_dir, summary)
    trainer.strategy.barrier("detection_summary")
    finish_wandb()  # phase 2 gets its own W&B run
    return selection, summary


def read_written_selection(out_dir: Path, dm: NoisyLabelDataModule) -> tuple[CleanSelection, np.ndarray]:
    """The selection and ``pred_probs`` the ``SelectionWriter`` wrote into ``out_dir``, with this run's full
    class-name list (the file only names the classes that occur in it)."""
    selection = CleanSelection.read_csv(out_dir / "selection.csv")
    selection.class_names = list(dm.class_names)
    return selection, np.load(out_dir / "pred_probs.npy", allow_pickle=False)


def load_selection(path: str | Path, dm: NoisyLabelDataModule) -> CleanSelection:
    """A selection file checked against this run's data: full coverage, its fingerprint and its given labels.

    A file without a fingerprint (older versions, or made by another tool) is checked by its
    ``given_label`` column alone.
    """
    selection = CleanSelection.read_csv(path)
    selection.mask(dm.num_train)  # validates coverage
    check_fingerprint(selection.fingerprint, fingerprint_of(dm), path)
    differing = np.flatnonzero(selection.given_label != dm.given_labels)
    if len(differing):
        i = int(differing[0])
        raise SelectionError(
            f"{path}: {len(differing)} of {len(selection)} given labels differ from this run's (first at index {i}: "
            f"file {int(selection.given_label[i])}, this run {int(dm.given_labels[i])}); the selection was made "
            "under other labels (noise setting or label file)."
        )
    return selection


def export_selection(options, out_dir: Path, selection: CleanSelection, dm: NoisyLabelDataModule,
                     pred_probs: np.ndarray | None) -> dict:
    """``report.export``: the cleaned dataset as ``clean_dataset.csv`` for ``dataset=csv`` (see
    ``reporting/export.py``); what was written, or why nothing was, for the summary."""
    if not bool(options.get("enabled", False)):
        return {"skipped": "report.export.enabled=false"}
    if dm.files.train.paths is None:
        return {"skipped": "the dataset is held in memory (no image files), so there is no path,label CSV to "
                           "write; selection.csv and pred_probs.npy hold the result"}
    from deft_lightning.reporting.export import export_clean_dataset

    symlink_dir = options.get("symlink_dir")
    threshold = options.get("relabel_threshold")
    return export_clean_dataset(out_dir, selection, dm.files.train, dm.class_names, pred_probs=pred_probs,
                                relabel_threshold=None if threshold is None else float(threshold),
                                symlink_dir=None if symlink_dir is None else Path(str(symlink_dir)).expanduser(),
                                test_splits=dm.files.test)


def save_detector_weights(module: L.LightningModule, cfg: DictConfig, path: Path, class_names: list[str] | None = None,
                          inputs: dict | None = None) -> None:
    """Only the trained prompts and PEFT parameters (kilobytes to MB), plus plain values saying how to
    rebuild them through the project's own config (see ``pipeline/artefact.py``); ``inputs`` records the
    training images' transform family, for scoring new images the same way."""
    extra = module.artefact_extras() if hasattr(module, "artefact_extras") else {}
    payload = artefact_payload(detector_kind(cfg), cfg, module.trainable_state_dict(), list(class_names or []), extra,
                               inputs)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_detector_weights(path: str | Path) -> dict:
    """The checked artefact (``weights_only`` load, plain values only); refused with an ArtifactError otherwise."""
    return read_artefact(path)


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
        raise ArtifactError(
            f"detector.weights={path} does not fit the detector built from its config ({details}). "
            "Class-specific contexts and a small-loss head need the same classes as the training data "
            f"({len(artefact.get('class_names') or [])} saved)."
        )
    module.load_state_dict(saved, strict=False)
    for name, value in (artefact.get("extra") or {}).items():
        if hasattr(module, name):
            setattr(module, name, value)


def _mask_metrics(mask: np.ndarray, dm: NoisyLabelDataModule) -> dict:
    index = np.arange(dm.num_train)
    return CleanSelection(index, dm.given_labels, dm.given_labels, mask.astype(float), mask, dm.true_labels).metrics()


def _read_json(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(f"{path} is not a readable phase-1 summary ({err}); delete it to rerun phase 1.") from None
