"""Running CLIP's frozen text tower on prompt embeddings instead of token ids.

The tower is causal and pools the EOT token, so cutting every prompt after the longest EOT position
gives exactly the same features as the full 77-token context at a fraction of the cost. For the same
reason, tokens every prompt shares at its start (``[SOS]`` and a shared learned context) have the same
hidden states in every prompt: :func:`encode_shared_prefix` computes them once per prompt set and lets
each class's remaining tokens attend to them, which is again exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def encode_prompt_embeddings(clip_model: nn.Module, embeddings: torch.Tensor, eot_positions: torch.Tensor) -> torch.Tensor:
    """Text features (P, E) of prompts given as token embeddings (P, L, D) with their EOT positions.

    ``L`` may be shorter than the model's context length (truncated prompts); the causal mask and
    positional embedding are cut to match.
    """
    length = embeddings.shape[1]
    cast_dtype = clip_model.transformer.get_cast_dtype()
    x = embeddings.to(cast_dtype) + clip_model.positional_embedding[:length].to(cast_dtype)
    attn_mask = clip_model.attn_mask[:length, :length] if clip_model.attn_mask is not None else None
    x = clip_model.transformer(x, attn_mask=attn_mask)
    x = x[torch.arange(x.shape[0], device=x.device), eot_positions.to(x.device)]
    x = clip_model.ln_final(x)  # per-token norm: applying it to the pooled tokens only is exact
    projection = clip_model.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, nn.Linear) else x @ projection


def encode_token_ids_truncated(clip_model: nn.Module, token_ids: torch.Tensor) -> torch.Tensor:
    """Like open_clip's ``encode_text`` on token ids, but cut after the longest EOT (argmax id)."""
    eot_positions = token_ids.argmax(dim=-1)
    length = int(eot_positions.max()) + 1
    embeddings = clip_model.token_embedding(token_ids[:, :length])
    return encode_prompt_embeddings(clip_model, embeddings, eot_positions)


def supports_shared_prefix(clip_model: nn.Module) -> bool:
    """Whether :func:`encode_shared_prefix` reproduces this text tower: causal mask, plain open_clip blocks."""
    transformer = getattr(clip_model, "transformer", None)
    mask = getattr(clip_model, "attn_mask", None)
    if transformer is None or mask is None or not getattr(transformer, "batch_first", False):
        return False
    if getattr(transformer, "grad_checkpointing", False):
        return False
    hidden = torch.isinf(mask) & (mask < 0)
    if not torch.equal(hidden, torch.ones_like(hidden).triu(1)):
        return False
    for block in transformer.resblocks:
        attn = getattr(block, "attn", None)
        if not isinstance(attn, nn.MultiheadAttention) or hasattr(block, "ln_1_kv") or not hasattr(block, "mlp"):
            return False
        if not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn or not attn.batch_first:
            return False
    return True


def encode_shared_prefix(
    clip_model: nn.Module, prefixes: torch.Tensor, suffixes: torch.Tensor, eot_positions: torch.Tensor
) -> torch.Tensor:
    """Text features (N, E) of N prompts made of G shared prefixes (G, P, D) and suffixes (N, S, D).

    Suffix rows come in G contiguous groups of N / G, group g continuing prefix g (for the dual prompts:
    G = 2, positive then negative). ``eot_positions`` are positions in the whole prompt (≥ P). Same
    result as :func:`encode_prompt_embeddings` on the concatenated prompts, with the prefix tokens run
    G times instead of N times. Requires :func:`supports_shared_prefix`.
    """
    groups, prefix_len, width = prefixes.shape
    count, suffix_len, _ = suffixes.shape
    if count % groups:
        raise ValueError(f"{count} suffixes do not split into {groups} equal groups")
    cast_dtype = clip_model.transformer.get_cast_dtype()
    position = clip_model.positional_embedding.to(cast_dtype)
    prefixes = prefixes.to(cast_dtype) + position[:prefix_len]
    suffixes = suffixes.to(cast_dtype) + position[prefix_len : prefix_len + suffix_len]
    # one flat token matrix: per-token layers (norms, projections, MLP) run as single large matmuls
    x = torch.cat([prefixes.reshape(-1, width), suffixes.reshape(-1, width)])
    # suffix token i sees every prefix token and suffix tokens <= i: a causal mask aligned bottom-right
    visible = torch.ones(suffix_len, prefix_len + suffix_len, dtype=torch.bool, device=x.device).tril(prefix_len)
    for block in clip_model.transformer.resblocks:
        x = _shared_prefix_block(block, x, groups, prefix_len, count, suffix_len, visible)
    rows = torch.arange(count, device=x.device)
    pooled = x[groups * prefix_len :].view(count, suffix_len, width)[rows, eot_positions.to(x.device) - prefix_len]
    pooled = clip_model.ln_final(pooled)  # per-token norm: applying it to the pooled tokens only is exact
    projection = clip_model.text_projection
    if projection is None:
        return pooled
    return projection(pooled) if isinstance(projection, nn.Linear) else pooled @ projection


