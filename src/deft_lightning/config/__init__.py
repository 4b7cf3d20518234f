"""The config schemas, registered in Hydra's ConfigStore on import (see :mod:`deft_lightning.config.schemas`).

Every way of composing the config imports this package first: ``deft_lightning.resolvers`` (imported by
the entry points and by ``cli.compose_config``) and ``deft_lightning.conf`` (what ``pkg://`` and
``initialize_config_module`` import) both do.
"""

from __future__ import annotations

from deft_lightning.config.schemas import SCHEMAS


def register_configs() -> None:
    """Store every schema under its name (idempotent: storing again replaces the same node)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=name, node=schema)


register_configs()
