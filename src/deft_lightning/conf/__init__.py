"""Hydra config tree, shipped inside the package so a non-editable install finds it."""
