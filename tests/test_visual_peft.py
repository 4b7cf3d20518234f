"""Visual PEFT variants on the tiny CLIP: what trains, what stays frozen, where each starts (issue 4)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

import deft_lightning
from deft_lightning.models.peft import count_parameters
from deft_lightning.models.peft.blocks import self_attention
from deft_lightning.models.peft.lora import VisualLoRA
from deft_lightning.models.peft.vpt import VisualPromptTuning

PEFT_CONF = Path(deft_lightning.__file__).parent / "conf" / "peft"
VARIANTS = ["vpt_deep", "vpt_shallow", "lora", "adapter", "ssf", "bias"]
BLOCKS, WIDTH, HIDDEN, PATCHES = 2, 64, 256, 16  # deft-tiny-clip: 32 px, patch 8
# own parameters living in block 0, by name: peft/bias keys inside the tower, ours keyed by block index
IN_BLOCK_0 = re.compile(r"resblocks\.0\.|^(attn_lora|adapters|ssf)\.0\.")


@pytest.fixture(scope="module")
def clip_model():
    from deft_lightning.models.clip import create_clip

    torch.manual_seed(0)
    model, _ = create_clip("deft-tiny-clip", pretrained=None)
    return model


@pytest.fixture
def visual(clip_model):
    return copy.deepcopy(clip_model.visual)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def build(name: str, visual, **options):
    config = OmegaConf.load(PEFT_CONF / f"{name}.yaml")
    assert config.name == name
    for key, value in options.items():
        config.module[key] = value
    return instantiate(config.module)(visual=visual)


def own_parameter_names(module) -> set[str]:
    return {name for name, parameter in module.named_parameters() if parameter.requires_grad}


def train_steps(module, images: torch.Tensor, steps: int = 3, lr: float = 0.5) -> None:
    """SGD on every parameter the module has: anything wrongly trainable would move too."""
    generator = torch.Generator().manual_seed(2)
    head = torch.randn(module.visual.output_dim, 5, generator=generator)
    labels = torch.randint(0, 5, (images.shape[0],), generator=generator)
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    module.train()
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(module(images) @ head, labels).backward()
        optimizer.step()


@pytest.mark.parametrize("partial", [None, 1])
@pytest.mark.parametrize("name", VARIANTS)
def test_only_own_parameters_train(name: str, partial, visual, images) -> None:
    module = build(name, visual, partial=partial)
    own = own_parameter_names(module)
    assert own, f"{name} has nothing to train"
    before = {key: value.detach().clone() for key, value in module.named_parameters()}
    train_steps(module, images)
    after = dict(module.named_parameters())
    assert after.keys() == before.keys()
    changed = {key for key in before if not torch.equal(before[key], after[key].detach())}
    assert changed == own, f"changed but frozen: {changed - own}; trainable but unchanged: {own - changed}"
    if partial == 1:
        assert not any(IN_BLOCK_0.search(key) for key in own), sorted(own)
        if name == "vpt_deep":
            assert module.prompts.shape[0] == 1


@pytest.mark.parametrize("name", VARIANTS)
def test_trainable_state_dict_holds_only_peft_and_reloads(name: str, clip_model, images) -> None:
    module = build(name, copy.deepcopy(clip_model.visual))
    train_steps(module, images, steps=2)
    saved = module.trainable_state_dict()
    assert set(saved) == own_parameter_names(module)
    assert sum(t.numel() for t in saved.values()) == count_parameters(module)[1]

    torch.manual_seed(123)  # a different init: the reload has to bring the trained values back
    fresh = build(name, copy.deepcopy(clip_model.visual))
    missing, unexpected = fresh.load_state_dict(saved, strict=False)
    assert not unexpected and not set(saved) & set(missing)
    module.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(images), module(images))


LORA_TARGETS = [["attn"], ["qkv"], ["mlp"], ["attn", "mlp"], ["qkv", "mlp"]]
IDENTITY_CASES = (
    [("lora", {"targets": t, "partial": p}) for t in LORA_TARGETS for p in (None, 1)]
    + [("adapter", {"partial": p}) for p in (None, 1)]
    + [("adapter", {"activation": "gelu", "norm": False})]
    + [("ssf", {"init_std": 0.0, "partial": p}) for p in (None, 1)]
)


@pytest.mark.parametrize(("name", "options"), IDENTITY_CASES)
def test_starts_as_identity(name: str, options: dict, clip_model, images) -> None:
    frozen = copy.deepcopy(clip_model.visual).train()  # train mode: the MHA's generic path on both sides
    module = build(name, copy.deepcopy(clip_model.visual), **options).train()
    with torch.no_grad():
        assert torch.allclose(module(images), frozen(images), atol=1e-6)


def test_ssf_reference_init_is_near_identity(visual) -> None:
    module = build("ssf", visual)
    scales = torch.cat([m.scale.detach() for m in module.ssf.modules() if hasattr(m, "scale")])
    shifts = torch.cat([m.shift.detach() for m in module.ssf.modules() if hasattr(m, "shift")])
    assert abs(scales.mean().item() - 1) < 0.01 and 0.01 < scales.std().item() < 0.03
    assert abs(shifts.mean().item()) < 0.01 and 0.01 < shifts.std().item() < 0.03


def test_reimplemented_attention_matches_multihead_attention(visual) -> None:
    attn = visual.transformer.resblocks[0].attn.train()
    x = torch.randn(3, 1 + PATCHES + 5, WIDTH)
    with torch.no_grad():
        assert torch.allclose(self_attention(attn, x), attn(x, x, x, need_weights=False)[0], atol=1e-6)


@pytest.mark.parametrize("targets", LORA_TARGETS)
def test_lora_gets_gradients_and_changes_output(targets, clip_model, images) -> None:
    module = VisualLoRA(copy.deepcopy(clip_model.visual), rank=4, alpha=4, targets=targets).train()
    own = {name: p for name, p in module.named_parameters() if p.requires_grad}
    head = torch.randn(module.visual.output_dim, 5, generator=torch.Generator().manual_seed(3))
    labels = torch.arange(images.shape[0]) % 5
    optimizer = torch.optim.SGD(own.values(), lr=0.5)
    with torch.no_grad():
        start = module(images)

    F.cross_entropy(module(images) @ head, labels).backward()
    for name, parameter in own.items():  # B = 0 at init: only B gets a gradient on the first step
        is_b = "lora_B" in name
        assert (parameter.grad.abs().sum() > 0) == is_b, name
    optimizer.step()
    optimizer.zero_grad()
    with torch.no_grad():
        assert not torch.allclose(module(images), start, atol=1e-4)

    F.cross_entropy(module(images) @ head, labels).backward()
    assert all(parameter.grad.abs().sum() > 0 for parameter in own.values())


def test_lora_counts_and_reference_scaling(visual) -> None:
    module = build("lora", visual)
    assert module.targets == ["attn"]
    assert count_parameters(module)[1] == BLOCKS * 2 * (2 * 8 * WIDTH)  # q and v, rank 8
    delta = module.attn_lora["0"].q
    assert delta.scaling == pytest.approx(1 / 8)  # reference: 1 / rank
    assert delta.lora_A.abs().max() <= 1 / 8**0.5 and torch.count_nonzero(delta.lora_B) == 0


@pytest.mark.parametrize("target", ["out_proj", "attn.out_proj"])
def test_lora_refuses_out_proj(target, visual) -> None:
    with pytest.raises(ValueError, match="silently do nothing"):
        VisualLoRA(visual, targets=[target])


def test_lora_on_out_proj_really_is_a_noop(clip_model, images) -> None:
    """Why the guard exists: peft LoRA on an MHA's out_proj never runs, whatever its weights."""
    from peft import LoraConfig, inject_adapter_in_model

    tower = copy.deepcopy(clip_model.visual).train()
    with torch.no_grad():
        start = tower(images)
    config = LoraConfig(r=4, target_modules=["transformer.resblocks.1.attn.out_proj"])
    inject_adapter_in_model(config, tower)
    with torch.no_grad():
        tower.transformer.resblocks[1].attn.out_proj.lora_B["default"].weight.fill_(1.0)
        assert torch.equal(tower(images), start)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"targets": ["attn", "qkv"]}, "pick one"),
        ({"targets": ["mlp", "fc"]}, "valid targets"),
        ({"targets": []}, "at least one"),
        ({"targets": ["qkv"], "dropout": 0.1}, "dropout"),
        ({"rank": 0}, "rank"),
    ],
)
def test_lora_bad_options(options: dict, message: str, visual) -> None:
    with pytest.raises(ValueError, match=message):
        VisualLoRA(visual, **options)


