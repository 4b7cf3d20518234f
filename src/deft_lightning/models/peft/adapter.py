"""Bottleneck adapter after the MLP of the chosen blocks, added residually.

``h = mlp(ln_2(x)); h = h + adapter(h); x = x + h`` with ``adapter = up(act(down(norm(h))))``. The
reference replaces the MLP output by ``adapter(h)``, discarding the pretrained MLP (a bug, SPEC §2 fix).
With ``up`` zero-initialised the adapter starts as the identity. Reference details kept: LayerNorm
before the down-projection, ReLU, down weights kaiming-normal (a=√5), zero biases. The frozen tower is
not modified: chosen blocks run through :func:`blocks.residual_block` with the block's own attention.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from deft_lightning.errors import ConfigError
from deft_lightning.models.peft.base import VisualPEFT
from deft_lightning.models.peft.blocks import check_attention_blocks, residual_block, run_tower

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class BottleneckAdapter(nn.Module):
    def __init__(self, width: int, bottleneck: int, activation: str = "relu", norm: bool = True) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"adapter activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if int(bottleneck) < 1:
            raise ConfigError(f"adapter bottleneck must be >= 1, got {bottleneck}")
        self.norm = nn.LayerNorm(width) if norm else nn.Identity()
        self.down = nn.Linear(width, int(bottleneck))
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(int(bottleneck), width)
        nn.init.kaiming_normal_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        # parameters stay float32; run in their dtype so fp16 towers without autocast still work
        dtype = self.down.weight.dtype
        return self.up(self.act(self.down(self.norm(x.to(dtype))))).to(x.dtype)


class VisualAdapter(VisualPEFT):
    def __init__(
        self,
        visual: nn.Module,
        bottleneck: int = 64,
        activation: str = "relu",
        norm: bool = True,
        partial: int | None = None,
    ) -> None:
        super().__init__(visual, partial)
        check_attention_blocks(visual, self.peft_blocks, "Adapter")
        self.adapters = nn.ModuleDict(
            {
                str(index): BottleneckAdapter(self.blocks[index].mlp.c_proj.out_features, bottleneck, activation, norm)
                for index in self.peft_blocks
            }
        )

    def _block(self, index: int, block: nn.Module, x: Tensor) -> Tensor:
        if str(index) not in self.adapters:
            return block(x)
        adapter = self.adapters[str(index)]

        def mlp(h: Tensor) -> Tensor:
            h = block.mlp(h)
            return h + adapter(h)

        return residual_block(block, x, lambda h: block.attention(q_x=h), mlp)

    def forward(self, images: Tensor) -> Tensor:
        return run_tower(self.visual, images, self._block)
