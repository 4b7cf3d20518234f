"""DEFT's clean probability and both loss terms, pinned to values computed by hand."""

import math

import torch

from deft_lightning.losses.dual_prompt import (
    clean_probability,
    dual_prompt_loss,
    sample_complementary_labels,
    select_clean,
)

# 2 samples, 3 classes: scores to the positive and negative prompts, given labels, complementary labels
S_POS = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
S_NEG = torch.tensor([[1.0, 1.0, 0.0], [0.5, 2.0, 1.0]])
LABELS = torch.tensor([0, 1])
COMPLEMENTARY = torch.tensor([2, 0])


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def cross_entropy(scores: list[float], label: int) -> float:
    return math.log(sum(math.exp(s) for s in scores)) - scores[label]


def test_clean_probability_is_two_way_softmax_at_given_label():
    # p_yes(i, k) = exp(s+)/(exp(s+)+exp(s-)) = sigmoid(s+ - s-)
    expected = [sigmoid(2.0 - 1.0), sigmoid(1.0 - 2.0)]
    got = clean_probability(S_POS, S_NEG, LABELS)
    assert torch.allclose(got, torch.tensor(expected), atol=1e-7)
    assert select_clean(S_POS, S_NEG, LABELS).tolist() == [True, False]


def test_warmup_losses_match_hand_computation():
    loss = dual_prompt_loss(S_POS, S_NEG, LABELS, COMPLEMENTARY, warmup=True)
    sim = (cross_entropy([2.0, 0.5, -1.0], 0) + cross_entropy([0.0, 1.0, 3.0], 1)) / 2
    # L_dp = mean(-log p_no[complementary]) + mean(-log p_yes[y])
    p_no = [1 - sigmoid(-1.0 - 0.0), 1 - sigmoid(0.0 - 0.5)]
    p_yes = [sigmoid(1.0), sigmoid(-1.0)]
    dp = -(math.log(p_no[0]) + math.log(p_no[1])) / 2 - (math.log(p_yes[0]) + math.log(p_yes[1])) / 2
    assert math.isclose(float(loss.sim), sim, rel_tol=1e-6)
    assert math.isclose(float(loss.dp), dp, rel_tol=1e-6)
    assert math.isclose(float(loss.total), sim + dp, rel_tol=1e-6)


def test_after_warmup_sim_uses_selected_and_dp_uses_pseudo_labels():
    loss = dual_prompt_loss(S_POS, S_NEG, LABELS, COMPLEMENTARY, warmup=False)
    sim = cross_entropy([2.0, 0.5, -1.0], 0)  # only sample 0 is selected
    p_no = [1 - sigmoid(-1.0), 1 - sigmoid(-0.5)]
    # sample 1 is not selected: its target is the pseudo-label argmax s+ = class 2
    p_target = [sigmoid(1.0), sigmoid(3.0 - 1.0)]
    dp = -(math.log(p_no[0]) + math.log(p_no[1])) / 2 - (math.log(p_target[0]) + math.log(p_target[1])) / 2
    assert math.isclose(float(loss.sim), sim, rel_tol=1e-6)
    assert math.isclose(float(loss.dp), dp, rel_tol=1e-6)


def test_all_noisy_batch_after_warmup_gives_finite_loss_and_gradient():
    s_pos = S_POS.clone().requires_grad_(True)
    s_neg = (S_NEG + 50.0).requires_grad_(True)  # every p_clean ~ 0: nothing selected
    loss = dual_prompt_loss(s_pos, s_neg, LABELS, COMPLEMENTARY, warmup=False)
    assert not loss.selected.any()
    assert float(loss.sim) == 0.0
    assert torch.isfinite(loss.total)
    loss.total.backward()
    assert torch.isfinite(s_neg.grad).all() and torch.isfinite(s_pos.grad).all()


def test_dp_loss_never_moves_positive_scores():
    s_pos = S_POS.clone().requires_grad_(True)
    s_neg = S_NEG.clone().requires_grad_(True)
    dual_prompt_loss(s_pos, s_neg, LABELS, COMPLEMENTARY, warmup=True).dp.backward()
    assert s_pos.grad is None or torch.count_nonzero(s_pos.grad) == 0
    assert torch.count_nonzero(s_neg.grad) > 0


def test_real_noise_variant_requires_argmax_and_uses_sce():
    # sample 0: p_yes at y=0 is 0.73 but class 2 would need to beat it; make class 1 the argmax of p_yes
    s_pos = torch.tensor([[2.0, 5.0, -1.0]])
    s_neg = torch.tensor([[1.0, 0.0, 0.0]])
    labels = torch.tensor([0])
    assert select_clean(s_pos, s_neg, labels).tolist() == [True]
    assert select_clean(s_pos, s_neg, labels, require_argmax=True).tolist() == [False]
    plain = dual_prompt_loss(s_pos, s_neg, labels, torch.tensor([2]), warmup=True)
    sce = dual_prompt_loss(s_pos, s_neg, labels, torch.tensor([2]), warmup=True, sce_warmup=True)
    probs = torch.softmax(s_pos, dim=1)[0]
    reverse_ce = -math.log(1e-4) * (1 - float(probs[0]))
    assert math.isclose(float(sce.sim), float(plain.sim) + reverse_ce, rel_tol=1e-5)


def test_complementary_labels_differ_from_given_and_cover_the_others():
    labels = torch.zeros(4000, dtype=torch.long)
    drawn = sample_complementary_labels(labels, 4, torch.Generator().manual_seed(0))
    assert (drawn != labels).all()
    counts = torch.bincount(drawn, minlength=4)
    assert counts[0] == 0 and (counts[1:] > 1200).all()


def test_dp_switch_defaults_to_the_sim_switch_and_can_differ():
    same = dual_prompt_loss(S_POS, S_NEG, LABELS, COMPLEMENTARY, warmup=False)
    explicit = dual_prompt_loss(S_POS, S_NEG, LABELS, COMPLEMENTARY, warmup=False, dp_warmup=False)
    assert float(same.dp) == float(explicit.dp)
    # L_sim still in warm-up (all samples) while L_dp already uses the pseudo-label of sample 1
    mixed = dual_prompt_loss(S_POS, S_NEG, LABELS, COMPLEMENTARY, warmup=True, dp_warmup=False)
    sim = (cross_entropy([2.0, 0.5, -1.0], 0) + cross_entropy([0.0, 1.0, 3.0], 1)) / 2
    p_no = [sigmoid(0.0 - (-1.0)), sigmoid(0.5 - 0.0)]  # p_no = σ(s⁻ − s⁺) at the complementary labels
    p_target = [sigmoid(1.0), sigmoid(3.0 - 1.0)]
    dp = -(math.log(p_no[0]) + math.log(p_no[1])) / 2 - (math.log(p_target[0]) + math.log(p_target[1])) / 2
    assert math.isclose(float(mixed.sim), sim, rel_tol=1e-6)
    assert math.isclose(float(mixed.dp), dp, rel_tol=1e-6)
