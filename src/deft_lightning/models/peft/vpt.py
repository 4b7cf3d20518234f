"""Visual prompt tuning (VPT, Jia et al. 2022): learnable tokens appended to the visual sequence.

Deep: at every chosen block the previous block's prompt outputs are dropped and fresh prompts appended
after the patch tokens. Shallow: prompts are appended once, before the first chosen block, and carried.
Prompts get no positional embedding, so they reach the pooled CLS only through attention.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deft_lightning.models.peft.base import VisualPEFT


class VisualPromptTuning(VisualPEFT):
    def __init__(self, visual: nn.Module, num_tokens: int = 20, deep: bool = True, partial: int | None = None) -> None:
        super().__init__(visual, partial)
        self.num_tokens = int(num_tokens)
        self.deep = bool(deep)
        width = visual.conv1.out_channels
        patch = visual.conv1.kernel_size[0]
        bound = math.sqrt(6.0 / float(3 * patch * patch + width))
        layers = len(self.peft_blocks) if deep else 1
        self.prompts = nn.Parameter(torch.empty(layers, self.num_tokens, width).uniform_(-bound, bound))

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Token sequence after the last block, prompts removed: (B, 1 + patches, width)."""
        x = self.visual._embeds(images)
        batch, length = x.shape[0], x.shape[1]
        first = self.peft_blocks[0]
        for index, block in enumerate(self.blocks):
            if index >= first:
                slot = index - first
                if self.deep:
                    prompt = self.prompts[slot].to(x.dtype).expand(batch, -1, -1)
                    x = torch.cat([x[:, :length], prompt], dim=1)
                elif slot == 0:
                    x = torch.cat([x, self.prompts[0].to(x.dtype).expand(batch, -1, -1)], dim=1)
            x = block(x)
        return x[:, :length]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled, _ = self.visual._pool(self.forward_tokens(images))
        if self.visual.proj is not None:
            pooled = pooled @ self.visual.proj
        return pooled
