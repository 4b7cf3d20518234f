"""Phase-2 timm backbones: build at a small size, train and evaluate on CPU, paper optimisers, local weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from safetensors.torch import save_file

from deft_lightning.models.inputs import InputConfig
from deft_lightning.models.timm_backbones import (
    WeightsLoadError,
    WeightsUnavailableError,
    build_timm_classifier,
)

NUM_CLASSES = 5
IMAGE_SIZE = 32

# SPEC §3, the paper's hyperparameter table: config -> (tag, optimiser, lr, weight decay, momentum).
PAPER_TABLE = {
    "vit_b16": ("vit_base_patch16_224.augreg_in1k", torch.optim.SGD, 1e-2, 1e-5, 0.0),
    "resnet50": ("resnet50.a1_in1k", torch.optim.AdamW, 1e-3, 1e-5, None),
    "convnext_t": ("convnext_tiny.fb_in1k", torch.optim.AdamW, 1e-4, 1e-4, None),
    "mae_vit_b": ("vit_base_patch16_224.mae", torch.optim.AdamW, 1e-4, 1e-3, None),
}
# Normalisation each tag was pretrained with (timm pretrained configs), not the dataset's.
EXPECTED_MEAN = {
    "vit_b16": (0.5, 0.5, 0.5),
    "resnet50": (0.485, 0.456, 0.406),
    "convnext_t": (0.485, 0.456, 0.406),
    "mae_vit_b": (0.485, 0.456, 0.406),
}


def _backbone_cfg(name: str):
    """The shipped backbone config as composed (its YAML builds on backbone/base/timm.yaml)."""
    from conftest import compose

    return compose([f"backbone={name}", "paths.output_dir=/tmp/unused"]).backbone


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    """One random-init model per config, built through the config's own partial (ViT-B is ~86M params)."""
    built = {}
    for name in PAPER_TABLE:
        cfg = _backbone_cfg(name)
        factory = instantiate(cfg.model, pretrained=False, image_size=IMAGE_SIZE)
        torch.manual_seed(0)
        built[name] = factory(num_classes=NUM_CLASSES, class_names=[f"c{i}" for i in range(NUM_CLASSES)])
    return built


def _head_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    classifier = model.pretrained_cfg["classifier"]
    classifier = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return tuple(f"{c}." for c in classifier)


@pytest.mark.parametrize("name", list(PAPER_TABLE))
def test_config_matches_paper_table(name: str, models) -> None:
    tag, optimiser_cls, lr, weight_decay, momentum = PAPER_TABLE[name]
    cfg = _backbone_cfg(name)
    assert cfg.name == name
    assert cfg.model.model_name == tag
    assert cfg.model.pretrained is True and cfg.model.weights is None
    assert cfg.epochs == 10

    optimiser = instantiate(cfg.optimizer)(models[name].parameters())
    assert type(optimiser) is optimiser_cls
    group = optimiser.param_groups[0]
    assert group["lr"] == pytest.approx(lr)
    assert group["weight_decay"] == pytest.approx(weight_decay)
    if momentum is not None:
        assert group["momentum"] == momentum


@pytest.mark.parametrize("name", list(PAPER_TABLE))
def test_train_and_eval_step(name: str, models) -> None:
    model = models[name]
    cfg = _backbone_cfg(name)
    assert isinstance(model.input_config, InputConfig)
    assert model.input_config.image_size == IMAGE_SIZE
    assert model.input_config.mean == pytest.approx(EXPECTED_MEAN[name])

    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimiser = instantiate(cfg.optimizer)(model.parameters())
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    images = images.contiguous(memory_format=memory_format)
    labels = torch.tensor([0, 1, 2, 3])

    model.train()
    head_before = [p.detach().clone() for p in model.get_classifier().parameters()]
    logits = model(images)
    assert logits.shape == (4, NUM_CLASSES)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    optimiser.step()
    optimiser.zero_grad(set_to_none=True)
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(head_before, model.get_classifier().parameters()))

    model.eval()
    with torch.no_grad():
        first, second = model(images), model(images)
    assert first.shape == (4, NUM_CLASSES) and torch.isfinite(first).all()
    torch.testing.assert_close(first, second)  # eval mode is deterministic (no dropout / BN updates)


