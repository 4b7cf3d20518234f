"""Every config file composes and its components instantiate: catches typos without training."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from conftest import compose

CONF = Path(__file__).resolve().parents[1] / "src" / "deft_lightning" / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("dataset", options("dataset"))
def test_dataset_configs_compose_with_a_reader(dataset):
    cfg = compose([f"dataset={dataset}", "paths.output_dir=/tmp/unused"])
    reader = instantiate(cfg.dataset.reader)
    assert callable(reader)
    assert {"name", "root", "batch_size", "real_noise_variant"} <= set(cfg.dataset)


@pytest.mark.parametrize("noise", options("noise"))
def test_noise_configs_compose(noise):
    cfg = compose([f"noise={noise}", "paths.output_dir=/tmp/unused"])
    assert cfg.noise.mode in {"none", "sym", "asym", "idn", "real"}
    assert 0.0 <= float(cfg.noise.ratio) < 1.0


@pytest.mark.parametrize("peft", options("peft"))
def test_peft_configs_build_on_the_tiny_clip(peft):
    from deft_lightning.models.clip import create_clip

    cfg = compose([f"peft={peft}", "paths.output_dir=/tmp/unused"])
    model, _ = create_clip("deft-tiny-clip", pretrained=None)
    module = instantiate(cfg.peft.module)(visual=model.visual)
    assert module(torch.randn(2, 3, 32, 32)).shape == (2, 64)


@pytest.mark.parametrize("method", options("method"))
def test_method_configs_build_their_loss(method):
    cfg = compose([f"method={method}", "paths.output_dir=/tmp/unused"])
    loss = instantiate(cfg.method.loss)(num_samples=4, num_classes=3)
    value = loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.arange(4))
    assert torch.isfinite(value)


@pytest.mark.parametrize("backbone", options("backbone"))
def test_backbone_configs_have_optimiser_and_schedule(backbone):
    cfg = compose([f"backbone={backbone}", "paths.output_dir=/tmp/unused"])
    optimizer = instantiate(cfg.backbone.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    assert optimizer.defaults["lr"] > 0
    assert int(cfg.backbone.epochs) > 0 and "model" in cfg.backbone


@pytest.mark.parametrize("trainer", options("trainer"))
def test_trainer_configs_compose(trainer):
    cfg = compose([f"trainer={trainer}", "paths.output_dir=/tmp/unused"])
    assert cfg.trainer._target_ == "lightning.Trainer"


@pytest.mark.parametrize("experiment", [p.stem for p in (CONF / "experiment").glob("*.yaml")])
def test_experiments_compose(experiment):
    cfg = compose([f"experiment={experiment}", "paths.output_dir=/tmp/unused"])
    assert cfg.phases


def test_detector_optimiser_and_schedule_match_the_paper():
    cfg = compose(["paths.output_dir=/tmp/unused"])
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = instantiate(cfg.detector.optimizer)(params)
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["lr"] == 0.03 and optimizer.defaults["momentum"] == 0.9
    assert optimizer.defaults["weight_decay"] == 5e-4
    scheduler = instantiate(cfg.detector.scheduler)(optimizer)
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and scheduler.T_max == 10
    assert cfg.detector.prompt.n_ctx == 16 and cfg.peft.module.num_tokens == 20


@pytest.mark.parametrize("root", ["train", "inspect_data"])
def test_noise_is_listed_before_dataset_in_the_root_configs(root):
    """Dataset configs choose their natural noise by `override /noise`; Hydra applies such an override
    only to a group it visits later, i.e. one listed *earlier* in the root defaults list."""
    import yaml

    entries = yaml.safe_load((CONF / f"{root}.yaml").read_text())["defaults"]
    defaults = [next(iter(d)) if isinstance(d, dict) else d for d in entries]
    assert defaults.index("noise") < defaults.index("dataset")


@pytest.mark.parametrize("dataset", ["imagefolder", "clothing1m", "cifar100"])
def test_inspect_data_composes_with_the_datasets_natural_noise(dataset):
    cfg = compose([f"dataset={dataset}"], "inspect_data")
    assert cfg.noise.mode == {"imagefolder": "none", "clothing1m": "real", "cifar100": "none"}[dataset]


def test_debug_is_applied_after_the_experiment():
    """``experiment=demo debug=fast``: the debug overlay wins (one epoch per phase, two batches)."""
    cfg = compose(["experiment=demo", "debug=fast"])
    assert cfg.detector.epochs == 1 and cfg.backbone.epochs == 1
    assert cfg.trainer.limit_train_batches == 2 and cfg.trainer.limit_val_batches == 2
    assert compose(["experiment=demo"]).detector.epochs == 3  # the demo's own setting without debug
