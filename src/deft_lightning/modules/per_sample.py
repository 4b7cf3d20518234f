"""What the phase-1 detectors share with the pipeline: an eval on the test sets and per-sample predictions.

Every detector's ``predict_step`` returns rows ``index, p_clean, is_clean, predicted_label,
class_probs`` (plus anything its rule needs); Lightning hands them to the ``SelectionWriter``
(a ``BasePredictionWriter``), which gathers them across ranks and, when the rule needs the whole
training set (small-loss ranking, GMM), calls ``finalize_selection`` on the gathered rows before
writing. The module keeps no prediction rows itself.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy


class PerSampleDetector(L.LightningModule):
    """Base of the baseline detectors: test accuracy of ``forward``'s logits and the prediction buffer."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.test_accuracy = nn.ModuleList()
        self.eval_set_names: list[str] = ["test"]
        # report.features: the inference pass also returns the L2-normalised image features ("features")
        self.return_features = False

    def set_eval_sets(self, names: list[str]) -> None:
        self.eval_set_names = list(names)
        self.test_accuracy = nn.ModuleList(
            MulticlassAccuracy(num_classes=self.num_classes, average="micro") for _ in names
        )

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        images, labels = batch[0], batch[1]
        metric = self.test_accuracy[dataloader_idx]
        metric.update(self(images).argmax(dim=1), labels)
        name = self.eval_set_names[dataloader_idx]
        self.log(f"val/{name}_acc", metric, on_epoch=True, add_dataloader_idx=False, batch_size=images.shape[0])

    def finalize_selection(self, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Decisions that need every sample's row (gathered, sorted by index); per-sample rules keep them."""
        return rows

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        names = {name for name, p in self.named_parameters() if p.requires_grad}
        return {name: value.detach().cpu() for name, value in self.state_dict().items() if name in names}
