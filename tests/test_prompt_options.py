"""Prompt options of the dual prompt learner (issue 4): class-specific contexts, class position, word init.

Positions are checked on the token ids; word initialisation is checked end to end: prompts whose
contexts are the embeddings of "a photo of a" must give exactly the text features open_clip computes
for the written sentence.
"""

from __future__ import annotations

import pytest
import torch

from conftest import compose
from deft_lightning.models.clip import create_clip, get_tokenizer
from deft_lightning.models.prompts import DualPromptLearner
from deft_lightning.models.text_encoder import encode_prompt_embeddings

CLASSES = ["red", "sea_lion", "golden retriever"]
INIT = "a photo of a"


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    model, _ = create_clip("deft-tiny-clip", pretrained=None)
    return model, get_tokenizer("deft-tiny-clip")


def learner(clip, **options) -> DualPromptLearner:
    model, tokenizer = clip
    return DualPromptLearner(CLASSES, tokenizer, model.token_embedding, context_length=model.context_length, **options)


def name_tokens(tokenizer, name: str) -> list[int]:
    return tokenizer.encode(name.replace("_", " "))


# ----- class-specific contexts ----------------------------------------------------------------
def test_class_specific_contexts_have_one_context_per_class(clip):
    model, _ = clip
    prompts = learner(clip, n_ctx=5, class_specific=True)
    width = model.token_embedding.weight.shape[1]
    assert prompts.pos_ctx.shape == prompts.neg_ctx.shape == (len(CLASSES), 5, width)
    shared = learner(clip, n_ctx=5)
    assert shared.pos_ctx.shape == (5, width)

    embedded = prompts()  # (2C, L, D): positive prompts, then negative
    for k in range(len(CLASSES)):
        slots = prompts.context_positions[k]
        assert torch.equal(embedded[k, slots], prompts.pos_ctx[k])
        assert torch.equal(embedded[len(CLASSES) + k, slots], prompts.neg_ctx[k])


def test_class_specific_contexts_train_per_class(clip):
    """A loss on class k's prompt moves only row k; a step on all classes moves every row."""
    model, _ = clip
    prompts = learner(clip, n_ctx=4, class_specific=True)
    features = encode_prompt_embeddings(model, prompts(), prompts.prompt_eot_positions())
    features[1].sum().backward()  # positive prompt of class 1 only
    grad = prompts.pos_ctx.grad
    assert grad[1].abs().sum() > 0
    assert grad[0].abs().sum() == 0 and grad[2].abs().sum() == 0
    assert prompts.neg_ctx.grad is None or prompts.neg_ctx.grad.abs().sum() == 0

    before = prompts.pos_ctx.detach().clone(), prompts.neg_ctx.detach().clone()
    optimizer = torch.optim.SGD(prompts.parameters(), lr=1.0)
    optimizer.zero_grad()
    features = encode_prompt_embeddings(model, prompts(), prompts.prompt_eot_positions())
    features.pow(2).sum().backward()
    optimizer.step()
    for after, start in zip((prompts.pos_ctx, prompts.neg_ctx), before):
        moved = (after.detach() - start).flatten(1).abs().sum(dim=1)
        assert (moved > 0).all(), moved


