"""Hydra config tree, shipped inside the package so a non-editable install finds it.

Importing it (Hydra does, for ``pkg://deft_lightning.conf``) registers the schemas the YAML files name."""

import deft_lightning.config  # noqa: F401  (registers the typed schemas in Hydra's ConfigStore)
