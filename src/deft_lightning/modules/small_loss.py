"""Small-loss baseline detector (SPEC §4): CLIP + visual PEFT + linear head, trained on its small losses."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deft_lightning.distributed import gather_rows_by_index
from deft_lightning.modules.per_sample import PerSampleDetector
from deft_lightning.modules.registry import SelectionRule, register_detector
from deft_lightning.selection.gmm import gmm_clean_mask
from deft_lightning.selection.small_loss import (
    forget_rate_schedule,
    small_loss_keep_mask,
    small_loss_selection,
)


@register_detector("small_loss")
class SmallLossModule(PerSampleDetector):
    """Cross-entropy on the ⌊(1 − r_e)·B⌋ smallest-loss samples of each batch.

    ``forget_rate`` is the target r (the oracle noise ratio in the reference). ``None`` makes it
    oracle-free: after every epoch r is re-estimated as the fraction a two-component GMM calls noisy
    among that epoch's per-sample training losses (0 before the first estimate). The final selection
    (``finalize_selection``) applies ``selection`` ("rank" or "gmm") to the inference-pass losses.
    ``p_clean`` is the head's probability of the given label, exp(−CE), so ranking by it is ranking by
    loss; with the GMM rule it is the clean posterior instead.
    """

    trains = True
    table_label = "Small-loss"
    p_clean_meaning = ("head probability of the given label, exp(−CE); is_clean = the (1 − r) fraction with the "
                       "smallest loss")
    rule_key = "selection"  # detector.selection: rank (the default rule above) or gmm
    selection_rules = {
        "gmm": SelectionRule("small_loss_gmm", "Small-loss (GMM)",
                             "GMM posterior of the low-loss component; is_clean = p_clean > 0.5"),
    }
    artefact_options = {
        "head_init": str,
        "prompt_template": str,
        "selection": str,
        "forget_rate": (int, float, str, type(None)),
        "warmup_epochs": int,
        "epochs": int,
    }

    def __init__(
        self,
        visual_encoder: nn.Module,
        feature_dim: int,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        forget_rate: float | None = None,
        warmup_epochs: int = 1,
        selection: str = "rank",
        seed: int = 0,
        head_weight: torch.Tensor | None = None,
    ) -> None:
        super().__init__(num_classes)
        self.visual_encoder = visual_encoder  # PEFT wrapper: freezes the tower, owns its own parameters
        self.head = nn.Linear(int(feature_dim), int(num_classes))
        if head_weight is not None:
            with torch.no_grad():
                self.head.weight.copy_(head_weight)
                self.head.bias.zero_()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.forget_rate = None if forget_rate is None else float(forget_rate)
        self.estimated_forget_rate = 0.0
        self.warmup_epochs = int(warmup_epochs)
        self.selection = str(selection)
        self.seed = int(seed)
        self.epoch_losses: list[tuple[torch.Tensor, torch.Tensor]] = []  # (index, loss) per batch, oracle-free only
        self.strict_loading = False  # frozen CLIP tensors are left out of our checkpoints by design

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.visual_encoder(images))

    # ----- training ---------------------------------------------------------------------------
    def target_forget_rate(self) -> float:
        return self.forget_rate if self.forget_rate is not None else self.estimated_forget_rate

    def current_forget_rate(self) -> float:
        """r_e for the current epoch."""
        return forget_rate_schedule(self.current_epoch, self.target_forget_rate(), self.warmup_epochs)

    def on_train_epoch_start(self) -> None:
        self.epoch_losses = []

    def training_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        images, labels, indices = batch
        losses = F.cross_entropy(self(images), labels, reduction="none")
        rate = self.current_forget_rate()
        keep = small_loss_keep_mask(losses, rate)
        loss = losses[keep].mean() if keep.any() else losses.sum() * 0.0  # an empty keep trains nothing
        if self.forget_rate is None:
            self.epoch_losses.append((indices.detach(), losses.detach().float()))
        batch_size = images.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/forget_rate", rate, batch_size=batch_size)
        self.log("train/kept_fraction", keep.float().mean(), prog_bar=True, batch_size=batch_size)
        return {"loss": loss, "index": indices, "selected": keep}

    def on_train_epoch_end(self) -> None:
        """Oracle-free: re-estimate r from this epoch's losses (identical on every rank: gathered rows)."""
        if self.forget_rate is not None or not self.epoch_losses:
            return
        indices, losses = (torch.cat(parts) for parts in zip(*self.epoch_losses))
        gathered = gather_rows_by_index(self, {"index": indices, "loss": losses})
        mask, _ = gmm_clean_mask(gathered["loss"].numpy(), seed=self.seed)
        self.estimated_forget_rate = float(min(1.0 - mask.mean(), 0.99))
        self.log("train/estimated_forget_rate", self.estimated_forget_rate)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"}}

    # ----- the final inference pass -----------------------------------------------------------
    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        images, labels, indices = batch
        projected = self.visual_encoder(images)
        logits = self.head(projected).float()
        probs = logits.softmax(dim=1)
        rows = {
            "index": indices,
            "p_clean": probs.gather(1, labels.view(-1, 1)).squeeze(1),
            "is_clean": torch.zeros_like(labels, dtype=torch.bool),  # decided over the whole set, below
            "predicted_label": probs.argmax(dim=1),
            "class_probs": probs,
            "loss": F.cross_entropy(logits, labels, reduction="none"),
        }
        if self.return_features:
            rows["features"] = F.normalize(projected.float(), dim=-1)
        return rows

    def finalize_selection(self, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mask, posterior = small_loss_selection(
            rows["loss"].double().numpy(), self.selection, rate=self.target_forget_rate(), seed=self.seed
        )
        rows = dict(rows, is_clean=torch.from_numpy(np.asarray(mask, dtype=bool)))
        if posterior is not None:
            rows["p_clean"] = torch.from_numpy(np.asarray(posterior, dtype=np.float64))
        return rows

    # ----- checkpoints and the reusable detector artefact --------------------------------------
    def artefact_extras(self) -> dict:
        """State beyond the trainable tensors that a reloaded detector needs (the estimated r)."""
        return {"estimated_forget_rate": float(self.estimated_forget_rate)}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep only trainable tensors (the frozen CLIP is rebuilt from its weights) and the r estimate."""
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        state = checkpoint["state_dict"]
        for name in [name for name in state if name not in trainable]:
            del state[name]
        checkpoint["estimated_forget_rate"] = self.estimated_forget_rate

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.estimated_forget_rate = float(checkpoint.get("estimated_forget_rate", 0.0))
