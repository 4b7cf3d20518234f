"""The last gaps to the reference (issue 16 item 5), pinned to values computed by hand in float64.

- The real-noise schedule: L_sim is SCE over all samples in epochs 1-5, L_dp switches to pseudo-labels
  for unselected samples from epoch 2 (two config keys: detector.warmup_epochs, detector.dp_warmup_epochs).
- p_no = σ(s⁻ − s⁺), exact where p_yes is near 1.
- The warm-up SCE clamps the predicted probabilities at 1e-7 (the reference's SCELoss); phase 2's does not.
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from conftest import compose
from deft_lightning.losses.dual_prompt import (
    LOG_CLAMP,
    SCE_PROB_CLAMP,
    class_no_probability,
    class_yes_probability,
    dual_prompt_loss,
    loss_schedule,
    symmetric_cross_entropy,
)
from deft_lightning.losses.robust import SCELoss

A = -math.log(1e-4)  # reverse CE's constant: -log of the clamped one-hot zero

# 3 samples, 3 classes, given label 0 for all. Two-way softmax p_yes = σ(s⁺ − s⁻):
#   sample 0: p_yes = σ([2, -1, -1])   -> p_clean 0.88, argmax 0 = y: selected by both rules
#   sample 1: p_yes = σ([-1, 1, 1])    -> p_clean 0.27: never selected; pseudo-label argmax s⁺ = 1
#   sample 2: p_yes = σ([1, 0, 2.5])   -> p_clean 0.73 but argmax p_yes = 2: selected only without the
#                                         real-noise argmax rule; pseudo-label argmax s⁺ = 2
S_POS = [[3.0, 1.0, 0.0], [0.5, 2.0, 1.0], [1.0, 0.0, 2.5]]
S_NEG = [[1.0, 2.0, 1.0], [1.5, 1.0, 0.0], [0.0, 0.0, 0.0]]
LABELS = [0, 0, 0]
COMPLEMENTARY = [1, 2, 1]
PSEUDO = [0, 1, 2]  # argmax s⁺


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    e = [math.exp(s - top) for s in scores]
    return [v / sum(e) for v in e]


def cross_entropy(scores: list[float], label: int) -> float:
    return -math.log(softmax(scores)[label])


def sce(scores: list[float], label: int, prob_clamp: float = SCE_PROB_CLAMP) -> float:
    """CE + reverse CE, the reference's way: RCE = -Σ_k max(p_k, 1e-7) log(max(onehot_k, 1e-4))."""
    p = softmax(scores)
    return cross_entropy(scores, label) + A * sum(max(pk, prob_clamp) for k, pk in enumerate(p) if k != label)


def p_yes(i: int, k: int) -> float:
    return sigmoid(S_POS[i][k] - S_NEG[i][k])


def hand_losses(sim_warmup: bool, dp_warmup: bool, real_noise: bool) -> tuple[float, float]:
    """(L_sim, L_dp) of the batch above, by SPEC §2."""
    selected = [True, False, not real_noise]
    if sim_warmup:
        per_sample = [sce(s, y) if real_noise else cross_entropy(s, y) for s, y in zip(S_POS, LABELS)]
        sim = sum(per_sample) / len(per_sample)
    else:
        chosen = [cross_entropy(S_POS[i], LABELS[i]) for i in range(3) if selected[i]]
        sim = sum(chosen) / len(chosen)
    targets = LABELS if dp_warmup else [LABELS[i] if selected[i] else PSEUDO[i] for i in range(3)]
    no_term = sum(-math.log(max(1.0 - p_yes(i, COMPLEMENTARY[i]), LOG_CLAMP)) for i in range(3)) / 3
    yes_term = sum(-math.log(max(p_yes(i, targets[i]), LOG_CLAMP)) for i in range(3)) / 3
    return sim, no_term + yes_term


def tensors():
    return (torch.tensor(S_POS), torch.tensor(S_NEG), torch.tensor(LABELS), torch.tensor(COMPLEMENTARY))


def tiny_detector(**kwargs):
    from deft_lightning.models.clip import create_clip, get_tokenizer
    from deft_lightning.models.peft.vpt import VisualPromptTuning
    from deft_lightning.models.prompts import DualPromptLearner
    from deft_lightning.modules.detector import DetectorModule

    torch.manual_seed(0)
    model, _ = create_clip("deft-tiny-clip", pretrained=None)
    tokenizer = get_tokenizer("deft-tiny-clip")
    learner = DualPromptLearner(["red", "green", "blue"], tokenizer, model.token_embedding, n_ctx=4)
    visual = VisualPromptTuning(model.visual, num_tokens=2)
    return DetectorModule(model, visual, learner, optimizer=partial(torch.optim.SGD, lr=0.01), **kwargs)


