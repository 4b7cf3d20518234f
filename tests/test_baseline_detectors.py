"""Baseline detectors of SPEC §4: label-match (zero-shot CLIP) and small-loss (oracle r, or GMM)."""

from __future__ import annotations

import csv
import json
import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from conftest import compose
from deft_lightning.detect import detect
from deft_lightning.selection.small_loss import (
    forget_rate_schedule,
    num_kept,
    rank_clean_mask,
    small_loss_keep_mask,
)

CLASSES = ["red", "green", "blue", "yellow", "purple"]


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def run_detect(tmp_path, name: str, extra: list[str]):
    run = tmp_path / name
    cfg = compose(["experiment=demo", f"paths.output_dir={run}", f"paths.cache_dir={tmp_path / 'cache'}",
                   "callbacks.progress_bar=false", *extra], config_name="detect")
    results = detect(cfg)
    return run / "detection", results["detection"]


# ----- the small-loss rule, pinned by hand ------------------------------------------------------
def test_forget_rate_rises_linearly_then_stays():
    assert [forget_rate_schedule(e, 0.4, 4) for e in range(7)] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.4])
    assert forget_rate_schedule(0, 0.4, 0) == 0.4  # no warm-up: full rate at once
    assert forget_rate_schedule(3, 0.0, 2) == 0.0
    with pytest.raises(ValueError):
        forget_rate_schedule(0, 1.0, 1)


@pytest.mark.parametrize(
    "batch, rate, kept",
    [(64, 0.0, 64), (64, 0.4, 38), (64, 0.2, 51), (10, 0.9, 1), (10, 0.7, 3), (10, 0.1, 9), (3, 0.5, 1), (1, 0.4, 0)],
)
def test_num_kept_is_the_floor_of_the_kept_share(batch, rate, kept):
    assert num_kept(batch, rate) == kept == math.floor(round((1 - rate) * batch, 9))


def test_keep_mask_keeps_the_smallest_losses():
    losses = torch.tensor([0.9, 0.1, 0.5, 0.3, 2.0, 0.3])
    mask = small_loss_keep_mask(losses, 0.5)  # keep 3: 0.1, 0.3 (pos 3), 0.3 (pos 5)
    assert mask.tolist() == [False, True, False, True, False, True]
    assert rank_clean_mask(losses.numpy(), 0.5).tolist() == mask.tolist()


class RandomImages(Dataset):
    """(image, label, index) rows of a fixed random tensor set."""

    def __init__(self, count: int = 20) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(count, 3, 32, 32, generator=generator)
        self.labels = torch.randint(0, len(CLASSES), (count,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i], i


def small_loss_module(forget_rate: float | None, warmup_epochs: int):
    from deft_lightning.models.clip import create_clip
    from deft_lightning.models.peft.vpt import VisualPromptTuning
    from deft_lightning.modules.small_loss import SmallLossModule

    torch.manual_seed(0)
    model, _ = create_clip("deft-tiny-clip", pretrained=None)
    return SmallLossModule(VisualPromptTuning(model.visual, num_tokens=2), model.visual.output_dim, len(CLASSES),
                           optimizer=lambda params: torch.optim.SGD(params, lr=0.05),
                           forget_rate=forget_rate, warmup_epochs=warmup_epochs)


def test_small_loss_training_keeps_the_scheduled_count_per_batch(tmp_path):
    """Batches of 8, 8, 4 over 4 epochs with r = 0.5 reached after 2 epochs: ⌊(1 − r_e)·B⌋ each."""
    module = small_loss_module(forget_rate=0.5, warmup_epochs=2)
    seen: list[tuple[int, int, int]] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            kept = outputs["selected"].long()
            seen.append((trainer.current_epoch, len(kept), int(kept.sum())))

    trainer = L.Trainer(max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Record()],
                        default_root_dir=tmp_path)
    trainer.fit(module, DataLoader(RandomImages(20), batch_size=8, shuffle=True))
    assert [b for _, b, _ in seen] == [8, 8, 4] * 4
    for epoch, batch, kept in seen:
        assert kept == math.floor((1 - 0.5 * min(1.0, epoch / 2)) * batch + 1e-9), (epoch, batch, kept)


@pytest.mark.filterwarnings("ignore:.*self.log.*")
def test_small_loss_step_averages_only_the_kept_losses():
    module = small_loss_module(forget_rate=0.5, warmup_epochs=0)
    images, labels, indices = next(iter(DataLoader(RandomImages(8), batch_size=8)))
    with torch.no_grad():
        per_sample = F.cross_entropy(module(images), labels, reduction="none")
    out = module.training_step((images, labels, indices), 0)
    loss = out["loss"]
    assert math.isclose(float(loss.detach()), float(per_sample.sort().values[:4].mean()), rel_tol=1e-5)
    kept = torch.stack([out["index"], out["selected"].long()], dim=1)
    assert kept[:, 1].sum() == 4 and set(kept[kept[:, 1] == 1, 0].tolist()) == set(per_sample.argsort()[:4].tolist())


# ----- label-match: zero-shot CLIP, no training ------------------------------------------------
def test_label_match_logits_are_open_clips_zero_shot():
    from deft_lightning.models.clip import create_clip, get_tokenizer
    from deft_lightning.modules.label_match import LabelMatchModule

    torch.manual_seed(0)
    model, _ = create_clip("deft-tiny-clip", pretrained=None)
    tokenizer = get_tokenizer("deft-tiny-clip")
    module = LabelMatchModule(model, CLASSES, tokenizer)
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        text = F.normalize(model.encode_text(tokenizer([f"a photo of a {c}." for c in CLASSES])), dim=-1)
        reference = 100.0 * F.normalize(model.encode_image(images), dim=-1) @ text.t()
        ours = module(images)
    assert torch.allclose(ours, reference, atol=1e-3)
    assert not any(p.requires_grad for p in module.parameters())


