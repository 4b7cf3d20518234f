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
from deft_lightning.pipeline.loggers import finish_wandb, log_detection_images, wandb_run_options
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


def test_run_tags_say_what_ran(tmp_path):
    cfg = compose(["logger=wandb", "noise=sym", "noise.ratio=0.4", "logger.tags=[mine]",
                   f"paths.output_dir={tmp_path / 'run'}"])
    tags = wandb_run_options(cfg, "detection", tmp_path / "run")["tags"]
    assert tags[:3] == [f"dataset:{cfg.dataset.name}", "noise:sym-0.4", f"detector:{cfg.detector.name}"]
    assert f"method:{cfg.method.name}" in tags and any(t.startswith("backbone:") for t in tags)
    assert tags[-1] == "mine" and all(len(t) <= 64 for t in tags)  # the config's own tags are kept, last
    detect_only = compose(["logger=wandb", "noise=none", "phases=[detect]", f"paths.output_dir={tmp_path / 'r2'}"],
                          config_name="detect")
    tags = wandb_run_options(detect_only, "detection", tmp_path / "r2")["tags"]
    assert "noise:none" in tags and not any(t.startswith(("backbone:", "method:")) for t in tags)


def test_logger_wandb_without_the_package_is_a_config_error_naming_the_extra(tmp_path, monkeypatch):
    import sys

    from deft_lightning.errors import ConfigError, UserError
    from deft_lightning.pipeline.loggers import build_logger

    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now raises ImportError
    cfg = compose(["logger=wandb", f"paths.output_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError) as caught:
        build_logger(cfg, "detection", tmp_path / "run")
    assert isinstance(caught.value, UserError)
    message = str(caught.value)
    assert 'deft_lightning[wandb]' in message and "logger=csv" in message
    assert build_logger(compose(["logger=csv", f"paths.output_dir={tmp_path / 'run'}"]), "detection") is not False


def test_wandb_logger_does_not_pass_the_deprecated_anonymous_setting(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from deft_lightning.pipeline.loggers import build_logger

    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = build_logger(compose(["logger=wandb", f"paths.output_dir={tmp_path / 'run'}"]), "detection",
                          tmp_path / "run")
    assert "anonymous" not in logger._wandb_init and logger._wandb_init["tags"]


def test_selection_table_rows_are_the_most_likely_issues_first():
    from deft_lightning.pipeline.loggers import selection_table_rows

    p_clean = np.array([0.9, 0.1, 0.5, 0.3])
    selection = CleanSelection(np.arange(4), np.zeros(4, int), np.zeros(4, int), p_clean, p_clean > 0.4)
    columns, rows = selection_table_rows(selection, limit=3)
    assert columns[:3] == ["index", "sample_id", "given_label"]
    assert [row[columns.index("index")] for row in rows] == [1, 3, 2]  # no label_quality: lowest p_clean first
    ranked = CleanSelection(np.arange(4), np.zeros(4, int), np.zeros(4, int), p_clean, p_clean > 0.4,
                            label_quality=np.array([0.2, 0.4, 0.9, 0.1]))
    columns, rows = selection_table_rows(ranked, limit=2)
    assert [row[columns.index("index")] for row in rows] == [3, 0] and "rank" in columns


def test_selection_table_and_artifacts_reach_an_offline_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    from cli_runs import wandb_records

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    rng = np.random.default_rng(1)
    given = rng.integers(0, 3, 1200)
    p_clean = rng.random(1200)
    selection = CleanSelection(np.arange(1200), given, given, p_clean, p_clean > 0.5, given)
    out = tmp_path / "detection"
    out.mkdir()
    selection.write_csv(out / "selection.csv")
    (out / "detector_weights.pt").write_bytes(b"weights")
    logger = WandbLogger(project="deft-test", save_dir=str(tmp_path), id="tab1e0000001", job_type="detection",
                         tags=["dataset:x"])
    trainer = SimpleNamespace(is_global_zero=True, loggers=[logger])
    try:
        log_detection_images(trainer, selection, out, {"inference": selection.metrics()})
    finally:
        finish_wandb()
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*-tab1e0000001")
    info = read_offline_run(run_dir)
    assert info["exited"] and any(key.startswith("detection/selection/") for key in info["history"])
    records = list(wandb_records(next(run_dir.glob("run-*.wandb"))))
    artifacts = {r.artifact.type: r.artifact for r in records if r.WhichOneof("record_type") == "artifact"}
    assert {"selection", "detector"} <= set(artifacts)  # (W&B adds a run_table artifact for the Table)
    assert artifacts["selection"].name == "selection-tab1e0000001"
    paths = {entry.path for entry in artifacts["selection"].manifest.contents}
    assert "selection.csv" in paths and {e.path for e in artifacts["detector"].manifest.contents} == {"detector_weights.pt"}
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"][:1]
    assert list(run.tags) == ["dataset:x"]
    (table,) = run_dir.glob("files/media/table/detection/selection_*.table.json")
    import json

    data = json.loads(table.read_text())
    assert len(data["data"]) == 1000  # capped: the 1000 most likely label issues
    assert data["columns"][:2] == ["index", "sample_id"]