# ----- the real-noise schedule ------------------------------------------------------------------
def test_schedule_switches_are_independent():
    real = [loss_schedule(epoch, 5, 1) for epoch in range(7)]  # epochs 1..7 of the reference
    assert real == [(True, True)] + [(True, False)] * 4 + [(False, False)] * 2
    assert [loss_schedule(epoch, 1, 1) for epoch in range(3)] == [(True, True), (False, False), (False, False)]
    assert loss_schedule(0, 0, 0) == (False, False)


@pytest.mark.parametrize("epoch", range(7))
def test_real_noise_schedule_matches_hand_computed_losses(epoch):
    """SCE over all samples in epochs 1-5 (0-based 0-4), CE over the selected from epoch 6; the given
    labels in L_dp in epoch 1 only, pseudo-labels for the unselected from epoch 2."""
    module = tiny_detector(warmup_epochs=5, dp_warmup_epochs=1, real_noise_variant=True)
    loss = module.batch_loss(*tensors(), epoch=epoch)
    sim, dp = hand_losses(sim_warmup=epoch < 5, dp_warmup=epoch < 1, real_noise=True)
    assert loss.selected.tolist() == [True, False, False]
    assert math.isclose(float(loss.sim), sim, rel_tol=1e-6), (epoch, float(loss.sim), sim)
    assert math.isclose(float(loss.dp), dp, rel_tol=1e-6), (epoch, float(loss.dp), dp)


def test_the_schedule_changes_the_losses_where_it_should():
    """The cases the schedule distinguishes really differ on this batch (otherwise the test above is blind)."""
    sce_given = hand_losses(True, True, True)
    sce_pseudo = hand_losses(True, False, True)
    ce_selected = hand_losses(False, False, True)
    assert sce_given[0] == sce_pseudo[0] and abs(sce_given[1] - sce_pseudo[1]) > 0.1
    assert abs(sce_pseudo[0] - ce_selected[0]) > 0.1 and sce_pseudo[1] == ce_selected[1]
    assert abs(hand_losses(True, True, False)[0] - sce_given[0]) > 0.1  # CE and SCE warm-ups differ


@pytest.mark.parametrize("epoch", range(3))
def test_synthetic_noise_schedule_is_one_switch(epoch):
    module = tiny_detector()  # warmup_epochs = 1, dp_warmup_epochs = None -> 1
    assert module.dp_warmup_epochs == 1
    loss = module.batch_loss(*tensors(), epoch=epoch)
    sim, dp = hand_losses(sim_warmup=epoch < 1, dp_warmup=epoch < 1, real_noise=False)
    assert loss.selected.tolist() == [True, False, True]
    assert math.isclose(float(loss.sim), sim, rel_tol=1e-6)
    assert math.isclose(float(loss.dp), dp, rel_tol=1e-6)


