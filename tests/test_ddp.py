"""Both phases under 2-process DDP on CPU (``trainer=ddp_cpu``: ddp_spawn + gloo), N not divisible by 2.

DistributedSampler pads ranks with repeated samples; none of them may leak into the selection, the
metrics or the evaluation. ddp_spawn returns only rank 0's results to this process, so everything is
checked through the files the run writes (the design routes results through rank 0's files anyway).
"""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from lightning.pytorch.callbacks import Callback

from conftest import compose
from deft_lightning.train import train

NUM_TRAIN, NUM_TEST = 201, 101  # odd: a padding sampler would repeat one sample on one rank


class TrainIndexRecorder(Callback):
    """Test-only: writes the dataset indices each rank's training loader yielded, per phase and epoch."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.seen: list = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(batch[2].detach().cpu().numpy())

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        phase = "adaptation" if type(pl_module).__name__ == "AdapterModule" else "detection"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        np.save(self.out_dir / f"{phase}-epoch{trainer.current_epoch}-rank{trainer.global_rank}.npy",
                np.concatenate(self.seen))


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_two_process_ddp_selection_is_one_row_per_sample_and_drives_phase_two(demo_overrides, tmp_path):
    recorded = tmp_path / "indices"
    cfg = compose(demo_overrides + [
        "trainer=ddp_cpu",
        "data.num_workers=0",  # workers of spawned processes are spawned too: slow to start on CPU
        f"dataset.reader.num_train={NUM_TRAIN}",
        f"dataset.reader.num_test={NUM_TEST}",
        "detector.epochs=2",
        "backbone.epochs=1",
        "+callbacks.extra.recorder._target_=test_ddp.TrainIndexRecorder",
        f"+callbacks.extra.recorder.out_dir={recorded}",
    ])
    train(cfg)
    run = tmp_path / "run"

    # one row per sample, each index exactly once, and the rule of the file holds row by row
    rows = read_rows(run / "detection" / "selection.csv")
    index = np.array([int(r["index"]) for r in rows])
    assert len(rows) == NUM_TRAIN and np.array_equal(index, np.arange(NUM_TRAIN))
    is_clean = np.array([int(r["is_clean"]) for r in rows], bool)
    assert np.array_equal(is_clean, np.array([float(r["p_clean"]) > 0.5 for r in rows]))
    assert np.load(run / "detection" / "pred_probs.npy").shape[0] == NUM_TRAIN

    # phase 1 trained on every sample: the ranks' shares (with the padding repeat) cover 0..N-1
    for epoch in range(2):
        shares = [np.load(recorded / f"detection-epoch{epoch}-rank{r}.npy") for r in (0, 1)]
        assert len(shares[0]) == len(shares[1]) == math.ceil(NUM_TRAIN / 2)
        assert set(np.concatenate(shares)) == set(range(NUM_TRAIN))
    online = np.load(run / "detection" / "online_mask.npy")
    assert online.shape == (NUM_TRAIN,) and set(np.unique(online)) <= {0, 1}  # gathered, de-duplicated, complete

    # phase 2: every rank trained on clean indices only, and together on all of them
    clean = set(np.flatnonzero(is_clean).tolist())
    shares = [np.load(recorded / f"adaptation-epoch0-rank{r}.npy") for r in (0, 1)]
    for share in shares:
        assert set(share.tolist()) <= clean
        assert len(share) == math.ceil(len(clean) / 2)
    assert set(np.concatenate(shares).tolist()) == clean
    metrics = json.loads((run / "adaptation" / "metrics.json").read_text())
    assert metrics["num_train_samples"] == len(clean)

    # detection metrics recomputed from the CSV equal the summary
    summary = json.loads((run / "detection" / "summary.json").read_text())
    truly_clean = np.array([r["given_label"] == r["true_label"] for r in rows])
    hits = (is_clean & truly_clean).sum()
    inference = summary["inference"]
    assert inference["num_samples"] == NUM_TRAIN and inference["num_clean"] == is_clean.sum()
    precision = hits / is_clean.sum() if is_clean.any() else 0.0
    recall = hits / truly_clean.sum()
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    assert inference["precision"] == pytest.approx(precision, abs=1e-5)
    assert inference["recall"] == pytest.approx(recall, abs=1e-5)
    assert inference["f1"] == pytest.approx(f1, abs=1e-5)

    # evaluation counted each of the 101 test images once: accuracies are multiples of 1/101
    accuracies = list(summary["detector_test_accuracy"].values()) + [metrics["test"]["best"], metrics["test"]["last"]]
    for accuracy in accuracies:
        assert accuracy * NUM_TEST == pytest.approx(round(accuracy * NUM_TEST), abs=1e-3), accuracy
