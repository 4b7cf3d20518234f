"""Building the baseline detectors of SPEC §4 (``detector.kind``: label_match, small_loss), the builders
the registry names (``modules/registry.py``), and what all detectors share: their CLIP and its logit scale."""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from deft_lightning.data.noise import NoisyLabels
from deft_lightning.errors import ConfigError
from deft_lightning.models.clip import create_clip, get_tokenizer, resolve_logit_scale
from deft_lightning.models.inputs import InputConfig
from deft_lightning.modules.label_match import LabelMatchModule, zero_shot_weights
from deft_lightning.modules.small_loss import SmallLossModule

SYNTHETIC_NOISE = ("sym", "asym", "idn")


def detector_clip(cfg: DictConfig):
    """The detector's frozen CLIP and its input.

    A CLIP with random weights (no pretrained tag, no file: the offline demo) is drawn right after
    ``torch.manual_seed(detector.clip.init_seed)`` (default: ``seed``), so the seed recorded in the
    artefact rebuilds the very same weights anywhere (``load_detector``). In the pipeline this re-seeding
    happens just after the run's own ``seed_everything(seed)``, so the random stream (and every result)
    is what it was before the seed was made explicit.
    """
    from deft_lightning.pipeline.artefact import clip_init_seed

    clip = cfg.detector.clip
    seed = clip_init_seed(cfg)
    if seed is not None:
        torch.manual_seed(seed)
    return create_clip(clip.model_name, clip.pretrained, clip.weights, cfg.paths.cache_dir)


def configured_logit_scale(cfg: DictConfig, clip_model) -> float:
    """The detector's frozen 1/τ: ``detector.logit_scale`` as its YAML sets it (a number, or null for the
    model's own learned scale, see ``resolve_logit_scale``). The YAML is the only default: no fallback here."""
    if "logit_scale" not in cfg.detector:
        raise ConfigError(f"detector.logit_scale is missing from detector={cfg.detector.get('name', '?')}: set a "
                          "number (100 for OpenAI CLIP) or null (the loaded model's own scale)")
    return resolve_logit_scale(cfg.detector.logit_scale, clip_model)


def build_label_match(cfg: DictConfig, class_names: list[str], noise=None) -> tuple[LabelMatchModule, InputConfig]:
    """Zero-shot CLIP with the configured ``detector.prompt_template``."""
    detector = cfg.detector
    clip_model, inputs = detector_clip(cfg)
    module = LabelMatchModule(
        clip_model,
        class_names,
        get_tokenizer(detector.clip.model_name),
        prompt_template=str(detector.prompt_template),
        logit_scale=configured_logit_scale(cfg, clip_model),
    )
    return module, inputs


def build_small_loss(
    cfg: DictConfig, class_names: list[str], noise: NoisyLabels | None = None
) -> tuple[SmallLossModule, InputConfig]:
    """CLIP's visual tower with the configured PEFT and a linear head on the projected features."""
    detector = cfg.detector
    clip_model, inputs = detector_clip(cfg)
    visual_encoder = instantiate(cfg.peft.module)(visual=clip_model.visual)
    head_init = str(detector.get("head_init", "random"))
    if head_init not in ("random", "text"):
        raise ConfigError(f"detector.head_init must be 'random' or 'text', got {head_init!r}")
    head_weight = None
    if head_init == "text":  # start from the zero-shot classifier: same argmax as cos(image, text)
        head_weight = zero_shot_weights(clip_model, get_tokenizer(detector.clip.model_name), class_names,
                                        str(detector.prompt_template))
    module = SmallLossModule(
        visual_encoder,
        feature_dim=int(clip_model.visual.output_dim),
        num_classes=len(class_names),
        optimizer=instantiate(detector.optimizer),
        scheduler=instantiate(detector.scheduler) if detector.get("scheduler") else None,
        forget_rate=resolve_forget_rate(detector.get("forget_rate"), noise),
        warmup_epochs=int(detector.get("warmup_epochs", 1)),
        selection=str(detector.get("selection", "rank")),
        seed=int(cfg.seed),
        head_weight=head_weight,
    )
    return module, inputs


def resolve_forget_rate(value, noise: NoisyLabels | None) -> float | None:
    """The small-loss target rate r: a number, ``oracle`` (the true noise ratio) or null (estimate it).

    ``oracle`` is ``noise.ratio`` for synthetic noise (as the reference), the realised rate otherwise
    (e.g. CIFAR-100N, whose clean labels are known); without true labels there is no oracle.
    """
    if value is None:
        return None
    if isinstance(value, str) and value == "oracle":
        if noise is None:
            raise ConfigError("detector.forget_rate=oracle needs the dataset's noise; pass a number instead")
        if noise.mode in SYNTHETIC_NOISE:
            return float(noise.ratio)
        if noise.realised_rate is not None:
            return float(noise.realised_rate)
        raise ConfigError(
            f"detector.forget_rate=oracle: the true noise rate of noise={noise.mode} on this dataset is unknown. "
            "Pass detector.forget_rate=<rate in [0, 1)> or use the oracle-free detector=small_loss_gmm."
        )
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = -1.0
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"detector.forget_rate must be a number in [0, 1), 'oracle' or null, got {value!r}")
    return rate