@pytest.mark.parametrize("partial", [None, 1])
def test_vpt_deep_appends_fresh_raw_prompts_at_every_chosen_block(partial, visual, images) -> None:
    tokens = 5
    module = build("vpt_deep", visual, num_tokens=tokens, partial=partial)
    seen: dict[int, torch.Tensor] = {}
    hooks = [
        block.register_forward_pre_hook(lambda _, args, index=index: seen.__setitem__(index, args[0].detach()))
        for index, block in enumerate(module.blocks)
    ]
    with torch.no_grad():
        module(images)
    for hook in hooks:
        hook.remove()

    first = BLOCKS - (partial or BLOCKS)
    for index in range(BLOCKS):
        x = seen[index]
        if index < first:
            assert x.shape[1] == 1 + PATCHES
            continue
        assert x.shape[1] == 1 + PATCHES + tokens  # K tokens per layer, never accumulating
        # the prompt rows are the raw parameters: no positional embedding, no ln_pre, nothing carried over
        prompt = module.prompts[index - first].detach()
        assert torch.equal(x[:, 1 + PATCHES :], prompt.expand_as(x[:, 1 + PATCHES :]))
    assert module.forward_tokens(images).shape[1] == 1 + PATCHES  # prompts dropped before pooling


def test_vpt_shallow_appends_once_and_carries(visual, images) -> None:
    tokens = 3
    module = build("vpt_shallow", visual, num_tokens=tokens)
    seen: dict[int, torch.Tensor] = {}
    hooks = [
        block.register_forward_pre_hook(lambda _, args, index=index: seen.__setitem__(index, args[0].detach()))
        for index, block in enumerate(module.blocks)
    ]
    with torch.no_grad():
        module(images)
    for hook in hooks:
        hook.remove()
    assert module.prompts.shape == (1, tokens, WIDTH)
    assert all(seen[i].shape[1] == 1 + PATCHES + tokens for i in range(BLOCKS))
    assert torch.equal(seen[0][:, 1 + PATCHES :], module.prompts[0].detach().expand(images.shape[0], -1, -1))
    assert not torch.equal(seen[1][:, 1 + PATCHES :], seen[0][:, 1 + PATCHES :])  # carried, transformed


