"""The zero-shot classifier of label_match, small_loss head_init=text and the phase-2 CLIP head is open_clip's
``build_zero_shot_classifier``; it equals the hand-built one it replaced (prompts cut after the longest
EOT, normalised) to 1e-6."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deft_lightning.models.clip import create_clip, get_tokenizer
from deft_lightning.models.text_encoder import encode_token_ids_truncated
from deft_lightning.models.zero_shot import ZERO_SHOT_TEMPLATE, zero_shot_weights
from deft_lightning.modules.label_match import LabelMatchModule

CLASSES = ["red", "golden retriever", "sea_lion", "blue", "sea turtle", "maple tree", "a", "b", "c", "d", "e", "f"]

pytestmark = pytest.mark.filterwarnings("ignore:.*No pretrained weights.*")


def hand_built(model, tokenizer, class_names, template):
    """The code path before open_clip's helper (kept here as the reference)."""
    prompts = [template.format(name.replace("_", " ")) for name in class_names]
    with torch.no_grad():
        return F.normalize(encode_token_ids_truncated(model, tokenizer(prompts)).float(), dim=-1)


@pytest.mark.parametrize("template", [ZERO_SHOT_TEMPLATE, "a blurry photo of the {}, a kind of thing."])
def test_open_clip_zero_shot_classifier_equals_the_hand_built_one(template):
    torch.manual_seed(0)
    model, _ = create_clip("deft-tiny-clip", pretrained=None)
    model.eval()
    tokenizer = get_tokenizer("deft-tiny-clip")
    ours = zero_shot_weights(model, tokenizer, CLASSES, template)
    reference = hand_built(model, tokenizer, CLASSES, template)
    assert ours.shape == reference.shape == (len(CLASSES), model.text_projection.shape[1])
    assert (ours - reference).abs().max() <= 1e-6


def test_label_match_logits_unchanged_by_the_switch():
    torch.manual_seed(0)
    model, _ = create_clip("deft-tiny-clip", pretrained=None)
    tokenizer = get_tokenizer("deft-tiny-clip")
    module = LabelMatchModule(model, CLASSES, tokenizer).eval()
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = 100.0 * module.encode_image(images) @ hand_built(model, tokenizer, CLASSES, ZERO_SHOT_TEMPLATE).t()
        ours = module(images)
    assert (ours - reference).abs().max() <= 1e-4  # logits are 100 × cosines: 1e-6 on the cosines


def test_small_loss_text_head_starts_from_the_same_classifier(tmp_path):
    from conftest import compose
    from deft_lightning.pipeline.baselines import build_small_loss

    cfg = compose(["detector=small_loss", "detector.head_init=text", "detector.clip.model_name=deft-tiny-clip",
                   "detector.clip.pretrained=null", "detector.forget_rate=0.2", "peft.module.num_tokens=2",
                   f"paths.cache_dir={tmp_path}"])
    module, _ = build_small_loss(cfg, CLASSES)
    torch.manual_seed(int(cfg.seed))  # the same random CLIP as detector_clip draws (clip.init_seed = seed)
    model, _ = create_clip("deft-tiny-clip", pretrained=None)
    reference = hand_built(model, get_tokenizer("deft-tiny-clip"), CLASSES, str(cfg.detector.prompt_template))
    assert (module.head.weight.detach() - reference).abs().max() <= 1e-6
    assert not module.head.bias.detach().any()


def test_phase2_clip_text_head_starts_from_the_same_classifier():
    """backbone.model.head_init=text (phase 2's CLIP classifier) uses the same zero-shot helper."""
    from deft_lightning.models.backbones import build_clip_classifier

    torch.manual_seed(0)
    classifier = build_clip_classifier(len(CLASSES), CLASSES, model_name="deft-tiny-clip", pretrained=None,
                                       head_init="text")
    torch.manual_seed(0)
    model, _ = create_clip("deft-tiny-clip", pretrained=None)
    text = hand_built(model, get_tokenizer("deft-tiny-clip"), CLASSES, ZERO_SHOT_TEMPLATE)
    expected = text @ model.visual.proj.t().float()
    assert (classifier.head.weight.detach() - expected).abs().max() <= 1e-6
