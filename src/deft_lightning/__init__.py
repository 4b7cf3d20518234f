"""deft_lightning: DEFT noisy-label detection with CLIP and clean-subset fine-tuning, on Lightning + Hydra.

``deft_lightning.find_label_issues(...)`` is the Python entry for a dirty image dataset, and
``deft_lightning.load_detector(path).score(images, labels)`` scores new images with a trained detector (see
:mod:`deft_lightning.api`); they are imported on first use, so ``import deft_lightning`` stays light.
"""

__version__ = "0.1.0"

_API = ("find_label_issues", "read_label_issues", "LabelIssues", "load_detector", "Detector", "DetectorScores")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from deft_lightning import api

        return getattr(api, name)
    raise AttributeError(f"module 'deft_lightning' has no attribute {name!r}")