def test_label_match_recall_is_its_zero_shot_accuracy_on_clean_samples(tmp_path):
    out, summary = run_detect(tmp_path, "label_match", ["detector=label_match"])
    rows = read_rows(out / "selection.csv")
    given = np.array([int(r["given_label"]) for r in rows])
    true = np.array([int(r["true_label"]) for r in rows])
    predicted = np.array([int(r["predicted_label"]) for r in rows])
    is_clean = np.array([int(r["is_clean"]) for r in rows], bool)
    probs = np.load(out / "pred_probs.npy")

    assert np.array_equal(predicted, probs.argmax(axis=1))
    assert np.array_equal(is_clean, predicted == given)  # the rule, row by row
    truly_clean = given == true
    zero_shot_accuracy_on_clean = float((predicted[truly_clean] == true[truly_clean]).mean())
    assert summary["inference"]["recall"] == pytest.approx(zero_shot_accuracy_on_clean, abs=1e-6)
    # and precision: of the samples where CLIP agrees with the label, the share whose label is right
    assert summary["inference"]["precision"] == pytest.approx(float(truly_clean[is_clean].mean()), abs=1e-6)
    assert not (out / "detector_weights.pt").exists()  # nothing was trained
    assert not (out.parent / "checkpoints" / "detection" / "last.ckpt").exists()
    assert json.loads((out / "summary.json").read_text())["detector"] == "label_match"


# ----- small-loss end to end: the oracle rank and the GMM variant --------------------------------
def test_small_loss_keeps_the_oracle_share_of_smallest_losses(tmp_path):
    out, summary = run_detect(tmp_path, "small_loss", ["detector=small_loss", "detector.epochs=1"])
    rows = read_rows(out / "selection.csv")
    p_clean = np.array([float(r["p_clean"]) for r in rows])
    is_clean = np.array([int(r["is_clean"]) for r in rows], bool)
    assert is_clean.sum() == math.floor((1 - 0.4) * len(rows))  # r = noise.ratio (oracle)
    # p_clean = exp(-CE) ranks like the loss: every kept sample has p_clean >= every dropped one
    assert p_clean[is_clean].min() >= p_clean[~is_clean].max()
    assert summary["detector"] == "small_loss" and "online_last_epoch" in summary
    assert (out / "detector_weights.pt").is_file()


def test_small_loss_gmm_variant_is_oracle_free(tmp_path):
    out, summary = run_detect(tmp_path, "small_loss_gmm", ["detector=small_loss_gmm", "detector.epochs=1"])
    rows = read_rows(out / "selection.csv")
    p_clean = np.array([float(r["p_clean"]) for r in rows])
    is_clean = np.array([int(r["is_clean"]) for r in rows], bool)
    assert np.array_equal(is_clean, p_clean > 0.5)  # p_clean is the GMM's clean posterior
    assert ((0 <= p_clean) & (p_clean <= 1)).all()
    assert summary["detector"] == "small_loss_gmm" and "posterior" in summary["p_clean"].lower()
    # r was estimated from the first epoch's training losses, and travels with the artefact
    extra = torch.load(out / "detector_weights.pt", weights_only=True)["extra"]
    assert 0.0 < extra["estimated_forget_rate"] < 1.0


def test_oracle_rate_needs_known_noise():
    from deft_lightning.data.noise import NoisyLabels
    from deft_lightning.pipeline.baselines import resolve_forget_rate

    def noise(mode, ratio, realised):
        return NoisyLabels(np.zeros(3, int), None, mode, ratio, 0, realised, None)

    assert resolve_forget_rate("oracle", noise("sym", 0.4, 0.32)) == 0.4  # the reference uses r itself
    assert resolve_forget_rate("oracle", noise("real", 0.0, 0.402)) == 0.402
    assert resolve_forget_rate(None, noise("real", 0.0, None)) is None
    assert resolve_forget_rate(0.3, None) == 0.3
    with pytest.raises(ValueError, match="small_loss_gmm"):
        resolve_forget_rate("oracle", noise("real", 0.0, None))
    with pytest.raises(ValueError):
        resolve_forget_rate(1.5, None)


def test_a_small_loss_artefact_reloads_and_its_head_needs_the_same_classes(tmp_path):
    """Reloaded from plain values through the project's own small_loss node (issue 14: artefacts are data)."""
    from deft_lightning.errors import ArtifactError
    from deft_lightning.selection.clean_selection import CleanSelection

    out, _ = run_detect(tmp_path, "trained", ["detector=small_loss_gmm", "detector.epochs=1"])
    weights = out / "detector_weights.pt"
    saved = torch.load(weights, weights_only=True)
    assert saved["kind"] == "small_loss" and saved["detector_name"] == "small_loss_gmm"
    assert saved["detector"]["selection"] == "gmm" and saved["detector"]["forget_rate"] is None
    again, summary = run_detect(tmp_path, "reloaded", [f"detector.weights={weights}"])  # this run's detector: deft
    assert summary["detector_kind"] == "small_loss" and summary["detector"] == "small_loss_gmm"
    first, second = (CleanSelection.read_csv(d / "selection.csv") for d in (out, again))
    assert np.abs(first.p_clean - second.p_clean).max() <= 1e-6 and np.array_equal(first.is_clean, second.is_clean)

    renamed = tmp_path / "renamed.pt"
    torch.save(dict(saved, class_names=CLASSES[1:] + CLASSES[:1]), renamed)
    with pytest.raises(ArtifactError, match="small-loss head"):
        run_detect(tmp_path, "renamed", [f"detector.weights={renamed}"])
