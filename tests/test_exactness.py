"""Every speed-up is exact: the optimised paths compute what the naive reference paths compute.

Phase 1: the framework's step (prompts cut after the longest EOT, shared prefix run once per set, both
sets in one call, cached text without gradient) against the reference step (both sets at the full
context, separate calls, recomputed every time) — same loss, same gradients, ≤ 1e-5 relative in fp32;
the full training step (loss, gradients, updated parameters) is compared in fp64 to ≤ 1e-9 relative, so
that float32 summation order on another CPU or torch build (1.02e-5 on the lowest torch, 2.6.0, on an
AMD EPYC) cannot decide it, while any real difference between the two paths still shows far above 1e-9.
Phase 2: sampling the clean subset visits exactly the samples that loss masking lets count.
Input: reduced-size JPEG decoding never goes below the size the transform needs.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `benchmarks` is a top-level folder of the repository, not installed
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.reference import reference_detector  # noqa: E402
from deft_lightning.models.clip import create_clip, get_tokenizer  # noqa: E402
from deft_lightning.models.peft.vpt import VisualPromptTuning  # noqa: E402
from deft_lightning.models.prompts import DualPromptLearner  # noqa: E402
from deft_lightning.modules.detector import DetectorModule  # noqa: E402

# names of different token lengths, two sharing a first word: the suffixes differ in length
CLASSES = ["red", "golden retriever", "sea_lion", "blue", "sea turtle", "maple tree"]
RTOL = 1e-5
RTOL_FP64 = 1e-9  # the training-step comparison runs in float64: rounding is ~1e-15 there

pytestmark = pytest.mark.filterwarnings("ignore:.*self.log.*", "ignore:.*No pretrained weights.*")


def make_detector(class_position: str = "end", class_specific: bool = False, warmup_epochs: int = 1) -> DetectorModule:
    torch.manual_seed(0)
    model, _ = create_clip("deft-tiny-clip", pretrained=None)
    learner = DualPromptLearner(
        CLASSES, get_tokenizer("deft-tiny-clip"), model.token_embedding, n_ctx=4,
        class_position=class_position, class_specific=class_specific,
    )
    with torch.no_grad():  # contexts away from their init; negative near positive, so p_clean is near 0.5
        learner.pos_ctx.normal_(0.0, 0.5)
        learner.neg_ctx.copy_(learner.pos_ctx + 0.05 * torch.randn_like(learner.pos_ctx))
    visual = VisualPromptTuning(model.visual, num_tokens=3)
    optimizer = partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=5e-4)
    return DetectorModule(model, visual, learner, optimizer=optimizer, warmup_epochs=warmup_epochs)


def batch(size: int = 12):
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(size, 3, 32, 32, generator=generator)
    labels = torch.randint(0, len(CLASSES), (size,), generator=generator)
    return images, labels, torch.arange(size)


def train_step(module: DetectorModule, data) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One forward + backward + SGD step; the complementary labels are drawn from the same seed."""
    module.zero_grad(set_to_none=True)
    optimizer = module.configure_optimizers()
    torch.manual_seed(123)
    out = module.training_step(data, 0)
    module.last_selected = out["selected"]  # the step's decisions, for the branch check below
    loss = out["loss"]
    loss.backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad}
    optimizer.step()
    params = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    return loss.detach(), grads, params


def assert_close(ours: torch.Tensor, reference: torch.Tensor, what: str, rtol: float = RTOL) -> None:
    error = (ours - reference).norm()
    assert error <= rtol * reference.norm() + 1e-12, f"{what}: relative error {float(error / reference.norm()):.2e}"


