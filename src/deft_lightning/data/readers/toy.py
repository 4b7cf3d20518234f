"""Compatibility name for the toy reader, which now lives in the toy package (:mod:`deft_lightning.toy.reader`).

The core does not import the toy world: this module only forwards a call, and ``conf/dataset/toy.yaml``
targets ``deft_lightning.toy.reader.read_toy`` directly. It goes once ``data/readers/__init__.py``
no longer lists ``toy``.
"""

from __future__ import annotations


def read_toy(*args, **kwargs):
    """Forward to :func:`deft_lightning.toy.reader.read_toy` (imported on call, not with the core)."""
    from deft_lightning.toy.reader import read_toy as read

    return read(*args, **kwargs)
