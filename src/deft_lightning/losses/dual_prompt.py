"""DEFT's phase-1 objective (SPEC §2): image–text alignment (L_sim) plus the dual-prompt loss (L_dp).

Scores are scaled cosine similarities: ``s_pos`` against the positive prompts, ``s_neg`` against the
negative ones (computed from detached image features, so L_dp never moves the visual tower). The
two-way softmax per class over [detach(s_pos), s_neg] is the "is this class right for this image?"
probability; its value at the given label is the clean probability.

Schedule (SPEC §2): two switches, counted in epochs from 0. ``warmup_epochs`` W: while epoch < W, L_sim
is the warm-up loss over all samples (CE; SCE in the real-noise variant); from epoch W on, CE over the
batch's selected samples only. ``dp_warmup_epochs`` D: while epoch < D, L_dp pushes p_yes up at the
given label; from epoch D on, at the given label for selected samples and at the pseudo-label argmax s⁺
for the others. Synthetic noise: W = D = 1. The reference's real-noise configs: W = 5, D = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deft_lightning.losses.robust import SCELoss

LOG_CLAMP = 1e-5
# the real-noise warm-up SCE clamps the predicted probabilities at this value, as the reference's SCELoss
SCE_PROB_CLAMP = 1e-7


def class_yes_probability(s_pos: torch.Tensor, s_neg: torch.Tensor) -> torch.Tensor:
    """p_yes for every class, (B, C): σ(s⁺ − s⁻), the softmax over [s⁺, s⁻] taken at s⁺."""
    return torch.sigmoid(s_pos - s_neg)


def class_no_probability(s_pos: torch.Tensor, s_neg: torch.Tensor) -> torch.Tensor:
    """p_no for every class, (B, C): σ(s⁻ − s⁺), the softmax over [s⁺, s⁻] taken at s⁻.

    Equal to 1 − p_yes, but exact where p_yes is near 1 (1 − σ(s⁺ − s⁻) would cancel there: in fp32 it
    is 4.6 % off at p_yes = 1 − 1e-6; σ(s⁻ − s⁺) is within 1e-8).
    """
    return torch.sigmoid(s_neg - s_pos)


def loss_schedule(epoch: int, warmup_epochs: int, dp_warmup_epochs: int) -> tuple[bool, bool]:
    """(L_sim in warm-up, L_dp in warm-up) at ``epoch`` (0-based): the two switches of the module doc."""
    return int(epoch) < int(warmup_epochs), int(epoch) < int(dp_warmup_epochs)


def clean_probability(s_pos: torch.Tensor, s_neg: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """p_clean(i) = p_yes at the given label y_i, (B,)."""
    return class_yes_probability(s_pos, s_neg).gather(1, labels.view(-1, 1)).squeeze(1)


def select_clean(
    s_pos: torch.Tensor, s_neg: torch.Tensor, labels: torch.Tensor, require_argmax: bool = False
) -> torch.Tensor:
    """Clean iff p_clean > 0.5; the real-noise variant also requires argmax_k p_yes_k == y."""
    p_yes = class_yes_probability(s_pos, s_neg)
    selected = p_yes.gather(1, labels.view(-1, 1)).squeeze(1) > 0.5
    if require_argmax:
        selected = selected & (p_yes.argmax(dim=1) == labels)
    return selected


def sample_complementary_labels(labels: torch.Tensor, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A label uniform over the classes other than y, drawn afresh on the labels' device."""
    offset = torch.randint(1, num_classes, labels.shape, device=labels.device, generator=generator)
    return (labels + offset) % num_classes


# the real-noise variant's warm-up L_sim: SCE (α = β = 1) as phase 2 offers it, plus the reference's clamp
# of the predicted probabilities at 1e-7 inside the reverse term
symmetric_cross_entropy = SCELoss(alpha=1.0, beta=1.0, prob_clamp=SCE_PROB_CLAMP)


@dataclass
class DualPromptLoss:
    """Both loss terms and what the batch decided, for logging."""

    sim: torch.Tensor
    dp: torch.Tensor
    selected: torch.Tensor  # (B,) bool
    p_clean: torch.Tensor  # (B,)

    @property
    def total(self) -> torch.Tensor:
        return self.sim + self.dp


def dual_prompt_loss(
    s_pos: torch.Tensor,
    s_neg: torch.Tensor,
    labels: torch.Tensor,
    complementary: torch.Tensor,
    warmup: bool,
    require_argmax: bool = False,
    sce_warmup: bool = False,
    sim_weight: float = 1.0,
    dp_weight: float = 1.0,
    dp_warmup: bool | None = None,
) -> DualPromptLoss:
    """L_sim and L_dp for one batch.

    ``s_neg`` must come from detached image features. ``warmup`` (L_sim's switch): L_sim is CE, or SCE
    with ``sce_warmup`` (real noise), over all samples; otherwise CE over the selected samples only (0
    when none is selected). ``dp_warmup`` (L_dp's switch, default: the same as ``warmup``): L_dp pushes
    p_yes up at y; otherwise at y for selected samples and at the positive-prompt pseudo-label argmax
    s⁺ for the others. The selection (p_clean > 0.5, plus the argmax rule with ``require_argmax``) is
    made on every batch; it is used only by the parts that are past their warm-up.
    """
    if dp_warmup is None:
        dp_warmup = warmup
    p_yes = class_yes_probability(s_pos.detach(), s_neg)
    p_clean = p_yes.gather(1, labels.view(-1, 1)).squeeze(1)
    selected = select_clean(s_pos.detach(), s_neg.detach(), labels, require_argmax)

    if warmup:
        sim = symmetric_cross_entropy(s_pos, labels) if sce_warmup else F.cross_entropy(s_pos, labels)
    else:
        # mean CE over the selected samples as a masked mean: no host sync on GPU (no .any(), no boolean
        # indexing); an empty selection gives 0 and keeps the graph
        per_sample = F.cross_entropy(s_pos, labels, reduction="none")
        weights = selected.to(per_sample.dtype)
        sim = (per_sample * weights).sum() / weights.sum().clamp(min=1.0)
    positive_targets = labels if dp_warmup else torch.where(selected, labels, s_pos.detach().argmax(dim=1))

    p_no_complementary = class_no_probability(s_pos.detach(), s_neg).gather(1, complementary.view(-1, 1)).squeeze(1)
    p_yes_target = p_yes.gather(1, positive_targets.view(-1, 1)).squeeze(1)
    dp = -p_no_complementary.clamp(min=LOG_CLAMP).log().mean() - p_yes_target.clamp(min=LOG_CLAMP).log().mean()
    return DualPromptLoss(sim=sim_weight * sim, dp=dp_weight * dp, selected=selected, p_clean=p_clean.detach())
