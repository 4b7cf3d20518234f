"""The reference stop-gradients: L_dp trains only the negative context; L_sim the positive context and VPT."""

import torch

from deft_lightning.losses.dual_prompt import dual_prompt_loss, sample_complementary_labels
from deft_lightning.models.clip import create_clip, get_tokenizer
from deft_lightning.models.peft.vpt import VisualPromptTuning
from deft_lightning.models.prompts import DualPromptLearner
from deft_lightning.modules.detector import DetectorModule

CLASSES = ["red", "green", "blue"]


def make_detector() -> DetectorModule:
    torch.manual_seed(0)
    model, _ = create_clip("deft-tiny-clip", pretrained=None)
    learner = DualPromptLearner(CLASSES, get_tokenizer("deft-tiny-clip"), model.token_embedding, n_ctx=4)
    visual = VisualPromptTuning(model.visual, num_tokens=3)
    return DetectorModule(model, visual, learner, optimizer=lambda params: torch.optim.SGD(params, lr=0.1))


def losses(detector: DetectorModule, warmup: bool = True):
    torch.manual_seed(1)
    images = torch.randn(6, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    s_pos, s_neg = detector.scores(images)
    return dual_prompt_loss(s_pos, s_neg, labels, sample_complementary_labels(labels, 3), warmup=warmup)


def gradient_norms(detector: DetectorModule) -> dict[str, float]:
    return {
        name: 0.0 if p.grad is None else float(p.grad.norm())
        for name, p in detector.named_parameters()
        if p.requires_grad
    }


def test_only_prompts_and_visual_prompts_are_trainable():
    detector = make_detector()
    trainable = {name for name, p in detector.named_parameters() if p.requires_grad}
    assert trainable == {"visual_encoder.prompts", "prompt_learner.pos_ctx", "prompt_learner.neg_ctx"}


def test_dual_prompt_loss_gradient_reaches_only_negative_context():
    detector = make_detector()
    losses(detector).dp.backward()
    norms = gradient_norms(detector)
    assert norms["prompt_learner.neg_ctx"] > 0
    assert norms["prompt_learner.pos_ctx"] == 0
    assert norms["visual_encoder.prompts"] == 0


def test_similarity_loss_gradient_reaches_positive_context_and_visual_prompts():
    detector = make_detector()
    losses(detector).sim.backward()
    norms = gradient_norms(detector)
    assert norms["prompt_learner.pos_ctx"] > 0
    assert norms["visual_encoder.prompts"] > 0
    assert norms["prompt_learner.neg_ctx"] == 0


def test_text_features_are_cached_without_gradient_and_fresh_with_it():
    detector = make_detector()
    with torch.no_grad():
        first = detector.encode_text()
        assert detector.encode_text() is first
    positive, _ = detector.encode_text()
    assert positive.requires_grad


def test_peft_parameters_inside_the_tower_stay_trainable():
    """Bias tuning unfreezes tensors of the tower itself; the detector must not re-freeze them."""
    from deft_lightning.models.peft.bias import VisualBiasTuning

    torch.manual_seed(0)
    model, _ = create_clip("deft-tiny-clip", pretrained=None)
    learner = DualPromptLearner(CLASSES, get_tokenizer("deft-tiny-clip"), model.token_embedding, n_ctx=4)
    visual = VisualBiasTuning(model.visual)
    expected = sum(p.numel() for p in visual.parameters() if p.requires_grad)
    detector = DetectorModule(model, visual, learner, optimizer=lambda params: torch.optim.SGD(params, lr=0.1))
    in_tower = sum(p.numel() for n, p in detector.visual_encoder.named_parameters() if p.requires_grad)
    assert expected > 0 and in_tower == expected
    assert not any(p.requires_grad for p in detector.clip_model.transformer.parameters())


def test_real_noise_schedule_keeps_the_stop_gradients():
    """SCE warm-up of L_sim with pseudo-labels already in L_dp (epochs 2-5 of the real-noise schedule)."""
    torch.manual_seed(1)
    images, labels = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    for part, moved, still in (("sim", {"prompt_learner.pos_ctx", "visual_encoder.prompts"}, "prompt_learner.neg_ctx"),
                               ("dp", {"prompt_learner.neg_ctx"}, "prompt_learner.pos_ctx")):
        detector = make_detector()
        s_pos, s_neg = detector.scores(images)
        loss = dual_prompt_loss(s_pos, s_neg, labels, sample_complementary_labels(labels, 3), warmup=True,
                                dp_warmup=False, require_argmax=True, sce_warmup=True)
        getattr(loss, part).backward()
        norms = gradient_norms(detector)
        assert all(norms[name] > 0 for name in moved), (part, norms)
        assert norms[still] == 0 and (part == "sim" or norms["visual_encoder.prompts"] == 0), (part, norms)
