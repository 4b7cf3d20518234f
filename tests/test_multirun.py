"""Hydra multirun sweeps as a user runs them (with W&B offline), the aggregate tables made from them, the recipes."""

import csv
import re
import subprocess
import sys
import time
import uuid

import pytest

from cli_runs import FAST_DEMO, clean_env, read_offline_run, run_cli, wandb_processes
from conftest import REPO_ROOT, compose
from deft_lightning.pipeline import launch as common

EXPERIMENTS = REPO_ROOT / "experiments"
PAPER_OVERLAYS = REPO_ROOT / "src" / "deft_lightning" / "conf" / "experiment" / "paper"


@pytest.mark.slow
def test_sweep_over_two_noise_ratios_with_wandb_offline_then_aggregate(tmp_path):
    """One 2-job sweep shows three things: named run dirs, one W&B run per job and phase, the tables.

    (A single sweep serves both the multirun and the W&B checks: a demo job costs ~20 s.)
    """
    marker = uuid.uuid4().hex  # finds any W&B process this sweep started and left behind
    sweep = tmp_path / "sweep"
    env = clean_env(WANDB_MODE="offline", WANDB_SILENT="true", DEFT_TEST_MARKER=marker,
                    WANDB_CONFIG_DIR=str(tmp_path / "wandb_config"), WANDB_CACHE_DIR=str(tmp_path / "wandb_cache"))
    run_cli("-m", *FAST_DEMO, "logger=wandb", "noise.ratio=0.2,0.4", f"hydra.sweep.dir={sweep}",
            f"paths.cache_dir={tmp_path / 'cache'}", env=env)

    # one directory per job, named by what the job changed
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0_noise.ratio=0.2", "1_noise.ratio=0.4"]
    for job, ratio in zip(jobs, ("0.2", "0.4")):
        assert f"ratio: {ratio}" in (sweep / job / "config.yaml").read_text()
        assert (sweep / job / "detection" / "summary.json").is_file()
        assert (sweep / job / "adaptation" / "metrics.json").is_file()

    # W&B: a separate, finished offline run per job and phase, grouped by sweep, config attached
    runs = {}
    for job in jobs:
        offline = sorted((sweep / job / "logs" / "wandb").glob("offline-run-*"))
        assert len(offline) == 2, offline  # detection and adaptation
        for run_dir in offline:
            info = read_offline_run(run_dir)
            runs[(job, info["job_type"])] = info
    assert set(runs) == {(job, phase) for job in jobs for phase in ("detection", "adaptation")}
    assert len({info["id"] for info in runs.values()}) == 4
    for (job, phase), info in runs.items():
        assert info["group"] == "sweep" and info["name"] == f"{job}-{phase}"
        assert info["exited"], (job, phase)
        assert {"dataset", "noise", "detector", "backbone", "method", "trainer", "seed"} <= info["config"]
        if phase == "detection":  # per-epoch online detection metrics against the true labels, and images
            assert {"train/online_precision", "train/online_recall", "train/online_f1",
                    "train/online_clean_fraction", "val/test_acc"} <= info["history"]
            assert any(name.startswith("p_clean_histogram") for name in info["images"]), info["images"]
            assert any(name.startswith("suspects") for name in info["images"]), info["images"]
        else:  # phase-2 accuracy curves
            assert {"val/test_acc", "val/test_acc_best", "train/loss"} <= info["history"]
    deadline = time.monotonic() + 20  # W&B's service process may need a moment after its client exits
    while wandb_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not wandb_processes(marker)

    # the tables: rows = method, columns = noise setting
    result = subprocess.run([sys.executable, "-m", "deft_lightning.aggregate", str(sweep)], env=clean_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    results = sweep / "results"
    markdown = (results / "results.md").read_text()
    assert markdown in result.stdout
    assert "| method (P / R / F1, %) | sym 0.2 | sym 0.4 |" in markdown
    assert "| method (best / last, %) | sym 0.2 | sym 0.4 |" in markdown
    assert re.search(r"\| DEFT \| [\d.]+ / [\d.]+ / [\d.]+ \| [\d.]+ / [\d.]+ / [\d.]+ \|", markdown)
    assert re.search(r"\| DEFT \| [\d.]+ / [\d.]+ \| [\d.]+ / [\d.]+ \|", markdown)
    with open(results / "accuracy.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["method"] == "DEFT" and {"sym 0.2 best", "sym 0.2 last", "sym 0.4 best", "sym 0.4 last"} <= set(row)
    with open(results / "detection.csv", newline="") as handle:
        assert {"sym 0.2 P", "sym 0.4 F1"} <= set(next(csv.DictReader(handle)))

    import matplotlib.image

    png = matplotlib.image.imread(results / "noise_curves.png")
    assert png.ndim == 3 and png.shape[0] > 100 and png.shape[1] > 100


def test_local_ddp_inside_a_multirun_is_refused_with_the_alternatives(monkeypatch):
    cfg = compose(["trainer=ddp", "paths.output_dir=/tmp/unused"])
    monkeypatch.setattr(common, "in_multirun", lambda: True)
    with pytest.raises(ValueError, match="trainer=ddp_spawn"):
        common.check_launch(cfg)
    monkeypatch.setattr(common, "in_multirun", lambda: False)
    common.check_launch(cfg)  # a single run may use the script launcher
    common.check_launch(compose(["trainer=ddp_spawn", "paths.output_dir=/tmp/unused"]))


def test_job_folder_names_leave_out_paths_and_launch_details():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="deft_lightning.conf", version_base="1.3"):
        cfg = hydra_compose(config_name="train", return_hydra_config=True)
    excluded = set(cfg.hydra.job.config.override_dirname.exclude_keys)
    assert {"dataset.root", "paths.cache_dir", "resume", "trainer", "logger", "data.num_workers"} <= excluded
    assert OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "${hydra.job.num}_${hydra.job.override_dirname}"


@pytest.mark.parametrize("overlay", sorted(p.stem for p in PAPER_OVERLAYS.glob("*.yaml")))
def test_paper_overlays_compose_with_the_papers_defaults(overlay):
    cfg = compose([f"experiment=paper/{overlay}", "paths.output_dir=/tmp/unused"])
    assert cfg.dataset.name == overlay
    assert cfg.trainer.accelerator == "gpu"
    assert cfg.detector.clip.model_name == "ViT-B-16" and cfg.detector.epochs == 10 and cfg.backbone.epochs == 10
    assert cfg.noise.mode == ("real" if cfg.dataset.real_noise_variant else "sym")


def test_recipes_only_name_existing_overlays_and_options():
    scripts = sorted(EXPERIMENTS.glob("*.sh"))
    assert {p.name for p in scripts} >= {"table1_table2.sh", "table3_real_noise.sh", "backbones_clothing1m.sh"}
    text = "\n".join(p.read_text() for p in scripts)
    datasets = {name for group in re.findall(r"DATASETS=\(([a-z0-9_ ]+)\)", text) for name in group.split()}
    assert len(datasets) == 7
    for name in datasets | set(re.findall(r"experiment=paper/([a-z0-9_]+)", text)):
        assert (PAPER_OVERLAYS / f"{name}.yaml").is_file(), name
    conf = REPO_ROOT / "src" / "deft_lightning" / "conf"
    for group, values in (("method", "ce,gce,sce,elr,gmm"), ("detector", "label_match,small_loss"),
                          ("backbone", "resnet50,vit_b16,convnext_t,mae_vit_b")):
        for value in values.split(","):
            assert (conf / group / f"{value}.yaml").is_file(), (group, value)
    dry = subprocess.run(["bash", str(EXPERIMENTS / "table3_real_noise.sh"), "clothing1m"], capture_output=True,
                         text=True, env={**clean_env(), "DRY_RUN": "1", "DEFT_PAPER_DIR": "/tmp/p"}, timeout=60)
    assert dry.returncode == 0, dry.stderr
    commands = [line[2:] for line in dry.stdout.splitlines() if line.startswith("+ ")]
    assert commands[0].endswith("-m deft_lightning.train -m experiment=paper/clothing1m resume=true "
                                "hydra.sweep.dir=/tmp/p/table3/clothing1m/deft")
    assert "deft_lightning.aggregate /tmp/p/table3" in commands[-1]


@pytest.mark.slow
def test_a_failed_job_does_not_stop_the_sweep_which_lists_it_and_ends_non_zero(tmp_path):
    sweep = tmp_path / "sweep"
    quick = [*FAST_DEMO, "phases=[detect]", "detector=label_match", f"paths.cache_dir={tmp_path / 'cache'}"]
    result = subprocess.run([sys.executable, "-m", "deft_lightning.train", "-m", *quick, "detector.kind=bogus,label_match",
                             f"hydra.sweep.dir={sweep}"], env=clean_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-3000:]  # every failure was a user error
    assert "1 job(s) of the sweep" in result.stderr
    assert re.search(r"#0 .*detector\.kind=bogus: ConfigError: detector\.kind='bogus' is not a registered detector", result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    # the second job ran to the end; the failed one left no run directory behind
    (finished,) = sweep.glob("1_detector.kind=label_match*")
    assert (finished / "detection" / "summary.json").is_file()
    assert not list(sweep.glob("0_*"))
    tables = subprocess.run([sys.executable, "-m", "deft_lightning.aggregate", str(sweep)], env=clean_env(),
                            capture_output=True, text=True, timeout=300)
    assert tables.returncode == 0 and "1 finished run(s)." in tables.stdout, tables.stderr

    # fail-fast: the sweep stops at the first failed job
    fast = tmp_path / "fast"
    result = subprocess.run([sys.executable, "-m", "deft_lightning.train", "-m", *quick, "detector.kind=bogus,label_match",
                             "hydra.callbacks.job_failures.fail_fast=true", f"hydra.sweep.dir={fast}"],
                            env=clean_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "stopped at the first failed job" in result.stderr
    assert not list(fast.glob("1_*"))


def test_auto_strategy_on_several_devices_inside_a_multirun_is_refused(monkeypatch):
    cfg = compose(["trainer=auto", "trainer.accelerator=cpu", "trainer.devices=2", "paths.output_dir=/tmp/unused"])
    monkeypatch.setattr(common, "in_multirun", lambda: True)
    with pytest.raises(ValueError, match="trainer.devices=1"):
        common.check_launch(cfg)
    common.check_launch(compose(["trainer=auto", "trainer.accelerator=cpu", "trainer.devices=1",
                                 "paths.output_dir=/tmp/unused"]))
    common.check_launch(compose(["trainer=auto", "trainer.accelerator=cpu", "paths.output_dir=/tmp/unused"]))