# ----- class token position -------------------------------------------------------------------
@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_class_position_lays_out_token_ids(clip, position):
    _, tokenizer = clip
    n_ctx = 5
    prompts = learner(clip, n_ctx=n_ctx, class_position=position)
    placeholder = tokenizer.encode("X")[0]
    period = tokenizer.encode(".")[0]
    for k, name in enumerate(CLASSES):
        ids = prompts.layout.token_ids[k].tolist()
        name_ids = name_tokens(tokenizer, name)
        first_name = {"end": 1 + n_ctx, "middle": 1 + n_ctx // 2, "front": 1}[position]
        name_slots = list(range(first_name, first_name + len(name_ids)))
        eot = 1 + n_ctx + len(name_ids) + 1  # SOS, contexts, name, period
        ctx_slots = [p for p in range(1, eot - 1) if p not in name_slots]

        assert ids[0] == tokenizer.sot_token_id
        assert [ids[p] for p in name_slots] == name_ids
        assert prompts.layout.name_positions[k] == name_slots
        assert prompts.context_positions[k].tolist() == ctx_slots
        assert all(ids[p] == placeholder for p in ctx_slots)
        assert ids[eot - 1] == period and ids[eot] == tokenizer.eot_token_id
        assert int(prompts.eot_positions[k]) == eot == max(range(len(ids)), key=ids.__getitem__)  # open_clip's argmax rule
        assert all(i == 0 for i in ids[eot + 1:])


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_class_position_embeds_contexts_names_and_eot_in_their_slots(clip, position):
    model, tokenizer = clip
    prompts = learner(clip, n_ctx=4, class_position=position)
    with torch.no_grad():
        prompts.pos_ctx.normal_()
        embedded = prompts()
        for k, name in enumerate(CLASSES):
            table = model.token_embedding(prompts.layout.token_ids[k])
            ctx = prompts.context_positions[k]
            assert torch.equal(embedded[k, ctx], prompts.pos_ctx)
            others = [p for p in range(embedded.shape[1]) if p not in ctx.tolist()]
            assert torch.equal(embedded[k, others], table[others])  # SOS, name, period, EOT untouched
            assert torch.equal(embedded[k, int(prompts.eot_positions[k])], model.token_embedding.weight[tokenizer.eot_token_id])


# ----- word initialisation --------------------------------------------------------------------
@pytest.mark.parametrize("class_specific", [False, True])
def test_word_init_sets_n_ctx_and_contexts_to_the_word_embeddings(clip, class_specific):
    model, tokenizer = clip
    words = tokenizer.encode(INIT)
    prompts = learner(clip, n_ctx=16, init_words=INIT, class_specific=class_specific)
    assert prompts.n_ctx == len(words) == 4
    expected = model.token_embedding.weight[words].detach()
    for context in (prompts.pos_ctx, prompts.neg_ctx):
        rows = context if class_specific else context.unsqueeze(0)
        assert all(torch.equal(row, expected) for row in rows)
    assert prompts.pos_ctx.data_ptr() != prompts.neg_ctx.data_ptr()  # two independent parameters


@pytest.mark.parametrize(
    "position, sentence",
    [("end", "a photo of a {}."), ("middle", "a photo {} of a."), ("front", "{} a photo of a.")],
)
def test_word_init_prompts_encode_like_the_written_sentence(clip, position, sentence):
    """The strongest check of layout + init: same features as open_clip's encode_text on the text."""
    model, tokenizer = clip
    prompts = learner(clip, init_words=INIT, class_position=position)
    with torch.no_grad():
        ours = encode_prompt_embeddings(model, prompts(), prompts.prompt_eot_positions())[: len(CLASSES)]
        text = tokenizer([sentence.format(name.replace("_", " ")) for name in CLASSES])
        reference = model.encode_text(text)
    assert torch.allclose(ours, reference, atol=1e-5)


def test_prompt_options_reach_the_detector_through_the_config(tmp_path):
    from deft_lightning.pipeline.detection import build_detector

    cfg = compose(["experiment=demo", f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}",
                   "detector.prompt.class_specific=true", "detector.prompt.class_position=middle",
                   "detector.prompt.init_words=a photo of a"])
    module, _ = build_detector(cfg, CLASSES)
    prompts = module.prompt_learner
    assert prompts.class_specific and prompts.n_ctx == 4
    assert prompts.pos_ctx.shape[:2] == (len(CLASSES), 4)
    assert prompts.layout.name_positions[0] == [3]  # SOS, "a", "photo", then the name
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    assert {"prompt_learner.pos_ctx", "prompt_learner.neg_ctx"} <= trainable