# vit_b16 in both formats: its registry source is a JAX .npz that needs custom_load, a local
# .pth/.safetensors copy must load as a plain state dict instead.
@pytest.mark.parametrize(
    "name, suffix",
    [
        ("vit_b16", ".pth"),
        ("vit_b16", ".safetensors"),
        ("resnet50", ".safetensors"),
        ("convnext_t", ".pth"),
        ("mae_vit_b", ".safetensors"),
    ],
)
def test_local_weights_file_loads_identically(name: str, suffix: str, models, tmp_path: Path) -> None:
    source = models[name]
    state = {k: v.detach().contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / f"{name}{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)

    cfg = _backbone_cfg(name)
    torch.manual_seed(123)  # a different random init, so equality can only come from the file
    loaded = instantiate(cfg.model, weights=str(path), image_size=IMAGE_SIZE)(num_classes=NUM_CLASSES)

    head = _head_prefixes(loaded)
    loaded_state = loaded.state_dict()
    assert set(loaded_state) == set(state)
    compared = 0
    for key, value in state.items():
        if key.startswith(head):
            continue  # the head is always new (num_classes of the task)
        assert torch.equal(loaded_state[key], value), key
        compared += 1
    assert compared > 0
    assert loaded.input_config == source.input_config


def test_missing_weights_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "resnet50.safetensors"
    with pytest.raises(FileNotFoundError, match="nowhere/resnet50.safetensors"):
        build_timm_classifier(NUM_CLASSES, "resnet50.a1_in1k", weights=str(missing), image_size=IMAGE_SIZE)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    """timm loads non-strictly once it drops the head; a foreign file must not silently stay random."""
    import timm

    foreign = timm.create_model("resnet18", pretrained=False, num_classes=NUM_CLASSES)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in foreign.state_dict().items()}, str(path))
    with pytest.raises(WeightsLoadError, match="resnet18.safetensors"):
        build_timm_classifier(NUM_CLASSES, "resnet50.a1_in1k", weights=str(path), image_size=IMAGE_SIZE)


def test_prefixed_checkpoint_keys_are_refused(models, tmp_path: Path) -> None:
    """A Lightning-style file ('model.' prefixes) matches no key: timm alone would leave it random."""
    state = {f"model.{k}": v.detach().contiguous() for k, v in models["resnet50"].state_dict().items()}
    path = tmp_path / "lightning_style.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsLoadError, match="backbone parameters are missing"):
        build_timm_classifier(NUM_CLASSES, "resnet50.a1_in1k", weights=str(path), image_size=IMAGE_SIZE)


def test_offline_without_file_says_how_to_pass_one(monkeypatch) -> None:
    """Simulate no network and no cache for both of timm's download routes (HF hub and plain URL)."""
    import timm.models._builder as builder
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("simulated: offline and not in the local cache")

    monkeypatch.setattr(builder, "load_state_dict_from_hf", offline)
    monkeypatch.setattr(builder, "load_state_dict_from_url", offline)
    monkeypatch.setattr(builder, "download_cached_file", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        build_timm_classifier(NUM_CLASSES, "resnet50.a1_in1k", pretrained=True, image_size=IMAGE_SIZE)
    message = str(info.value)
    assert "resnet50.a1_in1k" in message
    assert "backbone.model.weights=" in message
    assert "huggingface.co/timm/resnet50.a1_in1k" in message


def test_unknown_model_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="Unknown timm model"):
        build_timm_classifier(NUM_CLASSES, "resnet_fifty.a1_in1k", pretrained=False)


