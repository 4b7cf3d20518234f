"""Noisy-label losses pinned to hand-computed values, ELR's target ensemble, and GMM selection."""

from __future__ import annotations

import math
from importlib import resources

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from deft_lightning.losses.robust import CrossEntropy, ELRLoss, GCELoss, SCELoss
from deft_lightning.selection.gmm import gmm_clean_mask

LOGITS = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]]
TARGETS = [0, 2]


def _softmax(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(TARGETS), torch.tensor([3, 1])


def test_cross_entropy_matches_hand_computation() -> None:
    logits, targets, indices = _batch()
    expected = sum(-math.log(_softmax(r)[y]) for r, y in zip(LOGITS, TARGETS)) / 2
    assert CrossEntropy()(logits, targets, indices).item() == pytest.approx(expected, rel=1e-9)


def test_gce_matches_hand_computation() -> None:
    logits, targets, indices = _batch()
    q = 0.7
    p_y = [_softmax(r)[y] for r, y in zip(LOGITS, TARGETS)]
    expected = sum((1.0 - p**q) / q for p in p_y) / 2
    loss = GCELoss(q=q, num_samples=10, num_classes=3)(logits, targets, indices)
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    # q -> 0 approaches CE, q = 1 is MAE on the probability of the label.
    ce = CrossEntropy()(logits, targets, indices).item()
    assert GCELoss(q=1e-6)(logits, targets, indices).item() == pytest.approx(ce, rel=1e-4)
    assert GCELoss(q=1.0)(logits, targets, indices).item() == pytest.approx(sum(1 - p for p in p_y) / 2)


def test_sce_matches_hand_computation() -> None:
    logits, targets, indices = _batch()
    total = 0.0
    for row, y in zip(LOGITS, TARGETS):
        probs = _softmax(row)
        ce = -math.log(probs[y])
        # reverse CE: -sum_k p_k * log(one_hot_k clamped at 1e-4); log(1) = 0 at the label
        reverse = -sum(p * math.log(1.0 if k == y else 1e-4) for k, p in enumerate(probs))
        total += 1.0 * ce + 1.0 * reverse
    expected = total / 2
    loss = SCELoss(alpha=1.0, beta=1.0, num_samples=10, num_classes=3)(logits, targets, indices)
    assert loss.item() == pytest.approx(expected, rel=1e-9)

    weighted = SCELoss(alpha=0.1, beta=2.0)(logits, targets, indices).item()
    ce_mean = CrossEntropy()(logits, targets, indices).item()
    reverse_mean = expected - ce_mean
    assert weighted == pytest.approx(0.1 * ce_mean + 2.0 * reverse_mean, rel=1e-9)


def test_elr_first_step_matches_hand_computation() -> None:
    logits, targets, indices = _batch()
    beta, lam = 0.3, 5.0
    loss_fn = ELRLoss(num_samples=5, num_classes=3, beta=beta, lam=lam).double()
    loss = loss_fn(logits, targets, indices)

    total = 0.0
    for row, y in zip(LOGITS, TARGETS):
        probs = _softmax(row)  # all within [1e-4, 1 - 1e-4]: clamping changes nothing here
        ensemble = [(1 - beta) * p for p in probs]  # targets start at zero
        agreement = sum(t * p for t, p in zip(ensemble, probs))
        total += -math.log(probs[y]) + lam * math.log(1 - agreement)
    assert loss.item() == pytest.approx(total / 2, rel=1e-9)
    assert torch.isfinite(loss)


def test_elr_target_update_is_a_running_average() -> None:
    beta = 0.3
    loss_fn = ELRLoss(num_samples=4, num_classes=3, beta=beta, lam=3.0).double()
    first = torch.tensor([[20.0, 0.0, 0.0]], dtype=torch.float64)  # saturated: exercises the clamp
    second = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    index = torch.tensor([2])
    label = torch.tensor([0])

    loss_fn(first, label, index)
    # softmax ~ [1, 2e-9, 2e-9] -> clamp to [1 - 1e-4, 1e-4, 1e-4] -> renormalise by their sum
    clamped = [1 - 1e-4, 1e-4, 1e-4]
    p1 = [c / sum(clamped) for c in clamped]
    expected = [(1 - beta) * p for p in p1]
    torch.testing.assert_close(loss_fn.soft_targets[2], torch.tensor(expected, dtype=torch.float64))
    assert loss_fn.soft_targets[[0, 1, 3]].abs().sum() == 0  # untouched samples keep their state

    loss_fn(second, label, index)
    p2 = _softmax([0.0, 1.0, 0.0])
    expected = [beta * t + (1 - beta) * p for t, p in zip(expected, p2)]
    torch.testing.assert_close(loss_fn.soft_targets[2], torch.tensor(expected, dtype=torch.float64))

    # evaluation passes read the ensemble but never move it
    loss_fn.eval()
    loss_fn(first, label, index)
    torch.testing.assert_close(loss_fn.soft_targets[2], torch.tensor(expected, dtype=torch.float64))


def test_elr_targets_are_checkpointed_buffers() -> None:
    loss_fn = ELRLoss(num_samples=6, num_classes=4)
    assert "soft_targets" in loss_fn.state_dict()
    assert loss_fn.soft_targets.shape == (6, 4)
    assert loss_fn.to(torch.float64).soft_targets.dtype == torch.float64  # moves with the module
    restored = ELRLoss(num_samples=6, num_classes=4)
    loss_fn.soft_targets[1] = 0.5
    restored.load_state_dict(loss_fn.state_dict())
    assert torch.equal(restored.soft_targets, loss_fn.soft_targets.float())


def test_losses_backpropagate_to_logits() -> None:
    for loss_fn in (CrossEntropy(), GCELoss(), SCELoss(), ELRLoss(num_samples=5, num_classes=3)):
        logits = torch.tensor(LOGITS, requires_grad=True)
        loss_fn(logits, torch.tensor(TARGETS), torch.tensor([0, 4])).backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all()
        assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["ce", "gce", "sce", "elr", "gmm"])
