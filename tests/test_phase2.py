"""Phase 2 in full: every method on the demo, GMM refits, subset/loss-mask training, held-out selection,
several test sets, and the zero-shot CLIP head."""

from __future__ import annotations

import json
import math
import warnings
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import compose
from deft_lightning.data.base import DatasetFiles
from deft_lightning.data.datamodule import HELDOUT_SET, NoisyLabelDataModule
from deft_lightning.data.readers.synthetic import read_synthetic
from deft_lightning.models.inputs import InputConfig
from deft_lightning.modules.adapter import AdapterModule
from deft_lightning.pipeline import gmm_refit
from deft_lightning.pipeline.adaptation import run_adaptation
from deft_lightning.pipeline.gmm_refit import GMMRefit, per_sample_losses
from deft_lightning.train import train

NUM_CLASSES = 5
IMAGE_SIZE = 8
INPUTS = InputConfig(image_size=IMAGE_SIZE)
QUIET = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
             enable_model_summary=False, num_sanity_val_steps=0)


# ----- helpers ---------------------------------------------------------------------------------
def tiny_reader(num_train: int = 60, two_test_sets: bool = False):
    """Synthetic data at 8 px; optionally WebVision-like with two test sets (the second: classes 0 and 1 only)."""

    def read(root=None) -> DatasetFiles:
        files = read_synthetic(num_classes=NUM_CLASSES, num_train=num_train, num_test=20, image_size=IMAGE_SIZE)
        if two_test_sets:
            test = files.test["test"]
            files.test = {"webvision_val": test, "imagenet_val": test.subset(np.flatnonzero(test.clean_labels < 2))}
        return files

    return read


def tiny_datamodule(tmp_path, num_train: int = 60, two_test_sets: bool = False, **kwargs) -> NoisyLabelDataModule:
    dm = NoisyLabelDataModule(tiny_reader(num_train, two_test_sets), root=None, dataset_name="tiny",
                              noise={"mode": "sym", "ratio": 0.4, "seed": 0}, batch_size=8, num_workers=0,
                              cache_dir=str(tmp_path / "cache"), **kwargs)
    dm.load()
    dm.configure_inputs(INPUTS)
    return dm


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * IMAGE_SIZE * IMAGE_SIZE, NUM_CLASSES))


def adapter(dm: NoisyLabelDataModule) -> AdapterModule:
    from deft_lightning.losses.robust import CrossEntropy

    return AdapterModule(tiny_model(), NUM_CLASSES, CrossEntropy(), lambda params: torch.optim.SGD(params, lr=0.1),
                         eval_set_names=dm.eval_set_names)


