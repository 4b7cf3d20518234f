"""Small-loss baseline (SPEC §4, Co-teaching style): samples the model fits easily are taken as clean.

Training keeps, per batch, the ⌊(1 − r_e)·B⌋ smallest-loss samples, with the forget rate r_e rising
linearly from 0 to r over the warm-up epochs (networks fit clean labels before noisy ones, so the
filter tightens as the model gets trustworthy). The final selection ranks the per-sample losses of the
inference pass: keep the (1 − r) smallest (oracle r), or split them with a two-component GMM
(oracle-free, :func:`deft_lightning.selection.gmm.gmm_clean_mask`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from deft_lightning.selection.gmm import gmm_clean_mask

__all__ = ["forget_rate_schedule", "num_kept", "small_loss_keep_mask", "rank_clean_mask", "small_loss_selection"]

SELECTION_RULES = ("rank", "gmm")
# (1 - r)·B is computed in floating point: 0.9·10 = 8.999999999999998 must still keep 9.
_FLOOR_EPS = 1e-9


def forget_rate_schedule(epoch: int, forget_rate: float, warmup_epochs: int) -> float:
    """r_e = r · min(1, e / T) for the 0-based epoch e: 0 at the first epoch, r from epoch T on.

    ``warmup_epochs`` T = 0 applies the full rate from the start.
    """
    if not 0.0 <= forget_rate < 1.0:
        raise ValueError(f"the forget rate must be in [0, 1), got {forget_rate}")
    if warmup_epochs <= 0:
        return float(forget_rate)
    return float(forget_rate) * min(1.0, max(0, int(epoch)) / float(warmup_epochs))


def num_kept(batch_size: int, rate: float) -> int:
    """⌊(1 − rate)·B⌋, robust to floating-point error (may be 0 for a tiny last batch)."""
    return min(math.floor((1.0 - float(rate)) * int(batch_size) + _FLOOR_EPS), int(batch_size))


def small_loss_keep_mask(losses: torch.Tensor, rate: float) -> torch.Tensor:
    """Boolean mask of the ⌊(1 − rate)·B⌋ smallest losses of the batch (ties: lower position first)."""
    keep = num_kept(losses.shape[0], rate)
    order = torch.argsort(losses.detach(), stable=True)
    mask = torch.zeros_like(losses, dtype=torch.bool)
    mask[order[:keep]] = True
    return mask


def rank_clean_mask(losses: np.ndarray, rate: float) -> np.ndarray:
    """The oracle rule over the whole training set: the ⌊(1 − rate)·N⌋ smallest losses are clean."""
    losses = np.asarray(losses, dtype=np.float64)
    keep = num_kept(len(losses), rate)
    mask = np.zeros(len(losses), dtype=bool)
    mask[np.argsort(losses, kind="stable")[:keep]] = True
    return mask


def small_loss_selection(
    losses: np.ndarray, rule: str, rate: float | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
    """(is_clean, clean posterior or None) for per-sample losses under ``rule`` ("rank" or "gmm")."""
    if rule == "rank":
        if rate is None:
            raise ValueError("the rank rule needs a forget rate")
        return rank_clean_mask(losses, rate), None
    if rule == "gmm":
        return gmm_clean_mask(losses, seed=seed)
    raise ValueError(f"detector.selection must be one of {SELECTION_RULES}, got {rule!r}")
