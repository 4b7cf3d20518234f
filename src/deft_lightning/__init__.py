"""deft_lightning: DEFT noisy-label detection with CLIP and clean-subset fine-tuning, on Lightning + Hydra."""

__version__ = "0.1.0"
