"""Defaults that fit the data (issue 14 item 1): each dataset its natural noise, the trainer the hardware."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose

CONF = Path(__file__).resolve().parents[1] / "src" / "deft_lightning" / "conf"
UNUSED = "paths.output_dir=/tmp/unused"

REAL = ("cifar100n", "clothing1m", "webvision")
USER = ("imagefolder", "csv")


def natural_noise(dataset: str) -> tuple[str, float]:
    if dataset in REAL:
        return "real", 0.0
    if dataset in USER:
        return "none", 0.0
    return "sym", 0.4  # the paper's synthetic setting


DATASETS = sorted(p.stem for p in (CONF / "dataset").glob("*.yaml"))


def noise_of(cfg) -> tuple[str, float]:
    return str(cfg.noise.mode), float(cfg.noise.ratio)


def test_every_dataset_config_is_classified():
    assert set(REAL) | set(USER) < set(DATASETS)
    assert {"cifar10", "cifar100", "tiny_imagenet", "stanford_cars", "cub200", "synthetic", "toy"} <= set(DATASETS)


@pytest.mark.parametrize("dataset", DATASETS)
def test_each_dataset_chooses_its_natural_noise(dataset):
    assert noise_of(compose([f"dataset={dataset}", UNUSED])) == natural_noise(dataset)


@pytest.mark.parametrize("dataset", DATASETS)
def test_detect_keeps_the_labels_as_given_unless_they_are_real_noise(dataset):
    expected = ("real", 0.0) if dataset in REAL else ("none", 0.0)
    assert noise_of(compose([f"dataset={dataset}", UNUSED], "detect")) == expected


@pytest.mark.parametrize("config_name", ["train", "detect"])
@pytest.mark.parametrize("dataset,noise", [("clothing1m", "sym"), ("imagefolder", "idn"), ("cifar100", "asym"),
                                           ("cifar100n", "none"), ("webvision", "sym")])
def test_explicit_noise_always_wins(config_name, dataset, noise):
    cfg = compose([f"dataset={dataset}", f"noise={noise}", UNUSED], config_name)
    assert cfg.noise.mode == noise
    cfg = compose([f"dataset={dataset}", f"noise={noise}", "noise.ratio=0.3", UNUSED], config_name)
    assert noise_of(cfg) == (noise, 0.3)


def test_the_issues_examples():
    assert compose(["dataset=clothing1m", "backbone=convnext_t", UNUSED]).noise.mode == "real"
    assert compose(["dataset=imagefolder", UNUSED]).noise.mode == "none"
    assert noise_of(compose(["dataset=clothing1m", "noise=sym", UNUSED])) == ("sym", 0.4)
    assert compose(["dataset=imagefolder", UNUSED], "detect").noise.mode == "none"
    assert compose(["dataset=cifar100n", UNUSED], "detect").noise.mode == "real"


def test_cfg_job_of_the_headline_command_shows_real_noise_and_the_auto_trainer():
    result = subprocess.run(
        [sys.executable, "-m", "deft_lightning.train", "--cfg", "job", "dataset=clothing1m", "backbone=convnext_t"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    cfg = OmegaConf.create(result.stdout)
    assert cfg.noise.mode == "real" and cfg.dataset.name == "clothing1m"
    assert cfg.trainer.accelerator == "auto" and cfg.trainer.devices == "auto"


# what each experiment composed before the dataset defaults existed: (dataset, noise mode, ratio, accelerator)
EXPERIMENTS = {
    "demo": ("synthetic", "sym", 0.4, "cpu"),
    "toy": ("toy", "sym", 0.4, "cpu"),
    "toy_v2": ("toy_v2", "sym", 0.4, "cpu"),
    "paper/cifar100": ("cifar100", "sym", 0.4, "gpu"),
    "paper/cub200": ("cub200", "sym", 0.4, "gpu"),
    "paper/stanford_cars": ("stanford_cars", "sym", 0.4, "gpu"),
    "paper/tiny_imagenet": ("tiny_imagenet", "sym", 0.4, "gpu"),
    "paper/cifar100n": ("cifar100n", "real", 0.0, "gpu"),
    "paper/clothing1m": ("clothing1m", "real", 0.0, "gpu"),
    "paper/webvision": ("webvision", "real", 0.0, "gpu"),
}


def test_the_experiment_table_lists_every_experiment():
    found = {str(p.relative_to(CONF / "experiment").with_suffix("")) for p in (CONF / "experiment").rglob("*.yaml")}
    assert found == set(EXPERIMENTS)


@pytest.mark.parametrize("config_name", ["train", "detect"])
@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_experiments_compose_what_they_composed_before(experiment, config_name):
    cfg = compose([f"experiment={experiment}", UNUSED], config_name)
    dataset, mode, ratio, accelerator = EXPERIMENTS[experiment]
    assert (cfg.dataset.name, *noise_of(cfg), cfg.trainer.accelerator) == (dataset, mode, ratio, accelerator)


def test_an_experiments_noise_wins_over_the_datasets():
    """experiment=demo chooses sym 0.4; pointing it at an image folder keeps that noise (the experiment says so)."""
    assert noise_of(compose(["experiment=demo", "dataset=imagefolder", UNUSED], "detect")) == ("sym", 0.4)
    assert compose(["experiment=demo", "dataset=imagefolder", "noise=none", UNUSED], "detect").noise.mode == "none"


def test_the_benchmark_noise_choice_adds_no_keys():
    cfg = compose([UNUSED])
    assert "benchmark_noise" not in cfg
    assert set(compose([UNUSED], "detect")) == set(cfg)  # train.yaml holds the report block too (export off)


# ----- the auto trainer ---------------------------------------------------------------------------
def test_auto_trainer_is_the_default_and_the_others_stay_selectable():
    cfg = compose([UNUSED])
    assert (cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.strategy) == ("auto", "auto", "auto")
    for name, accelerator in (("cpu", "cpu"), ("gpu", "gpu"), ("ddp", "gpu"), ("ddp_spawn", "gpu"), ("ddp_cpu", "cpu")):
        assert compose([f"trainer={name}", UNUSED]).trainer.accelerator == accelerator


def test_precision_resolver_without_cuda(monkeypatch):
    from deft_lightning.resolvers import auto_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert [auto_precision(a) for a in ("auto", "gpu", "cuda", "cpu", "mps")] == ["32-true"] * 5


def test_precision_resolver_with_cuda(monkeypatch):
    from deft_lightning.resolvers import auto_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert [auto_precision(a) for a in ("auto", "gpu", "cuda")] == ["bf16-mixed"] * 3
    assert auto_precision("cpu") == "32-true"  # trainer=auto trainer.accelerator=cpu on a GPU node
    cfg = compose([UNUSED])
    assert OmegaConf.to_container(cfg.trainer, resolve=True)["precision"] == "bf16-mixed"
    cfg = compose(["trainer.accelerator=cpu", UNUSED])
    assert OmegaConf.to_container(cfg.trainer, resolve=True)["precision"] == "32-true"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU branch on a machine without CUDA")
def test_auto_trainer_on_this_cpu_machine(tmp_path):
    from hydra.utils import instantiate
    from lightning.pytorch.accelerators import CPUAccelerator
    from lightning.pytorch.strategies import SingleDeviceStrategy

    cfg = compose([UNUSED])
    resolved = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert resolved["precision"] == "32-true"
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False, default_root_dir=str(tmp_path))
    assert isinstance(trainer.accelerator, CPUAccelerator) and trainer.precision == "32-true"
    assert isinstance(trainer.strategy, SingleDeviceStrategy) and trainer.num_devices == 1


def test_lightnings_auto_uses_every_gpu_through_ddp(monkeypatch):
    """With several GPUs (simulated: no CUDA call is made), the auto trainer's settings give DDP over all
    of them, started by re-running the command line, in bf16-mixed: what README and check_launch assume."""
    from lightning.pytorch.accelerators import CUDAAccelerator
    from lightning.pytorch.plugins.precision import MixedPrecision
    from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
    from lightning.pytorch.trainer.connectors.accelerator_connector import _AcceleratorConnector

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    settings = OmegaConf.to_container(compose([UNUSED]).trainer, resolve=True)
    chosen = {key: settings[key] for key in ("accelerator", "devices", "strategy", "precision")}
    assert chosen["precision"] == "bf16-mixed"
    connector = _AcceleratorConnector(**chosen)
    assert isinstance(connector.accelerator, CUDAAccelerator) and len(connector._parallel_devices) == 4
    assert type(connector.strategy) is DDPStrategy
    assert isinstance(connector.strategy._launcher, _SubprocessScriptLauncher)  # re-runs the command line
    assert isinstance(connector.precision_plugin, MixedPrecision)
    assert connector.precision_plugin.precision == "bf16-mixed"
    one = _AcceleratorConnector(**{**chosen, "devices": 1})  # trainer.devices=1: one GPU of several
    assert isinstance(one.strategy, SingleDeviceStrategy)
