"""Phase 1: CLIP with visual PEFT and dual textual prompts learns which given labels are wrong."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from deft_lightning.errors import ConfigError
from deft_lightning.losses.dual_prompt import (
    DualPromptLoss,
    class_yes_probability,
    dual_prompt_loss,
    loss_schedule,
    sample_complementary_labels,
    select_clean,
)
from deft_lightning.models.prompts import DualPromptLearner
from deft_lightning.models.text_encoder import encode_dual_prompts, use_shared_prefix
from deft_lightning.modules.per_sample import PerSampleDetector
from deft_lightning.modules.registry import register_detector


@register_detector("deft")
class DetectorModule(PerSampleDetector):
    """Frozen CLIP + trainable visual PEFT + positive/negative prompt contexts (SPEC §2).

    ``training_step`` implements the stop-gradients of the reference: the image–text similarity to the
    positive prompts trains the visual PEFT and ``pos_ctx``; the dual-prompt loss sees detached image
    features and detached positive scores, so it trains ``neg_ctx`` only.

    ``warmup_epochs`` is L_sim's warm-up (CE, or SCE in the real-noise variant, over all samples) and
    ``dp_warmup_epochs`` L_dp's (given labels before, pseudo-labels for unselected samples after); None
    uses ``warmup_epochs`` for both. See ``losses/dual_prompt.py`` for the schedule.
    """

    trains = True
    table_label = "DEFT"
    p_clean_meaning = "σ(s⁺ − s⁻) at the given label; is_clean = p_clean > 0.5 (+ argmax rule for real noise)"
    # what a saved artefact records of the detector config, with the types it may hold (pipeline/artefact.py)
    artefact_options = {
        "prompt": {"n_ctx": int, "class_specific": bool, "class_position": str, "init_words": (str, type(None))},
        "logit_scale": (int, float, type(None)),
        "warmup_epochs": int,
        "dp_warmup_epochs": (int, type(None)),
        "epochs": int,
        "real_noise_variant": bool,
    }

    def __init__(
        self,
        clip_model: nn.Module,
        visual_encoder: nn.Module,
        prompt_learner: DualPromptLearner,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        warmup_epochs: int = 1,
        logit_scale: float = 100.0,
        real_noise_variant: bool = False,
        sim_weight: float = 1.0,
        dp_weight: float = 1.0,
        dp_warmup_epochs: int | None = None,
    ) -> None:
        super().__init__(prompt_learner.num_classes)
        if dp_warmup_epochs is None:
            dp_warmup_epochs = warmup_epochs
        for key, value in (("warmup_epochs", warmup_epochs), ("dp_warmup_epochs", dp_warmup_epochs)):
            if isinstance(value, bool) or int(value) != value or int(value) < 0:
                raise ConfigError(f"detector.{key} must be a whole number of epochs >= 0, got {value!r}")
        self.clip_model = clip_model
        # freeze CLIP, but keep what the PEFT module made trainable inside the tower (biases, LoRA)
        peft_trainable = {id(p) for p in visual_encoder.parameters() if p.requires_grad}
        for parameter in clip_model.parameters():
            if id(parameter) not in peft_trainable:
                parameter.requires_grad_(False)
        self.visual_encoder = visual_encoder
        self.prompt_learner = prompt_learner
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.warmup_epochs = int(warmup_epochs)
        self.dp_warmup_epochs = int(dp_warmup_epochs)
        self.logit_scale = float(logit_scale)
        self.real_noise_variant = bool(real_noise_variant)
        self.sim_weight, self.dp_weight = float(sim_weight), float(dp_weight)
        self._cached_text: tuple[torch.Tensor, torch.Tensor] | None = None
        # decided once here (it inspects the text tower's mask), not on every step
        self.shared_prefix_text = use_shared_prefix(clip_model, prompt_learner)
        self.strict_loading = False  # frozen CLIP tensors are left out of our checkpoints by design

    # ----- the explicit model API -------------------------------------------------------------
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual_encoder(images), dim=-1)

    def encode_text(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised positive and negative prompt features (C, E) each, in one batched tower call.

        The prompts are cut after the longest EOT and their shared [SOS]+context prefix is run once per
        set (exact, see ``models/text_encoder.py``); without gradient the result is cached until the
        prompts can change (next training epoch or evaluation start).
        """
        if self._cached_text is not None and not torch.is_grad_enabled():
            return self._cached_text
        features = F.normalize(
            encode_dual_prompts(self.clip_model, self.prompt_learner, self.shared_prefix_text), dim=-1
        )
        positive, negative = features.split(self.num_classes, dim=0)
        if not torch.is_grad_enabled():
            self._cached_text = (positive, negative)
            return self._cached_text
        return positive, negative

    def scores(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(s⁺, s⁻): scaled similarities to the positive prompts and, from detached features, the negative."""
        return self.scores_of_features(self.encode_image(images))

    def scores_of_features(self, image_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(s⁺, s⁻) of already encoded (normalised) image features."""
        positive, negative = self.encode_text()
        s_pos = self.logit_scale * image_features @ positive.t()
        s_neg = self.logit_scale * image_features.detach() @ negative.t()
        return s_pos, s_neg

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits of the textual classifier made of the positive prompts."""
        return self.scores(images)[0]

    # ----- training ---------------------------------------------------------------------------
    def in_warmup(self) -> bool:
        """L_sim is in its warm-up this epoch (all samples; SCE for real noise)."""
        return loss_schedule(self.current_epoch, self.warmup_epochs, self.dp_warmup_epochs)[0]

    def in_dp_warmup(self) -> bool:
        """L_dp still uses the given labels of every sample this epoch."""
        return loss_schedule(self.current_epoch, self.warmup_epochs, self.dp_warmup_epochs)[1]

    def batch_loss(
        self, s_pos: torch.Tensor, s_neg: torch.Tensor, labels: torch.Tensor, complementary: torch.Tensor, epoch: int
    ) -> DualPromptLoss:
        """Both loss terms of one batch at ``epoch`` (0-based), as this module's config schedules them."""
        sim_warmup, dp_warmup = loss_schedule(epoch, self.warmup_epochs, self.dp_warmup_epochs)
        return dual_prompt_loss(
            s_pos,
            s_neg,
            labels,
            complementary,
            warmup=sim_warmup,
            dp_warmup=dp_warmup,
            require_argmax=self.real_noise_variant,
            sce_warmup=self.real_noise_variant,
            sim_weight=self.sim_weight,
            dp_weight=self.dp_weight,
        )

    def on_train_epoch_start(self) -> None:
        self._cached_text = None

    def training_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        """The loss, and the step's per-sample decisions for the OnlineSelectionRecorder (index, selected)."""
        images, labels, indices = batch
        s_pos, s_neg = self.scores(images)
        complementary = sample_complementary_labels(labels, self.num_classes)
        loss = self.batch_loss(s_pos, s_neg, labels, complementary, self.current_epoch)
        batch_size = images.shape[0]
        self.log("train/loss", loss.total, prog_bar=True, batch_size=batch_size)
        self.log("train/loss_sim", loss.sim, batch_size=batch_size)
        self.log("train/loss_dp", loss.dp, batch_size=batch_size)
        self.log("train/clean_fraction", loss.selected.float().mean(), prog_bar=True, batch_size=batch_size)
        return {"loss": loss.total, "index": indices, "selected": loss.selected.detach()}

    def configure_optimizers(self):
        parameters = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(parameters)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"}}

    # ----- evaluation: textual classifier of positive prompts (validation_step is the base's) ---
    def on_validation_epoch_start(self) -> None:
        self._cached_text = None

    # ----- the final inference pass -----------------------------------------------------------
    def on_predict_epoch_start(self) -> None:
        self._cached_text = None

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        images, labels, indices = batch
        image_features = self.encode_image(images)
        s_pos, s_neg = self.scores_of_features(image_features)
        p_yes = class_yes_probability(s_pos, s_neg)
        out = {
            "index": indices,
            "p_clean": p_yes.gather(1, labels.view(-1, 1)).squeeze(1),
            "is_clean": select_clean(s_pos, s_neg, labels, self.real_noise_variant),
            "predicted_label": s_pos.argmax(dim=1),
            "class_probs": s_pos.softmax(dim=1),
        }
        if self.return_features:
            out["features"] = image_features.float()
        return out

    # ----- checkpoints and the reusable detector artefact --------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep only trainable tensors: the frozen CLIP is rebuilt from its own weights on resume."""
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        state = checkpoint["state_dict"]
        for name in [name for name in state if name not in trainable]:
            del state[name]

