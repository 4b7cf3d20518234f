"""Noisy-label training losses for the phase-2 baseline columns (SPEC §4): CE, GCE, SCE, ELR.

Every loss is called the same way, `loss(logits, targets, indices)`, and built the same way from a
Hydra partial, `loss(num_samples=N, num_classes=C)`, so the AdapterModule never special-cases a
method. `indices` are dataset indices (only ELR, which keeps per-sample state, reads them).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deft_lightning.distributed import gather_rows_by_index

__all__ = ["CrossEntropy", "GCELoss", "SCELoss", "ELRLoss"]

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def _full_precision(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (AMP) are upcast: p^q and log(1 - <t, p>) lose too much in 16 bits."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def _check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


class CrossEntropy(nn.Module):
    """Plain cross-entropy: the `ce` baseline (all given labels) and `deft` (clean subset only)."""

    def __init__(
        self,
        num_samples: int | None = None,
        num_classes: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None
    ) -> torch.Tensor:
        return F.cross_entropy(logits, targets, reduction=self.reduction)


class GCELoss(nn.Module):
    """Generalised cross-entropy (Zhang & Sabuncu 2018): (1 - p_y^q) / q.

    q -> 0 recovers CE, q = 1 gives MAE; in between it keeps CE's fast fitting while bounding the
    loss of confidently mislabelled samples.
    """

    def __init__(
        self,
        q: float = 0.7,
        num_samples: int | None = None,
        num_classes: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if not 0.0 < q <= 1.0:
            raise ValueError(f"GCE needs 0 < q <= 1, got q={q}")
        self.q = float(q)
        self.reduction = _check_reduction(reduction)

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None
    ) -> torch.Tensor:
        # p_y^q computed as exp(q * log p_y): stable for very negative log-probabilities.
        log_p_y = F.log_softmax(_full_precision(logits), dim=1).gather(1, targets[:, None]).squeeze(1)
        per_sample = (1.0 - torch.exp(self.q * log_p_y)) / self.q
        return _reduce(per_sample, self.reduction)


class SCELoss(nn.Module):
    """Symmetric cross-entropy (Wang et al. 2019): alpha * CE + beta * reverse CE.

    Reverse CE swaps prediction and label, -sum_k p_k log y_k; log 0 of the one-hot is clamped to
    log(1e-4) (SPEC §4), which makes it A * (1 - p_y) with A = -log(1e-4): a bounded, noise-tolerant term.
    ``prob_clamp`` (off by default; 1e-7 in DEFT's real-noise warm-up, as the reference) first clamps the
    predicted probabilities from below, so the reverse term is A * sum_{k != y} max(p_k, prob_clamp).
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 1.0,
        label_clamp: float = 1e-4,
        num_samples: int | None = None,
        num_classes: int | None = None,
        reduction: str = "mean",
        prob_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.label_clamp = float(label_clamp)
        self.prob_clamp = None if prob_clamp is None else float(prob_clamp)
        self.reduction = _check_reduction(reduction)

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None
    ) -> torch.Tensor:
        logits = _full_precision(logits)
        ce = F.cross_entropy(logits, targets, reduction="none")
        probs = logits.softmax(dim=1)
        if self.prob_clamp is not None:
            probs = probs.clamp(min=self.prob_clamp, max=1.0)
        one_hot = F.one_hot(targets, logits.shape[1]).to(probs.dtype)
        log_label = one_hot.clamp(min=self.label_clamp).log()
        reverse_ce = -(probs * log_label).sum(dim=1)
        return _reduce(self.alpha * ce + self.beta * reverse_ce, self.reduction)


class ELRLoss(nn.Module):
    """Early-learning regularisation (Liu et al. 2020): CE + lam * log(1 - <t_i, p_i>).

    t_i is a per-sample running average of the model's own (detached) predictions, updated every time
    sample i is seen: t_i <- beta * t_i + (1 - beta) * p_i. Maximising agreement with what the network
    predicted early in training keeps it from later memorising wrong labels. Probabilities are clamped
    to [1e-4, 1 - 1e-4] and renormalised so the log stays finite.

    The soft targets are a registered buffer: they move with `.to(device)` and are saved in checkpoints so a
    resumed run continues the same ensemble. Under DDP every rank applies the update of *all* ranks'
    samples (gathered each step), so each t_i is updated every time any rank sees sample i and every
    rank holds the same ensemble -- which also makes DDP's default buffer broadcast (rank 0's copy to
    all) harmless instead of discarding the other ranks' updates.
    """

    soft_targets: torch.Tensor

    def __init__(
        self,
        num_samples: int,
        num_classes: int,
        beta: float = 0.3,
        lam: float = 5.0,
        clamp: float = 1e-4,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"ELR needs 0 <= beta < 1, got beta={beta}")
        self.beta = float(beta)
        self.lam = float(lam)
        self.clamp = float(clamp)
        self.reduction = _check_reduction(reduction)
        self.register_buffer("soft_targets", torch.zeros(num_samples, num_classes))

    def clamped_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        probs = _full_precision(logits).softmax(dim=1).clamp(self.clamp, 1.0 - self.clamp)
        return probs / probs.sum(dim=1, keepdim=True)

    @torch.no_grad()
    def update_targets(self, indices: torch.Tensor, probs: torch.Tensor) -> None:
        """Temporal-ensemble step for the given samples (exposed so DDP code can feed gathered values)."""
        indices = indices.to(self.soft_targets.device, torch.long)
        current = self.soft_targets[indices]
        self.soft_targets[indices] = self.beta * current + (1.0 - self.beta) * probs.to(current.dtype)

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor
    ) -> torch.Tensor:
        if indices is None:
            raise ValueError("ELRLoss needs the dataset indices of the batch")
        probs = self.clamped_probabilities(logits)
        if self.training:  # evaluation passes (e.g. a held-out split) must not touch the ensemble
            # every rank's (index, probabilities), one row per index (sampler padding repeats some), the same
            # on all ranks; without a process group: this batch's own rows
            rows = gather_rows_by_index(None, {"index": indices.to(probs.device, torch.long), "probs": probs.detach()},
                                        to_cpu=False)
            self.update_targets(rows["index"], rows["probs"])
        ensemble = self.soft_targets[indices.to(self.soft_targets.device, torch.long)].to(probs.dtype)
        agreement = (ensemble * probs).sum(dim=1)
        cross_entropy = F.cross_entropy(_full_precision(logits), targets, reduction="none")
        return _reduce(cross_entropy + self.lam * torch.log(1.0 - agreement), self.reduction)