def test_vpt_prompt_init_bound(visual) -> None:
    module = build("vpt_deep", visual)
    bound = (6.0 / (3 * 8 * 8 + WIDTH)) ** 0.5  # sqrt(6 / (3 p^2 + width)), p = 8
    assert module.prompts.shape == (BLOCKS, 20, WIDTH)
    assert module.prompts.abs().max() <= bound and module.prompts.abs().max() > 0.9 * bound


@pytest.mark.parametrize("name", VARIANTS)
def test_parameter_counts(name: str, clip_model) -> None:
    tower_total = count_parameters(clip_model.visual)[0]
    module = build(name, copy.deepcopy(clip_model.visual))
    total, trainable = count_parameters(module)
    per_block = {
        "vpt_deep": 20 * WIDTH,
        "lora": 2 * 2 * 8 * WIDTH,
        "adapter": 2 * WIDTH + (WIDTH * 64 + 64) + (64 * WIDTH + WIDTH),
        "ssf": 2 * (3 * WIDTH + WIDTH + HIDDEN + WIDTH),
        # ln_1, in_proj, out_proj, ln_2, c_fc, c_proj biases
        "bias": WIDTH + 3 * WIDTH + WIDTH + WIDTH + HIDDEN + WIDTH,
    }
    expected = {"vpt_shallow": 20 * WIDTH, "bias": BLOCKS * per_block["bias"] + 2 * WIDTH}  # + ln_pre, ln_post
    assert trainable == expected.get(name, BLOCKS * per_block.get(name, 0))
    assert total == tower_total + (0 if name == "bias" else trainable)
    if name == "bias":
        partial_module = build(name, copy.deepcopy(clip_model.visual), partial=1)
        assert count_parameters(partial_module)[1] == per_block["bias"]
        assert {"ln_pre.bias", "ln_post.bias", "transformer.resblocks.0.attn.in_proj_bias"} <= set(module.bias_names)


@pytest.mark.parametrize("name", ["adapter", "ssf", "lora"])
def test_own_variants_leave_the_tower_state_untouched(name: str, clip_model) -> None:
    module = build(name, copy.deepcopy(clip_model.visual))
    assert module.visual.state_dict().keys() == clip_model.visual.state_dict().keys()


@pytest.mark.parametrize("partial", [0, BLOCKS + 1, -1])
@pytest.mark.parametrize("name", VARIANTS)
def test_bad_partial_is_a_clear_error(name: str, partial: int, visual) -> None:
    with pytest.raises(ValueError, match=rf"partial must be between 1 and {BLOCKS}"):
        build(name, visual, partial=partial)


def test_configs_build_the_documented_classes(visual) -> None:
    assert isinstance(build("vpt_shallow", copy.deepcopy(visual)), VisualPromptTuning)
    assert not build("vpt_shallow", copy.deepcopy(visual)).deep
    assert isinstance(build("lora", visual), VisualLoRA)
