"""SSF (Lian et al. 2022): learnable per-channel scale and shift of intermediate features.

In each chosen block, four scale/shift pairs act after the fused q/k/v in-projection (3·width channels),
the attention out-projection, the MLP fc and the MLP proj (SPEC §2). The in-projection output only
exists inside ``nn.MultiheadAttention``, so chosen blocks run through the exact re-implemented attention
of :mod:`blocks`; the frozen tower itself is left untouched. Reference init: scale ~ N(1, std),
shift ~ N(0, std) with std 0.02, so SSF starts *near* (not at) the identity; ``init_std=0`` starts
exactly at the identity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from deft_lightning.models.peft.base import VisualPEFT
from deft_lightning.models.peft.blocks import cast_like, check_attention_blocks, residual_block, run_tower, self_attention


class ScaleShift(nn.Module):
    """``x * scale + shift`` over the last dimension."""

    def __init__(self, channels: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.scale = nn.Parameter(1.0 + init_std * torch.randn(channels))
        self.shift = nn.Parameter(init_std * torch.randn(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * cast_like(self.scale, x) + cast_like(self.shift, x)


class VisualSSF(VisualPEFT):
    def __init__(self, visual: nn.Module, init_std: float = 0.02, partial: int | None = None) -> None:
        super().__init__(visual, partial)
        check_attention_blocks(visual, self.peft_blocks, "SSF")
        self.ssf = nn.ModuleDict()
        for index in self.peft_blocks:
            block = self.blocks[index]
            width = block.attn.embed_dim
            self.ssf[str(index)] = nn.ModuleDict(
                {
                    "qkv": ScaleShift(3 * width, init_std),
                    "attn_out": ScaleShift(width, init_std),
                    "mlp_fc": ScaleShift(block.mlp.c_fc.out_features, init_std),
                    "mlp_proj": ScaleShift(block.mlp.c_proj.out_features, init_std),
                }
            )

    def _block(self, index: int, block: nn.Module, x: Tensor) -> Tensor:
        if str(index) not in self.ssf:
            return block(x)
        ssf = self.ssf[str(index)]

        def attention(h: Tensor) -> Tensor:
            return self_attention(block.attn, h, adjust_qkv=lambda _, qkv: ssf["qkv"](qkv), adjust_output=ssf["attn_out"])

        def mlp(h: Tensor) -> Tensor:
            # walk the MLP's own layers so variants with extra layers (norm, dropout) still work
            for name, layer in block.mlp.named_children():
                h = layer(h)
                if name == "c_fc":
                    h = ssf["mlp_fc"](h)
                elif name == "c_proj":
                    h = ssf["mlp_proj"](h)
            return h

        return residual_block(block, x, attention, mlp)

    def forward(self, images: Tensor) -> Tensor:
        return run_tower(self.visual, images, self._block)