class IndexRecorder(L.Callback):
    """The dataset indices the training loop actually receives, per epoch."""

    def __init__(self) -> None:
        self.seen: dict[int, list[int]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.setdefault(trainer.current_epoch, []).extend(batch[2].tolist())


def read_metrics(run_dir) -> dict:
    return json.loads((run_dir / "adaptation" / "metrics.json").read_text())


# ----- every method, end to end ------------------------------------------------------------------
@pytest.mark.parametrize("method", ["deft", "ce", "gce", "sce", "elr", "gmm"])
def test_every_method_runs_on_the_demo(method, demo_overrides, tmp_path):
    # baselines train on the given labels: no phase 1 and no selection file needed
    phases = "[detect,adapt]" if method == "deft" else "[adapt]"
    # debug=fast now wins over the demo's epochs (it is applied last): keep the demo's 2 phase-2 epochs
    cfg = compose(demo_overrides + ["debug=fast", f"method={method}", f"phases={phases}", "logger=none",
                                    "detector.epochs=1", "backbone.epochs=2"])
    results = train(cfg)["adaptation"]
    metrics = read_metrics(tmp_path / "run")
    assert metrics["method"] == method and results["test"] == metrics["test"]
    assert math.isfinite(metrics["test"]["best"]) and 0.0 <= metrics["test"]["last"] <= metrics["test"]["best"] <= 1.0
    if method == "deft":
        assert metrics["num_train_samples"] < 200
    elif method == "gmm":  # demo: 2 epochs, 1 warm-up epoch -> one refit, for epoch 1
        assert [r["epoch"] for r in metrics["gmm_selection"]] == [1]
        assert metrics["num_train_samples"] == metrics["gmm_selection"][0]["num_clean"]
    else:
        assert metrics["num_train_samples"] == 200


TIMM_TAGS = {"resnet50": "resnet50.a1_in1k", "convnext_t": "convnext_tiny.fb_in1k",
             "vit_b16": "vit_base_patch16_224.augreg_in1k", "mae_vit_b": "vit_base_patch16_224.mae"}


@pytest.mark.slow
@pytest.mark.parametrize("backbone,method", [("resnet50", "gmm")])
def test_a_baseline_runs_on_a_timm_backbone(backbone, method, demo_overrides, tmp_path):
    """The pipeline with a timm model (its own normalisation, channels_last, a GMM loss pass each epoch).

    Every backbone's train/eval steps are in test_timm_backbones.py and the losses only see logits, so one
    pairing covers the rest; add pairs here when a method starts depending on the architecture.
    """
    # the demo overlay points backbone.model at the tiny CLIP: name the timm tag again, random weights, 32 px
    cfg = compose(demo_overrides + ["debug=fast", f"method={method}", "phases=[adapt]", "logger=none",
                                    f"backbone={backbone}", f"backbone.model.model_name={TIMM_TAGS[backbone]}",
                                    "backbone.model.pretrained=false",
                                    "backbone.model.image_size=32", "backbone.epochs=1", "method.gmm.warmup_epochs=0",
                                    "data.val_fraction=0.1"])
    metrics = train(cfg)["adaptation"]
    assert metrics["backbone"] == backbone
    assert [r["epoch"] for r in metrics["gmm_selection"]] == [0]  # no warm-up: selected before the first epoch
    assert all(math.isfinite(metrics[name]["last"]) for name in ("test", HELDOUT_SET))


@pytest.mark.slow
def test_gmm_under_two_processes(demo_overrides, tmp_path):
    """ddp_spawn: losses gathered by index across ranks, one broadcast selection, records back in the parent."""
    # backbone.epochs=2: the demo's two epochs (debug=fast, applied last, would leave one and no refit)
    cfg = compose(demo_overrides + ["debug=fast", "method=gmm", "phases=[adapt]", "logger=none", "trainer=ddp_cpu",
                                    "data.val_fraction=0.2", "backbone.epochs=2"])
    metrics = train(cfg)["adaptation"]
    (record,) = metrics["gmm_selection"]
    assert record["epoch"] == 1 and record["num_samples"] == 160  # every non-held-out sample scored once
    assert metrics["num_train_samples"] == record["num_clean"] and "val_selected" in metrics


# ----- GMM ---------------------------------------------------------------------------------------
def test_gmm_refit_separates_two_loss_clusters(tmp_path, monkeypatch):
    dm = tiny_datamodule(tmp_path, num_train=200, val_fraction=0.1)
    rng = np.random.default_rng(0)
    noisy = dm.given_labels != dm.true_labels
    losses = np.where(noisy, rng.normal(4.0, 0.3, dm.num_train), rng.normal(0.2, 0.05, dm.num_train))
    pool = np.flatnonzero(~dm.heldout_mask)
    monkeypatch.setattr(gmm_refit, "per_sample_losses", lambda trainer, module, datamodule, indices: (indices, losses[indices]))
    trainer = SimpleNamespace(strategy=SimpleNamespace(broadcast=lambda obj, src=0: obj), is_global_zero=True)

    callback = GMMRefit(dm, warmup_epochs=1, threshold=0.5)
    record = callback.refit(trainer, None, epoch=1)
    expected = ~noisy & ~dm.heldout_mask
    assert np.array_equal(dm.clean_mask, expected)
    assert np.array_equal(dm.train_indices, np.flatnonzero(expected))
    assert record["precision"] == 1.0 and record["recall"] == 1.0 and record["num_samples"] == len(pool)
    assert callback.state_dict()["mask_epoch"] == 1

    # loss_mask mode: the same selection lands in the DataModule; the loader keeps every sample and its
    # batches carry the selection (the refit goes through use_selection in both modes)
    dm.use_selection(None)
    dm.mask_mode = "loss_mask"
    GMMRefit(dm).refit(trainer, None, epoch=1)
    assert np.array_equal(dm.clean_mask, expected) and np.array_equal(dm.train_indices, pool)
    batches = list(dm.train_dataloader())
    index = torch.cat([batch[2] for batch in batches])
    assert torch.equal(torch.cat([batch[3] for batch in batches]), torch.from_numpy(expected)[index])


def test_gmm_refit_needs_a_loader_rebuilt_every_epoch(tmp_path):
    """The callback never changes trainer settings; a trainer that would keep the first loader is refused."""
    from deft_lightning.errors import ConfigError

    dm = tiny_datamodule(tmp_path)
    with pytest.raises(ConfigError, match="reload_dataloaders_every_n_epochs=1"):
        L.Trainer(max_epochs=2, callbacks=[GMMRefit(dm)], **QUIET).fit(adapter(dm), datamodule=dm)


def test_per_sample_losses_are_test_transform_cross_entropy(tmp_path):
    dm = tiny_datamodule(tmp_path)
    module = adapter(dm)
    module.trainer = L.Trainer(**QUIET)
    indices = np.array([3, 7, 11, 40])
    index, losses = per_sample_losses(module.trainer, module, dm, indices)
    images, labels, _ = next(iter(dm.inference_dataloader(indices)))
    assert np.array_equal(index, indices) and module.training  # train mode restored
    with torch.no_grad():
        expected = F.cross_entropy(module(images), labels, reduction="none").double().numpy()
    np.testing.assert_allclose(losses, expected, rtol=1e-5)


class RecordingRefit(GMMRefit):
    """Keeps every selection it hands out, keyed by the epoch it is meant for."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.produced: dict[int, list[int]] = {}

    def refit(self, trainer, pl_module, epoch):
        record = super().refit(trainer, pl_module, epoch)
        self.produced[epoch] = np.flatnonzero(self.mask.numpy()).tolist()
        return record


def test_gmm_training_visits_exactly_each_epochs_selection(tmp_path):
    dm = tiny_datamodule(tmp_path, val_fraction=0.2)
    refit, recorder = RecordingRefit(dm, warmup_epochs=1), IndexRecorder()
    L.Trainer(max_epochs=3, callbacks=[refit, recorder], reload_dataloaders_every_n_epochs=1,
              **QUIET).fit(adapter(dm), datamodule=dm)
    assert sorted(refit.produced) == [1, 2] and [r["epoch"] for r in refit.records] == [1, 2]
    pool = np.flatnonzero(~dm.heldout_mask).tolist()
    assert sorted(recorder.seen[0]) == pool  # warm-up: every non-held-out sample
    for epoch in (1, 2):  # later epochs: exactly the selection made for them, each sample once
        assert sorted(recorder.seen[epoch]) == refit.produced[epoch]
        assert set(refit.produced[epoch]) <= set(pool)


# ----- clean subset and loss mask ------------------------------------------------------------------
def test_subset_mode_visits_every_clean_index_once_per_epoch(tmp_path):
    dm = tiny_datamodule(tmp_path)
    clean = np.random.default_rng(1).random(dm.num_train) < 0.4
    dm.use_selection(selection_of(dm, clean))
    recorder = IndexRecorder()
    L.Trainer(max_epochs=2, callbacks=[recorder], limit_val_batches=0, **QUIET).fit(adapter(dm), datamodule=dm)
    for epoch in (0, 1):
        assert sorted(recorder.seen[epoch]) == np.flatnonzero(clean).tolist()


def selection_of(dm: NoisyLabelDataModule, clean: np.ndarray, source: str = "selection.csv", **columns):
    from deft_lightning.selection.clean_selection import CleanSelection

    index = np.arange(dm.num_train)
    selection = CleanSelection(index, dm.given_labels, dm.given_labels, clean.astype(float), clean, source=source)
    for name, value in columns.items():
        setattr(selection, name, value)
    return selection


def test_use_selection_owns_the_mask_in_both_modes(tmp_path):
    """subset: the loader visits the clean non-held-out indices; loss_mask: every non-held-out sample, each
    batch saying which are clean; None: every sample again, in phase 1's (image, label, index) batches."""
    from deft_lightning.errors import SelectionError

    dm = tiny_datamodule(tmp_path, val_fraction=0.2)
    clean = np.random.default_rng(2).random(dm.num_train) < 0.5
    selection = selection_of(dm, clean)
    pool = ~dm.heldout_mask

    assert np.array_equal(dm.use_selection(selection), clean)
    seen = sorted(int(i) for batch in dm.train_dataloader() for i in batch[2])
    assert seen == np.flatnonzero(clean & pool).tolist()

    dm.mask_mode = "loss_mask"
    dm.use_selection(selection)
    batches = list(dm.train_dataloader())
    index = torch.cat([batch[2] for batch in batches]).numpy()
    flags = torch.cat([batch[3] for batch in batches]).numpy()
    assert sorted(index.tolist()) == np.flatnonzero(pool).tolist()
    assert np.array_equal(flags, clean[index])

    dm.use_selection(None)
    assert dm.clean_mask is None and all(len(batch) == 3 for batch in dm.train_dataloader())

    # the online column, when the selection has one; a clear error naming the file and column when not
    online = ~clean
    dm.use_selection(selection_of(dm, clean, online_is_clean=online), source="online")
    assert np.array_equal(dm.clean_mask, online)
    with pytest.raises(SelectionError, match="selection.csv.*online_is_clean"):
        dm.use_selection(selection, source="online")
    with pytest.raises(SelectionError, match="no .*sample"):
        dm.use_selection(selection_of(dm, dm.heldout_mask.copy()))


@pytest.mark.parametrize("mask_mode", ["subset", "loss_mask"])
def test_phases_adapt_with_a_selection_file_goes_through_use_selection(mask_mode, demo_overrides, tmp_path,
                                                                       monkeypatch):
    """phases=[adapt] adapter.selection=PATH: the file reaches training through dm.use_selection, in both
    mask modes; loss_mask batches carry is_clean, subset batches hold only clean samples."""
    from deft_lightning.pipeline.data import build_datamodule

    path = tmp_path / "chosen.csv"
    cfg = compose(demo_overrides + ["debug=fast", "method=deft", "phases=[adapt]", "logger=none",
                                    f"adapter.selection={path}", f"adapter.mask_mode={mask_mode}"])
    dm = build_datamodule(cfg).load()
    clean = np.zeros(dm.num_train, dtype=bool)
    clean[::3] = True
    selection_of(dm, clean).write_csv(path)

    received, batches = [], []
    original_use, original_step = NoisyLabelDataModule.use_selection, AdapterModule.training_step

    def use_selection(self, selection, source="inference"):
        received.append(None if selection is None else selection.source)
        return original_use(self, selection, source)

    def training_step(self, batch, batch_idx):
        batches.append((batch[2].tolist(), None if len(batch) < 4 else batch[3].tolist()))
        return original_step(self, batch, batch_idx)

    monkeypatch.setattr(NoisyLabelDataModule, "use_selection", use_selection)
    monkeypatch.setattr(AdapterModule, "training_step", training_step)
    metrics = train(cfg)["adaptation"]
    assert received == [str(path)] and batches
    if mask_mode == "subset":
        assert metrics["num_train_samples"] == int(clean.sum())
        assert all(flags is None and clean[index].all() for index, flags in batches)
    else:
        assert metrics["num_train_samples"] == dm.num_train
        assert all(flags == clean[index].tolist() for index, flags in batches)
        assert any(not all(flags) for _, flags in batches)


def test_loss_mask_gives_zero_loss_on_a_batch_without_clean_samples(tmp_path):
    dm = tiny_datamodule(tmp_path)
    module = adapter(dm)
    images, labels, indices = next(iter(dm.inference_dataloader(np.arange(8))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a trainer
        loss = module.training_step((images, labels, indices, torch.zeros(len(indices), dtype=torch.bool)), 0)
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    assert all(torch.count_nonzero(p.grad) == 0 for p in module.model.parameters())


# ----- held-out split ------------------------------------------------------------------------------
def test_heldout_split_is_seeded_and_never_trained_on(tmp_path):
    dm = tiny_datamodule(tmp_path, val_fraction=0.25, val_seed=3)
    again = tiny_datamodule(tmp_path, val_fraction=0.25, val_seed=3)
    assert dm.heldout_mask.sum() == 15 and np.array_equal(dm.heldout_mask, again.heldout_mask)
    assert not np.array_equal(dm.heldout_mask, tiny_datamodule(tmp_path, val_fraction=0.25, val_seed=4).heldout_mask)
    assert dm.eval_set_names == ["test", HELDOUT_SET]
    heldout_loader = dm.val_dataloader()[-1]
    assert len(heldout_loader.dataset) == 15
    labels = torch.cat([batch[1] for batch in heldout_loader]).numpy()
    assert np.array_equal(labels, dm.given_labels[dm.heldout_indices])  # scored on the given labels
    # the full inference pass (phase 1's final pass) still covers every sample
    assert len(dm.inference_dataloader().dataset) == dm.num_train
    recorder = IndexRecorder()
    L.Trainer(max_epochs=1, callbacks=[recorder], **QUIET).fit(adapter(dm), datamodule=dm)
    assert sorted(recorder.seen[0]) == np.flatnonzero(~dm.heldout_mask).tolist()


def test_val_fraction_reports_the_heldout_selected_test_accuracy(demo_overrides, tmp_path):
    cfg = compose(demo_overrides + ["debug=fast", "method=ce", "phases=[adapt]", "logger=none",
                                    "data.val_fraction=0.2", "backbone.epochs=2"])
    train(cfg)
    metrics = read_metrics(tmp_path / "run")
    assert metrics["num_heldout"] == 40 and metrics["num_train_samples"] == 160
    chosen = metrics["val_selected"]
    assert 0 <= chosen["epoch"] < 2 and chosen["heldout_acc"] == pytest.approx(metrics[HELDOUT_SET]["best"])
    assert chosen["test"] <= metrics["test"]["best"] + 1e-9


# ----- several test sets ---------------------------------------------------------------------------
class ConstantClassifier(nn.Module):
    """Always predicts class 0: accuracy on a set is exactly its fraction of label 0."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(images.shape[0], NUM_CLASSES)
        logits[:, 0] = 1.0
        return logits


def test_two_test_sets_are_tracked_separately(tmp_path):
    dm = tiny_datamodule(tmp_path, two_test_sets=True)
    assert dm.eval_set_names == ["webvision_val", "imagenet_val"]
    module = adapter(dm)
    module.model = ConstantClassifier()
    L.Trainer(**QUIET).validate(module, datamodule=dm)
    tests = dm.files.test
    expected = {name: float(np.mean(split.clean_labels == 0)) for name, split in tests.items()}
    assert expected["webvision_val"] != expected["imagenet_val"]
    assert module.history[-1] == pytest.approx({"epoch": 0, **expected})


def test_webvision_like_run_reports_both_test_sets(demo_overrides, tmp_path):
    cfg = compose(demo_overrides + ["debug=fast", "method=ce", "phases=[adapt]", "logger=none",
                                    "backbone.epochs=1", "data.val_fraction=0.1"])
    dm = tiny_datamodule(tmp_path, two_test_sets=True, val_fraction=0.1)
    metrics = run_adaptation(cfg, dm, tmp_path / "run", None)
    assert metrics == read_metrics(tmp_path / "run")
    for name in ("webvision_val", "imagenet_val", HELDOUT_SET):
        assert 0.0 <= metrics[name]["last"] <= metrics[name]["best"] <= 1.0
    assert set(metrics["val_selected"]) == {"epoch", "heldout_acc", "webvision_val", "imagenet_val"}


# ----- CLIP head from text features ------------------------------------------------------------------
def test_text_initialised_head_predicts_like_zero_shot_clip():
    from deft_lightning.models.backbones import build_clip_classifier
    from deft_lightning.models.clip import create_clip, get_tokenizer

    names = ["red_apple", "green", "blue sky", "yellow", "purple"]
    torch.manual_seed(0)
    classifier = build_clip_classifier(len(names), names, model_name="deft-tiny-clip", pretrained=None,
                                       head_init="text").eval()
    torch.manual_seed(0)
    clip_model, inputs = create_clip("deft-tiny-clip", None, None, None)
    clip_model.eval()
    prompts = get_tokenizer("deft-tiny-clip")([f"a photo of a {n.replace('_', ' ')}." for n in names])
    images = torch.randn(16, 3, inputs.image_size, inputs.image_size)
    with torch.no_grad():
        image_features = clip_model.encode_image(images)
        cosine = F.normalize(image_features, dim=-1) @ F.normalize(clip_model.encode_text(prompts), dim=-1).t()
        logits = classifier(images)
    assert torch.equal(logits.argmax(dim=1), cosine.argmax(dim=1))
    # exactly the cosine scaled by the image feature's norm, so every ranking agrees, not just the top-1
    torch.testing.assert_close(logits, cosine * image_features.norm(dim=-1, keepdim=True), rtol=1e-4, atol=1e-5)


# ----- ELR under DDP ---------------------------------------------------------------------------------
def test_elr_targets_are_updated_from_every_rank(tmp_path):
    """Each rank applies all ranks' updates, so DDP's buffer broadcast from rank 0 loses nothing."""
    import socket

    import torch.multiprocessing as mp

    from deft_lightning.losses.robust import ELRLoss
    from fixtures.elr_ddp_worker import elr_batches, elr_rank

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(elr_rank, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert torch.equal(rank0, rank1)

    # one process seeing rank 0's batch and rank 1's new samples (sample 2 keeps rank 0's prediction)
    single = ELRLoss(num_samples=6, num_classes=3)
    _, logits = elr_batches()
    single.update_targets(torch.tensor([0, 1, 2, 3, 4]), single.clamped_probabilities(torch.cat([logits[0], logits[1][:2]])))
    torch.testing.assert_close(rank0, single.soft_targets)
    assert rank0[5].sum() == 0  # never seen


def test_loss_mask_mode_uses_the_configured_criterion_gce():
    """mask_mode=loss_mask with method=gce: GCE's (1 - p_y^q) / q averaged over the clean samples of the
    batch, by hand (issue 13: the mask mode used to replace the criterion by plain CE)."""
    from torch import nn

    from deft_lightning.losses.robust import GCELoss
    from deft_lightning.modules.adapter import AdapterModule

    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [-1.0, 3.0, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2, 1, 1])
    clean = torch.tensor([True, False, True, False])
    module = AdapterModule(nn.Identity(), 3, GCELoss(q=0.7), optimizer=torch.optim.SGD)
    module.log = lambda *args, **kwargs: None  # no trainer attached
    loss = module.training_step((logits, labels, torch.arange(4), clean), 0)  # the batch carries is_clean
    p = torch.softmax(logits, dim=1)[torch.arange(4), labels]
    expected = ((1 - p[0] ** 0.7) / 0.7 + (1 - p[2] ** 0.7) / 0.7) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    ce = torch.nn.functional.cross_entropy(logits[clean], labels[clean])
    assert abs(loss.item() - ce.item()) > 1e-3  # not the CE it used to compute
