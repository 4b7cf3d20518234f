"""OmegaConf resolvers the shipped configs use; importing this module registers them (idempotent).

Kept apart from the pipeline so that composing a config (``--cfg job``, tests, drivers) needs only
omegaconf, not Lightning.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def resume_run_dir(resume: Any, default: str) -> str:
    """Hydra's run directory: ``resume=PATH`` reuses PATH; ``true``/``false`` keep the default.

    Registered as the ``deft_run_dir`` resolver, used by ``conf/hydra/default.yaml``.
    """
    if isinstance(resume, str) and resume.strip().lower() not in ("", "true", "false", "none", "null"):
        return resume
    return default


NOISE_MODES_WITHOUT_RATIO = ("none", "real")
_STAMP: str | None = None


def run_name(dataset: Any, mode: Any, ratio: Any, *models: Any) -> str:
    """The run folder's name: dataset, noise (with its ratio only for modes that have one), model(s).

    ``run_name("cifar100", "sym", 0.4, "ViT-B-16")`` is ``cifar100-sym0.4-ViT-B-16``;
    ``run_name("clothing1m", "real", 0.0, "convnext_tiny.fb_in1k")`` is ``clothing1m-real-convnext_tiny.fb_in1k``.
    Registered as ``deft_run_name``; the models are what was loaded (a backbone's or a CLIP's model name).
    """
    noise = str(mode) if str(mode) in NOISE_MODES_WITHOUT_RATIO or ratio is None else f"{mode}{ratio}"
    parts = [str(dataset), noise] + [str(m) for m in models if m not in (None, "")]
    return "-".join(part.replace("/", "_").replace(" ", "_") for part in parts)


def run_stamp() -> str:
    """This process's run-folder leaf: start time plus a short unique token, e.g. ``2026-12-01_23-10-07_3fa9c1``.

    The same value for every call in one process (the run and sweep directories agree), different for
    two processes started in the same second. Ranks of one multi-process launch must share it: Lightning's
    ``ddp`` passes the resolved ``hydra.run.dir`` to the processes it starts; for a multi-task SLURM step
    or a torchrun launch the job's own id replaces time and token (every rank computes the same one).
    Registered as ``deft_run_stamp``.
    """
    global _STAMP
    if _STAMP is None:
        import os
        import secrets
        from datetime import datetime

        env = os.environ
        if env.get("SLURM_JOB_ID") and int(env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or 1) > 1 \
                and env.get("SLURM_PROCID") is not None:
            _STAMP = f"slurm{env['SLURM_JOB_ID']}.{env.get('SLURM_STEP_ID', '0')}"
        elif env.get("TORCHELASTIC_RUN_ID", "none") not in ("", "none"):
            _STAMP = f"torchrun-{env['TORCHELASTIC_RUN_ID'][:12]}"
        else:
            _STAMP = f"{datetime.now():%Y-%m-%d_%H-%M-%S}_{secrets.token_hex(3)}"
    return _STAMP


def auto_precision(accelerator: Any = "auto") -> str:
    """Lightning precision for ``accelerator``: ``bf16-mixed`` (fp32 master weights) on CUDA, else ``32-true``.

    Registered as ``deft_precision``, used by ``conf/trainer/auto.yaml``. ``auto``/``gpu``/``cuda`` mean
    CUDA when a CUDA device is visible; ``cpu`` and anything else (mps, ...) get full precision. The
    check is NVML-based, as Lightning's own: it does not initialise CUDA, so forked workers stay usable.
    """
    import os

    import torch

    if str(accelerator).strip().lower() not in ("auto", "gpu", "cuda"):
        return "32-true"
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # what importing Lightning sets too
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


def register() -> None:
    for name, function in (("deft_run_dir", resume_run_dir), ("deft_run_name", run_name), ("deft_run_stamp", run_stamp),
                           ("deft_precision", auto_precision)):
        if not OmegaConf.has_resolver(name):
            # the stamp is cached in the config, as Hydra's `now`: a sweep config sent to another process
            # (the submitit launcher) keeps the sweep directory resolved where the sweep started
            OmegaConf.register_new_resolver(name, function, use_cache=name == "deft_run_stamp")


register()

import deft_lightning.config  # noqa: E402,F401  (every composition path imports this module: the schemas too)