def _shared_prefix_block(
    block: nn.Module, x: torch.Tensor, groups: int, prefix_len: int, count: int, suffix_len: int, visible: torch.Tensor
) -> torch.Tensor:
    """One open_clip ``ResidualAttentionBlock`` over the flat (prefix tokens, suffix tokens) matrix."""
    attn = block.attn
    width = x.shape[-1]
    heads = attn.num_heads
    head_dim = width // heads
    dropout = attn.dropout if attn.training else 0.0
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    qkv_prefix, qkv_suffix = qkv.split([groups * prefix_len, count * suffix_len])
    q_p, k_p, v_p = qkv_prefix.view(groups, prefix_len, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q_s, k_s, v_s = qkv_suffix.view(count, suffix_len, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    out_prefix = F.scaled_dot_product_attention(q_p, k_p, v_p, dropout_p=dropout, is_causal=True)
    per_group = count // groups

    def with_prefix(prefix: torch.Tensor, suffix: torch.Tensor) -> torch.Tensor:
        shared = prefix.unsqueeze(1).expand(groups, per_group, heads, prefix_len, head_dim)
        return torch.cat([shared.reshape(count, heads, prefix_len, head_dim), suffix], dim=2)

    out_suffix = F.scaled_dot_product_attention(
        q_s, with_prefix(k_p, k_s), with_prefix(v_p, v_s), attn_mask=visible, dropout_p=dropout
    )
    out = torch.cat(
        [
            out_prefix.transpose(1, 2).reshape(groups * prefix_len, width),
            out_suffix.transpose(1, 2).reshape(count * suffix_len, width),
        ]
    )
    x = x + block.ls_1(F.linear(out, attn.out_proj.weight, attn.out_proj.bias))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def use_shared_prefix(clip_model: nn.Module, prompt_learner: nn.Module) -> bool:
    """True when the prompts share more than [SOS] and the tower allows the shared-prefix path."""
    return getattr(prompt_learner, "shared_prefix_length", 0) >= 2 and supports_shared_prefix(clip_model)


def encode_dual_prompts(clip_model: nn.Module, prompt_learner: nn.Module, shared_prefix: bool | None = None) -> torch.Tensor:
    """Features (2C, E) of a :class:`~deft_lightning.models.prompts.DualPromptLearner`'s prompts, one call.

    ``shared_prefix`` (default: :func:`use_shared_prefix`, best decided once, as it inspects the mask)
    picks the shared-prefix path, else the truncated one; both equal the full-context encoding up to
    float rounding.
    """
    eot_positions = prompt_learner.prompt_eot_positions()
    if shared_prefix is None:
        shared_prefix = use_shared_prefix(clip_model, prompt_learner)
    if shared_prefix:
        prefixes, suffixes = prompt_learner.forward_shared_prefix()
        return encode_shared_prefix(clip_model, prefixes, suffixes, eot_positions)
    return encode_prompt_embeddings(clip_model, prompt_learner(), eot_positions)
