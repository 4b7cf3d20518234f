"""The toy world: deterministic generator, downstream dataset, cached pretraining, zero-shot check."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from deft_lightning.data.base import DatasetError
from deft_lightning.toy.reader import read_toy
from deft_lightning.toy import pretrain as toy_pretrain
from deft_lightning.toy.generator import (
    COLOUR_NAMES,
    COLOUR_WORDS,
    SHAPE_WORDS,
    SHAPES,
    TOY,
    WEB,
    captions_for,
    generate_labelled,
    generate_web,
    held_out_colours,
    sample_scenes,
)
from deft_lightning.toy.zero_shot import zero_shot_accuracy, zero_shot_predictions

TINY_RECIPE = toy_pretrain.PretrainConfig(steps=3, batch_size=8, warmup_steps=1)


def test_web_generator_is_deterministic_in_its_seed():
    images_a, captions_a = generate_web(48, seed=3)
    images_b, captions_b = generate_web(48, seed=3)
    images_c, captions_c = generate_web(48, seed=4)
    assert images_a.tobytes() == images_b.tobytes() and captions_a == captions_b
    assert images_a.tobytes() != images_c.tobytes() and captions_a != captions_c


def test_labelled_generator_is_deterministic_and_streams_differ():
    a = generate_labelled(40, seed=1)
    b = generate_labelled(40, seed=1)
    other_seed = generate_labelled(40, seed=2)
    other_stream = generate_labelled(40, seed=1, stream=1)
    assert a[0].tobytes() == b[0].tobytes() and np.array_equal(a[1], b[1])
    assert a[0].tobytes() != other_seed[0].tobytes()
    assert a[0].tobytes() != other_stream[0].tobytes()


def test_generator_shapes_and_dtypes():
    images, captions = generate_web(30, seed=0)
    assert images.shape == (30, 32, 32, 3) and images.dtype == np.uint8
    assert len(captions) == 30 and all(isinstance(c, str) and c for c in captions)
    assert images.std() > 10  # not blank
    images, labels = generate_labelled(25, seed=0)
    assert images.shape == (25, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.min() >= 0 and labels.max() < len(SHAPES)
    assert np.bincount(labels, minlength=len(SHAPES)).tolist() == [3] * 5 + [2] * 5  # balanced
    big, _ = generate_labelled(4, seed=0, domain=dataclasses.replace(TOY, image_size=64))
    assert big.shape == (4, 64, 64, 3)


def test_captions_name_the_attributes():
    domain = dataclasses.replace(WEB, caption_shape_noise=0.0, two_object_prob=0.0, mention={**WEB.mention, "colour": 1.0})
    rng = np.random.default_rng(0)
    scenes = sample_scenes(rng, 200, domain)
    captions = captions_for(rng, scenes, domain)
    for i, caption in enumerate(captions):
        shape = SHAPES[scenes["shape"][i, 0]]
        colour = COLOUR_NAMES[scenes["colour"][i, 0]]
        assert any(word in caption for word in SHAPE_WORDS[shape]), (caption, shape)
        assert any(word in caption for word in COLOUR_WORDS[colour]), (caption, colour)
    # the class names themselves are what the web captions use most
    text = " ".join(generate_web(500, seed=1)[1])
    assert all(name in text for name in SHAPES)


def test_web_never_shows_held_out_colour_shape_pairs_but_toy_does():
    rng = np.random.default_rng(0)
    web = sample_scenes(rng, 3000, WEB)
    toy = sample_scenes(rng, 3000, TOY)

    def held(scenes, slot):
        return np.array([scenes["colour"][i, slot] in held_out_colours(scenes["shape"][i, slot]) for i in range(3000)])

    assert not held(web, 0).any() and not held(web, 1)[web["n_objects"] == 2].any()
    assert abs(held(toy, 0).mean() - TOY.held_out_prob) < 0.05


def test_read_toy_contract():
    data = read_toy(num_train=30, num_test=20, seed=5)
    assert data.name == "toy" and data.family == "cifar" and data.class_names == list(SHAPES)
    assert data.num_classes == 10
    assert data.train.images.shape == (30, 32, 32, 3) and data.train.images.dtype == np.uint8
    test = data.test["test"]
    assert len(test) == 20 and test.clean_labels.dtype == np.int64
    again = read_toy(num_train=30, num_test=20, seed=5)
    assert again.train.images.tobytes() == data.train.images.tobytes()
    assert data.train.images.tobytes() != test.images[:20].tobytes()
    easier = read_toy(num_train=10, num_test=10, seed=5, distractors=[0, 0])
    assert easier.train.images.shape == (10, 32, 32, 3)
    with pytest.raises(DatasetError, match="unknown option"):
        read_toy(num_train=10, num_test=10, bogus=1)


def test_trimmed_text_encoder_matches_open_clip():
    import open_clip

    toy_pretrain.register_model_config()
    torch.manual_seed(0)
    model = open_clip.create_model(toy_pretrain.MODEL_NAME).eval()
    tokens = open_clip.get_tokenizer(toy_pretrain.MODEL_NAME)(["a red circle", "a photo of a big striped heart."])
    with torch.no_grad():
        torch.testing.assert_close(toy_pretrain.encode_text_trimmed(model, tokens), model.encode_text(tokens))


def test_pretraining_checkpoint_loads_through_open_clip_and_is_cached(tmp_path):
    import open_clip

    runs_before = toy_pretrain.PRETRAIN_RUNS
    path = toy_pretrain.ensure_pretrained(tmp_path, seed=0, progress=False, config=TINY_RECIPE)
    assert toy_pretrain.PRETRAIN_RUNS == runs_before + 1
    assert path.is_file() and path.parent.parent == tmp_path / "toy_clip"
    assert path.parent.name == toy_pretrain.cache_key(0, TINY_RECIPE)
    assert (path.parent / toy_pretrain.META_NAME).is_file()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]

    saved = torch.load(path, weights_only=True)
    model = open_clip.create_model(toy_pretrain.MODEL_NAME, pretrained=str(path))
    loaded = model.state_dict()
    assert saved.keys() == loaded.keys()
    for key, value in saved.items():
        assert torch.equal(value, loaded[key]), key

    mtime = path.stat().st_mtime_ns
    assert toy_pretrain.ensure_pretrained(tmp_path, seed=0, progress=False, config=TINY_RECIPE) == path
    assert toy_pretrain.PRETRAIN_RUNS == runs_before + 1 and path.stat().st_mtime_ns == mtime
    # another seed or recipe is another key
    assert toy_pretrain.checkpoint_path(tmp_path, seed=1, config=TINY_RECIPE) != path
    assert toy_pretrain.checkpoint_path(tmp_path, seed=0) != path


def test_zero_shot_accuracy_agrees_with_predictions():
    import open_clip

    toy_pretrain.register_model_config()
    torch.manual_seed(0)
    model = open_clip.create_model(toy_pretrain.MODEL_NAME)
    tokenizer = open_clip.get_tokenizer(toy_pretrain.MODEL_NAME)
    inputs = toy_pretrain.input_config()
    images, labels = generate_labelled(30, seed=0)
    preds = zero_shot_predictions(model, tokenizer, images, SHAPES, inputs.mean, inputs.std, batch_size=7)
    assert preds.shape == (30,)
    acc = zero_shot_accuracy(model, tokenizer, images, labels, SHAPES, inputs.mean, inputs.std, batch_size=7)
    assert acc == pytest.approx(float((preds == labels).mean()))
    assert model.training  # the caller's mode is restored


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_pretrained_toy_clip_zero_shot_is_in_the_papers_range():
    """Issue 8's first criterion: zero-shot on the toy test set between 50 % and 85 %.

    Loads the toy CLIP shipped with the package (no pretraining).
    """
    from deft_lightning.toy.pretrain import input_config, load_pretrained

    model, tokenizer = load_pretrained(progress=False)
    data = read_toy()
    test = data.test["test"]
    inputs = input_config()
    acc = zero_shot_accuracy(model, tokenizer, test.images, test.clean_labels, data.class_names, inputs.mean, inputs.std)
    assert 0.50 <= acc <= 0.85, acc


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_deft_detects_label_noise_in_the_toy_world_far_better_than_chance(toy_detection_run):
    """Issue 8's regression guard: a wrong sign or swapped prompt roles in DEFT drop its F1 to that of
    keeping random samples, which this test tells apart. Measured with the shipped toy CLIP at sym 0.4:
    F1 0.81 against 0.61 for a random selection of the same size; with the positive and negative prompt
    roles swapped (a deliberately broken copy), F1 0.31 against 0.52, so the test fails as it should.

    With the stop-gradients swapped (a broken copy where L_dp's p_yes and p_no take s+ live and s-
    detached, so L_dp trains the positive context and the visual tower and never the negative context):
    F1 0.223 against 0.403 random (precision 35.4 % at a 64.0 % clean rate), so the test fails as it
    should (stop 21, 156 s on one thread).

    It does not guard their removal: a copy with both removed (p_yes and p_no on the live s+, and s- on
    the live image features) gave F1 0.863 against 0.636 random here, above the intact 0.814 against
    0.614 in the same session, and passed. That removal is guarded by the gradient tests, which that copy
    fails (test_detector_gradients: two tests; test_dual_prompt_loss: one).

    Random selection of a fraction q of the samples, when a fraction c is clean, has precision c and
    recall q, so F1 = 2cq / (c + q). Uses the toy CLIP shipped with the package.
    """
    # the full-size toy training set and schedule (conftest.toy_detection_run): on 2000 images / 5 epochs
    # DEFT was measured no better than chance (precision 65 % at a 64 % clean rate), so a smaller world
    # cannot guard it
    inference = toy_detection_run[1]["inference"]
    clean, kept = 1.0 - inference["actual_noise_rate"], inference["clean_fraction"]
    random_f1 = 2 * clean * kept / (clean + kept)
    assert inference["f1"] > random_f1 + 0.10, (inference, random_f1)
    assert inference["precision"] > clean + 0.10, inference


def test_logit_scale_null_follows_the_loaded_model():
    import open_clip

    from deft_lightning.models.clip import resolve_logit_scale

    toy_pretrain.register_model_config()
    model = open_clip.create_model(toy_pretrain.MODEL_NAME)
    with torch.no_grad():
        model.logit_scale.fill_(np.log(19.0))
    assert resolve_logit_scale(None, model) == pytest.approx(19.0, rel=1e-5)
    assert resolve_logit_scale(100.0, model) == 100.0
