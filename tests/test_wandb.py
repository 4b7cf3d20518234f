"""W&B: one run per job and phase, grouped by sweep, with config, metrics and images; none left open.

The end-to-end check (a 2-job offline sweep: one finished run per job and phase with the phase-1
metrics, the images and the phase-2 curves, and no W&B process left) is
``test_multirun.py::test_sweep_over_two_noise_ratios_with_wandb_offline_then_aggregate``: one sweep
serves both. Here: the pieces, in-process and offline (no account, no network).
"""

from types import SimpleNamespace

import numpy as np
import pytest

from cli_runs import read_offline_run
from conftest import compose
from deft_lightning.pipeline.common import finish_wandb, log_detection_images, wandb_run_options
from deft_lightning.selection.clean_selection import CleanSelection


def test_run_options_group_by_sweep_and_keep_the_id_for_resume(tmp_path):
    cfg = compose(["logger=wandb", f"paths.output_dir={tmp_path / 'run'}"])
    options = wandb_run_options(cfg, "detection", tmp_path / "run")
    assert options["job_type"] == "detection" and options["group"] == "run"  # no sweep: the run folder
    assert options["config"]["dataset"]["name"] == cfg.dataset.name  # the resolved config is attached
    assert (tmp_path / "run" / "logs" / "wandb_detection.id").read_text().strip() == options["id"]
    resumed = compose(["logger=wandb", f"paths.output_dir={tmp_path / 'run'}", "resume=true"])
    assert wandb_run_options(resumed, "detection", tmp_path / "run")["id"] == options["id"]
    assert wandb_run_options(cfg, "detection", tmp_path / "run")["id"] != options["id"]  # a fresh run: new id
    grouped = compose(["logger=wandb", "logger.group=mine", f"paths.output_dir={tmp_path / 'run'}"])
    assert "group" not in wandb_run_options(grouped, "adaptation", tmp_path / "run")  # the config's group wins


def test_detection_images_and_summary_reach_an_offline_run_which_is_then_finished(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    rng = np.random.default_rng(0)
    given, true = rng.integers(0, 5, 60), rng.integers(0, 5, 60)
    p_clean = rng.random(60)
    selection = CleanSelection(np.arange(60), given, given, p_clean, p_clean > 0.5, true)
    logger = WandbLogger(project="deft-test", save_dir=str(tmp_path), id="abc123def456", group="g", job_type="detection")
    trainer = SimpleNamespace(is_global_zero=True, loggers=[logger])
    try:
        log_detection_images(trainer, selection, tmp_path, {"inference": selection.metrics()})
    finally:
        finish_wandb()
    assert wandb.run is None
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*-abc123def456")
    info = read_offline_run(run_dir)
    assert info["exited"] and info["group"] == "g" and info["job_type"] == "detection"
    assert any(name.startswith("p_clean_histogram") for name in info["images"])


def test_histogram_without_true_labels():
    from deft_lightning.reporting.plots import p_clean_histogram

    figure = p_clean_histogram(np.linspace(0, 1, 11), np.zeros(11, int), None)
    assert len(figure.axes[0].patches) == 25
