"""Where this process runs: the Hydra job around it and whether its launch may re-execute the command line."""

from __future__ import annotations

from omegaconf import DictConfig

from deft_lightning.errors import ConfigError


def check_launch(cfg: DictConfig) -> None:
    """Refuse a re-executing DDP launch (``ddp``, or ``auto`` on several devices) inside a local Hydra multirun.

    Lightning's ``ddp`` re-executes the command line once per extra device; under ``-m`` each copy would
    run the whole sweep again. The ``auto`` strategy (``trainer=auto``, the default) becomes ``ddp`` as
    soon as it sees more than one device. Spawned processes, or processes started by SLURM or torchrun,
    are fine.
    """
    strategy = str(cfg.trainer.get("strategy", "auto") or "auto")
    re_executes = strategy == "ddp" or strategy.startswith("ddp_find_unused_parameters")
    if strategy == "auto":
        re_executes = _device_count(cfg.trainer) > 1
    if not re_executes or not in_multirun():
        return
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if SLURMEnvironment.detect() or TorchElasticEnvironment.detect():
        return
    what = "trainer=ddp" if strategy != "auto" else f"trainer.strategy=auto on {_device_count(cfg.trainer)} devices (DDP)"
    raise ConfigError(
        f"{what} cannot run inside a local Hydra multirun (-m): each extra GPU process would rerun the sweep. "
        "Use trainer=ddp_spawn for sweeps on one machine, trainer.devices=1 for one GPU per job, or "
        "hydra/launcher=slurm (one job per allocation); see the README section 'Scale, sweeps, W&B, resume'."
    )


def _device_count(trainer_cfg: DictConfig) -> int:
    """How many devices Lightning would use for this trainer config (as its accelerator connector counts)."""
    devices = trainer_cfg.get("devices", "auto")
    accelerator = str(trainer_cfg.get("accelerator", "auto") or "auto")
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices >= 0:
        return devices
    if not isinstance(devices, (int, str)):  # a list of device ids
        return len(list(devices))
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    if accelerator in ("cpu",):
        return 1
    import torch

    return max(1, torch.cuda.device_count()) if accelerator in ("auto", "gpu", "cuda") else 1


def hydra_job() -> tuple[str | None, str | None]:
    """(job name, sweep dir) of the running Hydra job; (None, None) when composed without Hydra's main."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except Exception:  # not running under Hydra's main (tests compose the config directly)
        return None, None
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    job = hydra_cfg.job.override_dirname or hydra_cfg.job.name
    if multirun:
        job = f"{hydra_cfg.job.num}_{job}"
    return job, (str(hydra_cfg.sweep.dir) if multirun else None)


def in_multirun() -> bool:
    return hydra_job()[1] is not None