def test_training_epochs_pass_both_switches(monkeypatch):
    """Through Lightning: the epoch counter drives both switches (recorded from the loss calls)."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    import deft_lightning.modules.detector as detector_module

    calls = []
    real_loss = detector_module.dual_prompt_loss

    def recording(*args, **kwargs):
        calls.append((kwargs["warmup"], kwargs["dp_warmup"], kwargs["sce_warmup"], kwargs["require_argmax"]))
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(detector_module, "dual_prompt_loss", recording)
    module = tiny_detector(warmup_epochs=2, dp_warmup_epochs=1, real_noise_variant=True)
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(4, 3, 32, 32, generator=generator), torch.tensor([0, 1, 2, 0]), torch.arange(4))
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, DataLoader(data, batch_size=4))
    assert calls == [(True, True, True, True), (True, False, True, True), (False, False, True, True)]


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_warmup_keys_must_be_whole_epochs(bad):
    from deft_lightning.errors import ConfigError

    with pytest.raises(ConfigError, match="detector.dp_warmup_epochs"):
        tiny_detector(dp_warmup_epochs=bad)


@pytest.mark.parametrize("dataset", ["cifar100n", "clothing1m", "webvision"])
def test_real_noise_datasets_and_paper_experiments_get_the_reference_schedule(dataset):
    for overrides in ([f"dataset={dataset}"], [f"experiment=paper/{dataset}"]):
        cfg = compose(overrides + ["paths.output_dir=/tmp/unused"])
        assert (cfg.detector.warmup_epochs, cfg.detector.dp_warmup_epochs) == (5, 1), overrides
        assert cfg.detector.real_noise_variant is True
    cfg = compose([f"dataset={dataset}", "detector.warmup_epochs=2", "paths.output_dir=/tmp/unused"])
    assert cfg.detector.warmup_epochs == 2  # the command line wins


@pytest.mark.parametrize("dataset", ["cifar100", "cifar10", "cub200", "toy", "imagefolder"])
def test_other_datasets_keep_one_warmup_epoch(dataset):
    cfg = compose([f"dataset={dataset}", "paths.output_dir=/tmp/unused"])
    assert (cfg.detector.warmup_epochs, cfg.detector.dp_warmup_epochs) == (1, 1)
    assert cfg.detector.real_noise_variant is False


def test_build_deft_detector_passes_both_warmup_keys(tmp_path):
    from deft_lightning.pipeline.detection import build_deft_detector

    cfg = compose(["experiment=demo", "detector.warmup_epochs=5", "detector.dp_warmup_epochs=2",
                   f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}"])
    module, _ = build_deft_detector(cfg, ["a", "b", "c", "d", "e"])
    assert (module.warmup_epochs, module.dp_warmup_epochs) == (5, 2)


# ----- p_no precision ------------------------------------------------------------------------------
def test_p_no_is_exact_where_p_yes_is_near_one():
    margin = torch.tensor([[math.log((1.0 - 1e-6) / 1e-6)]], dtype=torch.float32)  # p_yes = 1 − 1e-6
    s_pos, s_neg = margin, torch.zeros_like(margin)
    x = float(margin)  # the float32 margin, exactly
    exact_p_no = 1.0 / (1.0 + math.exp(x))  # σ(−x) in float64: 1e-6 up to the margin's rounding
    assert math.isclose(exact_p_no, 1e-6, rel_tol=1e-5)
    ours = float(class_no_probability(s_pos, s_neg))
    assert math.isclose(ours, exact_p_no, rel_tol=1e-6), (ours, exact_p_no)
    # the old formula cancels: in float32, 1 − σ(x) is off by 4.6 % here
    old = float(1.0 - class_yes_probability(s_pos, s_neg))
    assert abs(old - exact_p_no) / exact_p_no > 1e-3, old


def test_dp_loss_uses_the_exact_p_no():
    """Where p_no = 2e-5 (above the log clamp), −log p_no of the loss equals float64 to 1e-6 relative."""
    margin = math.log((1.0 - 2e-5) / 2e-5)
    s_pos = torch.tensor([[2.0, margin]], dtype=torch.float32)
    s_neg = torch.zeros(1, 2)
    loss = dual_prompt_loss(s_pos, s_neg, torch.tensor([0]), torch.tensor([1]), warmup=True)
    x = float(s_pos[0, 1])
    expected = -math.log(1.0 / (1.0 + math.exp(x))) - math.log(sigmoid(2.0))
    assert math.isclose(float(loss.dp), expected, rel_tol=1e-6), (float(loss.dp), expected)
    old_p_no = float(1.0 - torch.sigmoid(torch.tensor(x, dtype=torch.float32)))
    old = -math.log(old_p_no) - math.log(sigmoid(2.0))
    assert abs(old - expected) / expected > 1e-5  # the check above would catch the old formula


# ----- the SCE probability clamp ------------------------------------------------------------------
def test_warmup_sce_clamps_probabilities_at_1e7():
    assert SCE_PROB_CLAMP == 1e-7 and symmetric_cross_entropy.prob_clamp == 1e-7
    logits = torch.tensor([[30.0, 0.0, 0.0]])  # p_1 = p_2 ≈ 9e-14, far below the clamp
    target = torch.tensor([0])
    ce = math.log(1.0 + 2.0 * math.exp(-30.0))
    expected = ce + A * 2 * 1e-7  # each wrong class counts as 1e-7
    assert math.isclose(float(symmetric_cross_entropy(logits, target)), expected, rel_tol=1e-5)
    unclamped = SCELoss(alpha=1.0, beta=1.0)(logits, target)
    assert float(unclamped) < 1e-9  # phase 2's SCE (SPEC §4) keeps the plain reverse term
    # and the real-noise warm-up L_sim is this SCE
    loss = dual_prompt_loss(logits, torch.zeros(1, 3), target, torch.tensor([1]), warmup=True, sce_warmup=True)
    assert math.isclose(float(loss.sim), expected, rel_tol=1e-5)


def test_clamped_classes_get_no_reverse_gradient():
    """A class below the clamp feels only CE's pull; one above it also the reverse term's A·p_k."""
    logits = torch.tensor([[17.0, 0.0, 3.0]], requires_grad=True)  # p_1 ≈ 4e-8 (clamped), p_2 ≈ 8e-7
    symmetric_cross_entropy(logits, torch.tensor([0])).backward()
    p = softmax([17.0, 0.0, 3.0])
    # d CE / d z_k = p_k (k != y); the unclamped reverse term adds about A·p_k
    assert math.isclose(float(logits.grad[0, 1]), p[1], rel_tol=1e-3), (float(logits.grad[0, 1]), p[1])
    assert math.isclose(float(logits.grad[0, 2]), (1.0 + A) * p[2], rel_tol=1e-3)


def test_phase2_sce_method_has_no_probability_clamp():
    from hydra.utils import instantiate

    cfg = compose(["method=sce", "paths.output_dir=/tmp/unused"])
    loss = instantiate(cfg.method.loss)(num_samples=4, num_classes=3)
    assert isinstance(loss, SCELoss) and loss.prob_clamp is None and loss.label_clamp == 1e-4
