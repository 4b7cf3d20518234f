"""Truncated text encoding is exact: the same features as open_clip's own ``encode_text``."""

import torch

from deft_lightning.models.clip import create_clip, get_tokenizer
from deft_lightning.models.prompts import DualPromptLearner, build_prompt_layout
from deft_lightning.models.text_encoder import encode_prompt_embeddings, encode_token_ids_truncated

CLASSES = ["red", "golden retriever", "sea_lion", "blue"]


def tiny_clip():
    torch.manual_seed(0)
    model, _ = create_clip("deft-tiny-clip", pretrained=None)
    return model, get_tokenizer("deft-tiny-clip")


def test_truncated_features_equal_open_clip_encode_text():
    model, tokenizer = tiny_clip()
    ids = tokenizer([f"a photo of a {name.replace('_', ' ')}." for name in CLASSES])
    with torch.no_grad():
        full = model.encode_text(ids)
        truncated = encode_token_ids_truncated(model, ids)
    assert ids.shape[1] > int(ids.argmax(dim=1).max()) + 1  # the cut really removes tokens
    assert torch.allclose(full, truncated, atol=1e-5)


def test_prompt_learner_features_equal_full_context_encoding():
    """Learned contexts scattered into the prompts, cut or not, give the same features."""
    model, tokenizer = tiny_clip()
    learner = DualPromptLearner(CLASSES, tokenizer, model.token_embedding, n_ctx=4)
    with torch.no_grad():
        learner.pos_ctx.normal_()
        prompts = learner()
        eot = learner.prompt_eot_positions()
        truncated = encode_prompt_embeddings(model, prompts, eot)
        # the same prompts at full context length
        layout = learner.layout
        full_embeds = model.token_embedding(torch.cat([layout.token_ids, layout.token_ids]))
        full_embeds[:, : prompts.shape[1]] = prompts
        full = encode_prompt_embeddings(model, full_embeds, eot)
    assert prompts.shape[1] < layout.token_ids.shape[1]
    assert torch.allclose(full, truncated, atol=1e-5)


def test_prompt_layout_marks_context_name_and_eot():
    _, tokenizer = tiny_clip()
    for position in ("end", "middle", "front"):
        layout = build_prompt_layout(["sea lion"], tokenizer, n_ctx=4, class_position=position)
        ids = layout.token_ids[0]
        eot = int(layout.eot_positions[0])
        assert int(ids[eot]) == tokenizer.eot_token_id and int(ids[0]) == tokenizer.sot_token_id
        assert int(ids.argmax()) == eot
        assert [int(ids[p]) for p in layout.name_positions[0]] == tokenizer.encode("sea lion")
        assert int(ids[eot - 1]) == tokenizer.encode(".")[0]
        assert len(set(layout.context_positions[0].tolist()) & set(layout.name_positions[0])) == 0
