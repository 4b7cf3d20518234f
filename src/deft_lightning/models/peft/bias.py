"""Bias tuning (BitFit): train the visual tower's own biases, nothing new is added.

``partial=None`` (reference): every visual parameter named ``*bias`` — attention ``in_proj_bias`` and
``out_proj.bias``, MLP ``c_fc``/``c_proj`` biases, LayerNorm biases of every block and of ``ln_pre`` /
``ln_post`` (open_clip's patch embedding ``conv1`` has no bias). ``partial=K``: only the biases inside
the last K blocks. The forward is the tower's own.
"""

from __future__ import annotations

from torch import nn

from deft_lightning.errors import ConfigError
from deft_lightning.models.peft.base import VisualPEFT


class VisualBiasTuning(VisualPEFT):
    def __init__(self, visual: nn.Module, partial: int | None = None) -> None:
        super().__init__(visual, partial)
        prefixes = None if partial is None else tuple(f"transformer.resblocks.{index}." for index in self.peft_blocks)
        self.bias_names: list[str] = []  # names inside the tower, for logs
        for name, parameter in visual.named_parameters():
            if name.endswith("bias") and (prefixes is None or name.startswith(prefixes)):
                parameter.requires_grad_(True)
                self.bias_names.append(name)
        if not self.bias_names:
            raise ConfigError("bias tuning found no bias parameters in the chosen part of the visual tower")