def _damaged(tmp_path: Path, state: dict, kind: str) -> Path:
    if kind == "garbage.pth":
        path = tmp_path / kind
        path.write_bytes(b"<html>404 not found</html>\n" * 20)
    elif kind == "empty.safetensors":
        path = tmp_path / kind
        path.write_bytes(b"")
    elif kind == "truncated.pth":
        full = tmp_path / "full.pth"
        torch.save(state, full)
        path = tmp_path / kind
        path.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    elif kind == "truncated.safetensors":
        full = tmp_path / "full.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(full))
        path = tmp_path / kind
        path.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    else:  # garbage.npz: an augreg-style JAX file that is not a zip archive
        path = tmp_path / kind
        path.write_bytes(b"PK\x03\x04 but nothing after" * 10)
    return path


@pytest.mark.parametrize("kind", ["garbage.pth", "empty.safetensors", "truncated.pth", "truncated.safetensors", "garbage.npz"])
def test_a_damaged_timm_weights_file_is_a_weights_error_naming_it(kind: str, models, tmp_path: Path) -> None:
    """Issue 14 item 7: one paragraph naming the file, the config key and what it should be."""
    from deft_lightning.errors import UserError

    name = "vit_base_patch16_224.augreg_in1k" if kind.endswith(".npz") else "resnet50.a1_in1k"
    path = _damaged(tmp_path, {k: v.detach() for k, v in models["resnet50"].state_dict().items()}, kind)
    with pytest.raises(WeightsUnavailableError) as info:
        build_timm_classifier(NUM_CLASSES, name, weights=str(path), image_size=IMAGE_SIZE)
    message = str(info.value)
    assert str(path) in message and "backbone.model.weights" in message and "state dict" in message, message
    assert isinstance(info.value, UserError) and info.value.__cause__ is None


def test_unknown_model_name_is_a_config_error_naming_the_key() -> None:
    from deft_lightning.errors import ConfigError

    with pytest.raises(ConfigError, match="backbone.model.model_name"):
        build_timm_classifier(NUM_CLASSES, "resnet_fifty.a1_in1k", pretrained=False)


def test_local_weights_are_checked_without_reading_timm_logs(models, tmp_path: Path) -> None:
    """The refusal comes from the incompatible keys ``timm.models.load_checkpoint`` returns, so it holds
    even when timm's builder logger is silenced (the old check parsed that logger's text)."""
    import logging

    state = {f"model.{k}": v.detach().contiguous() for k, v in models["resnet50"].state_dict().items()}
    path = tmp_path / "lightning_style.safetensors"
    save_file(state, str(path))
    builder = logging.getLogger("timm.models._builder")
    was_disabled = builder.disabled
    builder.disabled = True
    try:
        with pytest.raises(WeightsLoadError, match="backbone parameters are missing"):
            build_timm_classifier(NUM_CLASSES, "resnet50.a1_in1k", weights=str(path), image_size=IMAGE_SIZE)
    finally:
        builder.disabled = was_disabled


def test_phase2_transforms_use_the_backbones_interpolation_and_crop_ratio(models) -> None:
    """resnet50.a1_in1k is evaluated bicubic from a resize to floor(224 / 0.95) = 235, as timm resolves it
    (not the bilinear 256 of the reference's CLIP recipe); a CLIP model's transform is unchanged."""
    from timm.data import resolve_model_data_config
    from torchvision.transforms import InterpolationMode

    from deft_lightning.data.transforms import build_transform

    model = build_timm_classifier(NUM_CLASSES, "resnet50.a1_in1k", pretrained=False)
    data = resolve_model_data_config(model)
    assert (model.input_config.interpolation, model.input_config.crop_pct) == (data["interpolation"], data["crop_pct"])
    for train in (False, True):
        resize = build_transform("generic", train, model.input_config).transforms[0]
        assert resize.size in (235, [235]) and resize.interpolation == InterpolationMode.BICUBIC, (train, resize)
    squash = build_transform("fine_grained", False, model.input_config).transforms[0]
    assert tuple(squash.size) == (235, 235)
    clip = build_transform("generic", False, InputConfig()).transforms[0]
    assert clip.size == 256 and clip.interpolation == InterpolationMode.BILINEAR