def test_method_configs_build_uniformly(name: str) -> None:
    cfg = OmegaConf.load(str(resources.files("deft_lightning.conf") / "method" / f"{name}.yaml"))
    assert cfg.name == name
    assert cfg.uses_clean_subset is False
    loss_fn = instantiate(cfg.loss)(num_samples=5, num_classes=3)
    logits, targets, indices = _batch()
    assert torch.isfinite(loss_fn(logits.float(), targets, indices))
    if name == "gmm":
        assert cfg.gmm.warmup_epochs == 1 and cfg.gmm.threshold == 0.5


def test_method_configs_use_paper_constants() -> None:
    conf = resources.files("deft_lightning.conf") / "method"
    assert OmegaConf.load(str(conf / "gce.yaml")).loss.q == 0.7
    sce = OmegaConf.load(str(conf / "sce.yaml")).loss
    assert (sce.alpha, sce.beta, sce.label_clamp) == (1.0, 1.0, 1e-4)
    elr = OmegaConf.load(str(conf / "elr.yaml")).loss
    assert (elr.beta, elr.lam) == (0.3, 5.0)


def test_gmm_separates_two_loss_clusters() -> None:
    rng = np.random.default_rng(0)
    clean = rng.normal(0.2, 0.05, size=300)
    noisy = rng.normal(3.0, 0.3, size=100)
    losses = rng.permutation(np.concatenate([clean, noisy]))
    mask, posterior = gmm_clean_mask(losses, seed=0)
    assert mask.dtype == bool and mask.shape == losses.shape
    np.testing.assert_array_equal(mask, losses < 1.5)
    assert posterior.min() >= 0.0 and posterior.max() <= 1.0
    assert posterior[losses < 1.5].min() > 0.99 and posterior[losses > 1.5].max() < 0.01

    # the normalisation makes the decision scale-free
    scaled_mask, _ = gmm_clean_mask(losses * 1000.0 + 7.0, seed=0)
    np.testing.assert_array_equal(scaled_mask, mask)


def test_gmm_threshold_moves_the_cut() -> None:
    losses = np.linspace(0.0, 1.0, 200)
    loose, posterior = gmm_clean_mask(losses, threshold=0.1)
    strict, _ = gmm_clean_mask(losses, threshold=0.9)
    assert loose.sum() >= strict.sum()
    np.testing.assert_array_equal(strict, posterior > 0.9)


def test_gmm_degenerate_inputs_keep_everything() -> None:
    mask, posterior = gmm_clean_mask(np.full(50, 0.7))
    assert mask.all() and mask.dtype == bool
    np.testing.assert_array_equal(posterior, np.ones(50))
    single, _ = gmm_clean_mask(np.array([2.0]))
    assert single.tolist() == [True]


def test_gmm_rejects_non_finite_losses() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        gmm_clean_mask(np.array([0.1, np.nan, 0.3]))
