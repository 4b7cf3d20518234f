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


def register() -> None:
    for name, function in (("deft_run_dir", resume_run_dir),):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)


register()