@pytest.fixture
def float64():
    """Build and run in float64 (restored afterwards)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def snapshot(module: DetectorModule) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def restore(module: DetectorModule, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name in state:
                parameter.copy_(state[name])


@pytest.mark.parametrize("warmup", [True, False], ids=["warmup", "after-warmup"])
@pytest.mark.parametrize("class_position,class_specific", [("end", False), ("middle", False), ("end", True)])
def test_phase1_step_equals_reference_step(warmup: bool, class_position: str, class_specific: bool, float64) -> None:
    ours = make_detector(class_position, class_specific, warmup_epochs=1 if warmup else 0)
    assert ours.prompt_learner.pos_ctx.dtype == torch.float64
    reference = reference_detector(ours)
    start = snapshot(ours)
    data = batch()
    ref_loss, ref_grads, ref_params = train_step(reference, data)
    restore(ours, start)
    our_loss, our_grads, our_params = train_step(ours, data)

    assert torch.isclose(our_loss, ref_loss, rtol=RTOL_FP64, atol=0.0), (float(our_loss), float(ref_loss))
    assert set(our_grads) == {"visual_encoder.prompts", "prompt_learner.pos_ctx", "prompt_learner.neg_ctx"}
    for name in our_grads:
        assert_close(our_grads[name], ref_grads[name], f"gradient of {name}", RTOL_FP64)
        assert_close(our_params[name], ref_params[name], f"{name} after the SGD step", RTOL_FP64)
    if not warmup:
        assert ours.last_selected.any(), "no sample selected: the L_sim branch went untested"


def test_default_prompts_use_the_shared_prefix_and_the_truncated_context() -> None:
    ours = make_detector()
    learner = ours.prompt_learner
    assert ours.shared_prefix_text
    assert learner.shared_prefix_length == 1 + learner.n_ctx  # [SOS] + the shared context
    assert learner.token_embeds.shape[1] < ours.clip_model.context_length
    assert not make_detector(class_specific=True).shared_prefix_text  # nothing but [SOS] to share


def test_inference_pass_with_cached_text_equals_reference() -> None:
    ours = make_detector()
    reference = reference_detector(ours)
    images, labels, indices = batch(16)
    outputs = {}
    for name, module in (("ours", ours), ("reference", reference)):
        module.eval()
        module.on_predict_epoch_start()
        with torch.inference_mode():
            first = module.predict_step((images[:8], labels[:8], indices[:8]), 0)
            cached = module._cached_text
            second = module.predict_step((images[8:], labels[8:], indices[8:]), 1)
        if name == "ours":
            assert cached is not None and module._cached_text is cached  # the second batch reused the text
        else:
            assert module._cached_text is None  # the reference recomputes it for every batch
        outputs[name] = {k: torch.cat([first[k], second[k]]) for k in first}
    for key in ("p_clean", "class_probs"):
        assert_close(outputs["ours"][key], outputs["reference"][key], key)
    for key in ("is_clean", "predicted_label", "index"):
        assert torch.equal(outputs["ours"][key], outputs["reference"][key]), key


def test_cached_text_is_dropped_when_the_prompts_can_change() -> None:
    ours = make_detector()
    with torch.no_grad():
        ours.encode_text()
    assert ours._cached_text is not None
    for hook in (ours.on_train_epoch_start, ours.on_validation_epoch_start, ours.on_predict_epoch_start):
        with torch.no_grad():
            ours.encode_text()
        hook()
        assert ours._cached_text is None


# ----- phase 2 ----------------------------------------------------------------------------------
def phase2_datamodule(num_train: int = 150):
    from deft_lightning.data.datamodule import NoisyLabelDataModule
    from deft_lightning.data.readers.synthetic import read_synthetic

    reader = partial(read_synthetic, num_classes=10, num_train=num_train, num_test=10, image_size=32, seed=0)
    dm = NoisyLabelDataModule(reader, None, "exactness", {"mode": "sym", "ratio": 0.6, "seed": 0}, batch_size=16)
    dm.load()
    clean = dm.given_labels == dm.true_labels
    return dm, clean


def visited_indices(dm) -> list[int]:
    return [int(i) for _, _, idx in dm.train_dataloader() for i in idx]


def selection_of(dm, clean: np.ndarray):
    """A full-length selection marking ``clean`` (what phase 1 hands to ``use_selection``)."""
    from deft_lightning.selection.clean_selection import CleanSelection

    return CleanSelection(np.arange(len(clean)), dm.given_labels, dm.given_labels, clean.astype(float), clean)


def test_subset_sampling_and_loss_masking_visit_the_same_clean_samples() -> None:
    dm, clean = phase2_datamodule()
    assert 0 < clean.sum() < len(clean)

    dm.use_selection(selection_of(dm, clean))
    subset = visited_indices(dm)
    dm.use_selection(None)
    everything = visited_indices(dm)
    counted_by_mask = [i for i in everything if clean[i]]

    assert sorted(subset) == sorted(counted_by_mask) == np.flatnonzero(clean).tolist()
    assert len(set(subset)) == len(subset)  # each clean sample once per epoch


def test_loss_mask_counts_exactly_the_clean_samples_of_a_batch() -> None:
    from deft_lightning.losses.robust import CrossEntropy
    from deft_lightning.models.backbones import build_clip_classifier
    from deft_lightning.modules.adapter import AdapterModule

    dm, clean = phase2_datamodule()
    torch.manual_seed(0)
    model = build_clip_classifier(10, model_name="deft-tiny-clip", pretrained=None)
    dm.configure_inputs(model.input_config)
    optimizer = partial(torch.optim.SGD, lr=0.1)
    masked = AdapterModule(model, 10, CrossEntropy(), optimizer)
    subset = AdapterModule(model, 10, CrossEntropy(), optimizer)
    dm.use_selection(None)
    images, labels, indices = next(iter(dm.train_dataloader()))
    keep = torch.as_tensor(clean)[indices]
    assert 0 < keep.sum() < len(keep)

    losses, grads = [], []  # loss_mask mode: the batch carries is_clean; subset mode: only the clean samples
    for module, data in ((masked, (images, labels, indices, keep)), (subset, (images[keep], labels[keep], indices[keep]))):
        model.zero_grad(set_to_none=True)
        loss = module.training_step(data, 0)
        loss.backward()
        losses.append(loss.detach())
        grads.append(model.head.weight.grad.clone())
    assert torch.isclose(losses[0], losses[1], rtol=RTOL)
    assert_close(grads[0], grads[1], "head gradient")


# ----- input pipeline -----------------------------------------------------------------------------
@pytest.mark.parametrize("width,height", [(500, 500), (640, 427), (1024, 768), (300, 1200)])
@pytest.mark.parametrize("size", [64, 224, 256])
def test_reduced_size_decoding_keeps_the_requested_shorter_side(tmp_path: Path, width: int, height: int, size: int) -> None:
    from PIL import Image

    from deft_lightning.data.image_io import load_rgb

    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    path = tmp_path / "image.jpg"
    Image.fromarray(coarse).resize((width, height), Image.BICUBIC).save(path, quality=90)

    image = load_rgb(str(path), size)
    assert image.mode == "RGB"
    assert min(image.size) >= size
    if min(width, height) >= 2 * size:  # a reduction was possible: it happened
        assert image.size[0] < width and image.size[1] < height
    full = load_rgb(str(path), None)
    assert full.size == (width, height)


def test_benchmark_harness_runs_quickly(tmp_path: Path) -> None:
    """`make bench` plumbing with the tiny CLIP: one case, one timed call per path."""
    from benchmarks.run import main

    out = tmp_path / "bench.json"
    result = main(["--quick", "--device", "cpu", "--cases", "phase1_step", "--classes", "5",
                   "--warmup", "0", "--repeats", "1", "--out", str(out)])
    assert out.is_file()
    (row,) = result["cases"]
    assert row["ratio"] > 0 and row["prompt_tokens_ours"] < row["prompt_tokens_naive"]
