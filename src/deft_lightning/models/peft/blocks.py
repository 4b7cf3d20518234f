"""Running open_clip's visual tower block by block, so PEFT can act inside a block without editing it.

SSF, the attention LoRA and the adapter need to change what happens *inside* a residual block (after the
fused q/k/v projection, after the MLP). ``nn.MultiheadAttention`` gives no place to hook between its
in-projection and the attention, and it reads ``out_proj.weight`` directly instead of calling
``out_proj``, so hooks or wrapped sub-modules there silently do nothing. Instead the variants run the
tower themselves: blocks with modules go through :func:`residual_block` with :func:`self_attention`, an
exact re-implementation of the same attention; every other block runs as it is. The frozen tower is
never modified, so its state-dict keys stay those of a plain CLIP.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

BlockForward = Callable[[int, nn.Module, Tensor], Tensor]


def check_attention_blocks(visual: nn.Module, indices: Sequence[int], variant: str) -> None:
    """Fail early, with a message, on towers the re-implemented block would compute wrongly."""
    if not getattr(visual.transformer, "batch_first", True):
        raise TypeError(f"{variant} needs a batch-first open_clip VisionTransformer (transformer.batch_first=True).")
    blocks = visual.transformer.resblocks
    for index in indices:
        block = blocks[index]
        attn = getattr(block, "attn", None)
        if not isinstance(attn, nn.MultiheadAttention) or not hasattr(block, "mlp"):
            raise TypeError(
                f"{variant} needs open_clip ResidualAttentionBlock blocks (attn: nn.MultiheadAttention, mlp); "
                f"block {index} is {type(block).__name__} with attn {type(attn).__name__}."
            )
        if not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn or not attn.batch_first:
            raise TypeError(
                f"{variant}: block {index}'s attention uses an unsupported nn.MultiheadAttention option "
                "(separate q/k/v weights, bias_k/bias_v, add_zero_attn or batch_first=False)."
            )


def self_attention(
    attn: nn.MultiheadAttention,
    x: Tensor,
    adjust_qkv: Callable[[Tensor, Tensor], Tensor] | None = None,
    adjust_output: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """``attn(x, x, x, need_weights=False)[0]`` for batch-first ``x`` (B, L, D), with two places to act.

    ``adjust_qkv(x, qkv)`` sees the fused in-projection output (B, L, 3D) ordered q|k|v, and
    ``adjust_output(out)`` the out-projection output. Without them the result equals the module's own
    forward up to float rounding (same projections, same scaled-dot-product attention, no mask).
    """
    batch, length, width = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    if adjust_qkv is not None:
        qkv = adjust_qkv(x, qkv)
    q, k, v = qkv.view(batch, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)
    dropout = attn.dropout if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
    out = out.transpose(1, 2).reshape(batch, length, width)
    out = F.linear(out, attn.out_proj.weight, attn.out_proj.bias)
    if adjust_output is not None:
        out = adjust_output(out)
    return out


def residual_block(
    block: nn.Module, x: Tensor, attention: Callable[[Tensor], Tensor], mlp: Callable[[Tensor], Tensor]
) -> Tensor:
    """open_clip ``ResidualAttentionBlock.forward`` (self-attention, no mask) with the two branches swappable."""
    x = x + block.ls_1(attention(block.ln_1(x)))
    return x + block.ls_2(mlp(block.ln_2(x)))


def run_tower(visual: nn.Module, images: Tensor, block_forward: BlockForward) -> Tensor:
    """``visual(images)`` (projected pooled features) with each block run by ``block_forward(index, block, x)``."""
    x = visual._embeds(images)
    for index, block in enumerate(visual.transformer.resblocks):
        x = block_forward(index, block, x)
    pooled, _ = visual._pool(x)
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    return pooled


def cast_like(parameter: Tensor, x: Tensor) -> Tensor:
    """Trainable parameters stay float32; use them in the activations' dtype (fp16/bf16 towers, autocast)."""
    return parameter if parameter.dtype == x.dtype else parameter.to(x.dtype)


__all__ = ["check_attention_blocks", "self_attention", "residual_block", "run_tower", "cast_like"]
