"""The detector registry (issue 13): a detector registered from this file alone runs ``detect`` end to end.

Nothing in the project lists ``tiny_probe``: its class is below, its config node goes into Hydra's
ConfigStore under group ``detector``, and the report, the summary and ``aggregate``'s table show its
own label.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import REPO_ROOT, compose
from deft_lightning.errors import ConfigError
from deft_lightning.models.inputs import InputConfig
from deft_lightning.modules.per_sample import PerSampleDetector
from deft_lightning.modules.registry import _REGISTRY, detector_entry, register_detector, registered_detectors
from deft_lightning.selection.clean_selection import CleanSelection

KIND = "tiny_probe"
LABEL = "Tiny pixel probe"
IMAGE_SIZE = 8


def build_tiny_probe(cfg, class_names, noise=None):
    """The builder its config node names: (cfg, class_names, noise) -> (module, InputConfig)."""
    return TinyProbeDetector(len(class_names), lr=float(cfg.detector.lr)), InputConfig(image_size=IMAGE_SIZE)


@register_detector(KIND)
class TinyProbeDetector(PerSampleDetector):
    """A linear probe on raw pixels: clean iff it predicts the given label."""

    trains = True
    table_label = LABEL
    p_clean_meaning = "linear pixel probe's probability of the given label; is_clean = (prediction == given label)"

    def __init__(self, num_classes: int, lr: float) -> None:
        super().__init__(num_classes)
        self.head = nn.Linear(3 * IMAGE_SIZE * IMAGE_SIZE, num_classes)
        self.lr = lr

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(images.flatten(1))

    def training_step(self, batch, batch_idx: int):
        images, labels, indices = batch
        logits = self(images)
        return {"loss": F.cross_entropy(logits, labels), "index": indices,
                "selected": (logits.argmax(dim=1) == labels).detach()}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        images, labels, indices = batch
        probs = self(images).softmax(dim=1)
        predicted = probs.argmax(dim=1)
        return {"index": indices, "p_clean": probs.gather(1, labels.view(-1, 1)).squeeze(1),
                "is_clean": predicted == labels, "predicted_label": predicted, "class_probs": probs}


def store_config_node() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="detector", name=KIND, node={
        "name": KIND, "kind": KIND, "builder": {"_target_": f"{__name__}.build_tiny_probe", "_partial_": True},
        "weights": None, "epochs": 2, "lr": 0.05,
        "batch_size": "${dataset.batch_size}", "selection_source": "inference",
    })


def test_unknown_kind_is_a_config_error_listing_the_registered_ones():
    with pytest.raises(ConfigError) as error:
        detector_entry("no_such_detector")
    assert "no_such_detector" in str(error.value)
    for kind in ("deft", "label_match", "small_loss", KIND):
        assert kind in str(error.value)


def test_entries_describe_themselves():
    assert {"deft", "label_match", "small_loss"} <= set(registered_detectors())
    assert detector_entry("deft").trains and detector_entry("small_loss").trains
    assert not detector_entry("label_match").trains
    small_loss = detector_entry("small_loss")
    assert small_loss.rule({"selection": "rank"}).label == "Small-loss"
    gmm = small_loss.rule({"selection": "gmm"})
    assert gmm.name == "small_loss_gmm" and gmm.label == "Small-loss (GMM)" and "posterior" in gmm.p_clean


def test_no_project_file_lists_the_plugin():
    for path in (REPO_ROOT / "src").rglob("*"):
        if path.is_file() and path.suffix in (".py", ".yaml", ".md"):
            assert KIND not in path.read_text(encoding="utf-8"), path


def test_a_detector_registered_here_runs_detect_and_appears_in_the_report_and_the_table(tmp_path):
    from deft_lightning.aggregate import aggregate
    from deft_lightning.detect import detect

    store_config_node()
    cfg = compose(["experiment=demo", f"detector={KIND}", f"paths.output_dir={tmp_path / 'runs' / 'probe'}",
                   f"paths.cache_dir={tmp_path / 'cache'}", "callbacks.progress_bar=false"], config_name="detect")
    assert cfg.detector.kind == KIND
    summary = detect(cfg)["detection"]
    out = Path(tmp_path / "runs" / "probe" / "detection")
    assert summary["detector_kind"] == KIND and summary["detector_label"] == LABEL
    assert summary["p_clean"] == TinyProbeDetector.p_clean_meaning
    assert json.loads((out / "summary.json").read_text())["detector_label"] == LABEL
    assert LABEL in (out / "report.md").read_text()
    assert (out / "detector_weights.pt").is_file()  # it trains: the entry says so, so its weights are saved
    # its training_step returned (index, selected) rows: the last epoch's decisions are a column of the selection
    selection = CleanSelection.read_csv(out / "selection.csv")
    assert selection.online_is_clean is not None and set(np.unique(selection.online_is_clean)) <= {0, 1}
    assert summary["online_last_epoch"]["num_clean"] == int((selection.online_is_clean == 1).sum())

    entry = _REGISTRY.pop(KIND)  # aggregate reads the label the run recorded: the plugin need not be imported
    try:
        markdown = aggregate(tmp_path / "runs")["markdown"].read_text()
    finally:
        _REGISTRY[KIND] = entry
    assert f"| {LABEL} |" in markdown


def build_a_probe_anyway(cfg, class_names, noise=None):
    return TinyProbeDetector(len(class_names), lr=0.1), InputConfig(image_size=IMAGE_SIZE)


def test_a_builder_that_builds_another_class_than_the_registered_one_is_a_config_error():
    from deft_lightning.pipeline.detection import build_detector

    cfg = compose(["experiment=demo", "detector=label_match",
                   f"detector.builder._target_={__name__}.build_a_probe_anyway"])
    with pytest.raises(ConfigError, match="built a TinyProbeDetector, not the registered LabelMatchModule"):
        build_detector(cfg, ["a", "b"])
