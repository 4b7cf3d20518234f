"""Contrastive pretraining of the tiny toy CLIP: the recipe, and its per-machine cache.

DEFT needs a vision-language model that already aligns images with class names. No weights can be
downloaded where this project is built, so we pretrain a tiny open_clip model on the generator's
"web" captions with the standard symmetric InfoNCE loss on CPU (2000 steps of 128 pairs, about nine
minutes on two uncontended cores). The result of the default recipe (seed 0) ships with the package
(:mod:`deft_lightning.toy.shipped`, tag ``deft-toy``); other seeds and recipes are pretrained on
demand and cached under ``<cache>/toy_clip/<key>/``. The key covers everything that changes the
weights (generator version, seed, model config, training recipe), so a stale checkpoint is never reused.
The checkpoint is a plain open_clip state dict: the rest of the framework loads it with
``open_clip.create_model(MODEL_NAME, pretrained=path)``, exactly like a real local checkpoint.

Pretraining draws from its own random stream (the caller's global torch state is saved and restored
around it; the data come from seeded numpy Generators), so a run that pretrains writes the same files
as one that found the model cached.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from deft_lightning.io import atomic_path
from deft_lightning.models.inputs import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, InputConfig
from deft_lightning.toy.generator import GENERATOR_VERSION, WEB, generate_web

MODEL_NAME = "deft-toy-clip"
MODEL_CONFIG_DIR = Path(__file__).resolve().parents[1] / "models" / "model_configs"
CHECKPOINT_NAME = "open_clip_model.pt"
META_NAME = "meta.json"

# How many pretraining runs this process has started; tests use it to check the cache is reused.
PRETRAIN_RUNS = 0


@dataclass(frozen=True)
class PretrainConfig:
    """The training recipe; every field is part of the cache key."""

    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 40
    init_temperature: float = 0.07
    text_lr_mult: float = 1.0


def register_model_config() -> None:
    """Make ``MODEL_NAME`` known to open_clip (idempotent)."""
    import open_clip

    if MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def model_config() -> dict:
    with open(MODEL_CONFIG_DIR / f"{MODEL_NAME}.json", encoding="utf-8") as f:
        return json.load(f)


def input_config() -> InputConfig:
    """Resolution and normalisation the toy CLIP was pretrained with: 32 px, OpenAI CLIP mean/std.

    The OpenAI statistics are also open_clip's default preprocessing, so anything that reads
    ``model.visual.preprocess_cfg`` agrees with this.
    """
    return InputConfig(image_size=int(model_config()["vision_cfg"]["image_size"]), mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD)


def default_cache_dir() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/deft_lightning``: the project's per-user cache root."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "deft_lightning"


def cache_key(seed: int = 0, config: PretrainConfig | None = None) -> str:
    """``g<generator version>-s<seed>-<hash of model config and recipe>``."""
    config = config or PretrainConfig()
    blob = json.dumps({"model": model_config(), "recipe": asdict(config), "web": repr(WEB)}, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
    return f"g{GENERATOR_VERSION}-s{seed}-{digest}"


def images_to_tensor(images: np.ndarray, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, size: int | None = None) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W), resized to ``size`` if it differs."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def encode_text_trimmed(model, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` computed only up to the batch's last end-of-text token.

    With a causal mask the positions after the end-of-text token cannot change the pooled feature,
    so dropping them gives the same result at a fraction of the cost (captions are short).
    """
    length = int(tokens.argmax(dim=-1).max()) + 1
    tokens = tokens[:, :length]
    x = model.token_embedding(tokens) + model.positional_embedding[:length]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]
    return x @ model.text_projection


def _param_groups(model, config: "PretrainConfig") -> list[dict]:
    """No weight decay on gains, biases, embeddings and the temperature; a higher rate for the text tower.

    Both towers start from random weights, and until the text side separates the words the image side
    gets no useful signal; a faster text tower shortens that plateau.
    """
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        decay = not (p.ndim < 2 or "embedding" in name or "logit_scale" in name)
        text = not name.startswith("visual.") and "logit" not in name
        groups.setdefault((decay, text), []).append(p)
    return [
        {
            "params": params,
            "weight_decay": config.weight_decay if decay else 0.0,
            "lr": config.lr * (config.text_lr_mult if text else 1.0),
        }
        for (decay, text), params in groups.items()
    ]


def pretrain(
    seed: int = 0, config: PretrainConfig | None = None, progress: bool = True, on_step: Callable | None = None
) -> tuple[dict, dict]:
    """Train from scratch; return (state dict, metrics). Fresh web pairs every step, no epochs.

    ``on_step(step, model)`` is called after every optimiser step (for learning curves).
    """
    global PRETRAIN_RUNS
    PRETRAIN_RUNS += 1
    config = config or PretrainConfig()
    register_model_config()
    start = time.perf_counter()
    # Its own random stream: the caller's global torch state is saved here and restored on return,
    # so pretraining inside a run does not change what the run draws afterwards (same files whether
    # or not the toy CLIP was cached). The generator's data draws use their own numpy Generators.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _pretrain(seed, config, progress, on_step, start)


def _pretrain(seed: int, config: "PretrainConfig", progress: bool, on_step: Callable | None, start: float) -> tuple[dict, dict]:
    import open_clip
    from tqdm.auto import tqdm

    model = open_clip.create_model(MODEL_NAME, pretrained=None)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1.0 / config.init_temperature))
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    inputs = input_config()

    # fused: one kernel over all tensors; the plain loop costs ~15 % of a step on CPU (49k-token embedding)
    optimizer = torch.optim.AdamW(_param_groups(model, config), lr=config.lr, betas=(0.9, 0.98), eps=1e-6, fused=True)

    def lr_factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        t = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    # Data in blocks of steps, so memory stays small and the stream is the same for any run length.
    block_steps = 50
    model.train()
    bar = tqdm(total=config.steps, desc="pretraining toy CLIP", disable=not progress, unit="step")
    losses = []
    labels = torch.arange(config.batch_size)
    for block_start in range(0, config.steps, block_steps):
        n_steps = min(block_steps, config.steps - block_start)
        images, captions = generate_web(n_steps * config.batch_size, seed=seed * 1_000_003 + block_start)
        tokens = tokenizer(captions)
        pixels = images_to_tensor(images, inputs.mean, inputs.std, inputs.image_size)
        for i in range(n_steps):
            batch = slice(i * config.batch_size, (i + 1) * config.batch_size)
            image_features = F.normalize(model.encode_image(pixels[batch]), dim=-1)
            text_features = F.normalize(encode_text_trimmed(model, tokens[batch]), dim=-1)
            logits = model.logit_scale.exp() * image_features @ text_features.T
            loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(float(loss.detach()))
            bar.update(1)
            if on_step is not None:
                on_step(block_start + i + 1, model)
            if progress and (block_start + i) % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
    bar.close()
    model.eval()
    metrics = {
        "seconds": time.perf_counter() - start,
        "final_loss": float(np.mean(losses[-20:])) if losses else float("nan"),
        "logit_scale": float(model.logit_scale.detach().exp()),
        "steps": config.steps,
    }
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, metrics


def _atomic_write(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(str(tmp))


def checkpoint_path(cache_dir: str | Path | None = None, seed: int = 0, config: PretrainConfig | None = None) -> Path:
    """Where :func:`ensure_pretrained` keeps (or will keep) the checkpoint."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "toy_clip" / cache_key(seed, config) / CHECKPOINT_NAME


def ensure_pretrained(
    cache_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    config: PretrainConfig | None = None,
) -> Path:
    """Path of the pretrained toy CLIP state dict, pretraining it first if it is not cached.

    ``cache_dir`` is the project cache root (default ``${XDG_CACHE_HOME:-~/.cache}/deft_lightning``);
    the file lives in ``<cache_dir>/toy_clip/<key>/``. Writes are atomic, so an interrupted run
    leaves no checkpoint that a later call would trust.
    """
    path = checkpoint_path(cache_dir, seed, config)
    register_model_config()
    if path.is_file():
        return path
    if progress:
        print(f"Pretraining the toy CLIP once for this machine (cached at {path.parent}) ...", flush=True)
    state_dict, metrics = pretrain(seed=seed, config=config, progress=progress)
    meta = {
        "model_name": MODEL_NAME,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "recipe": asdict(config or PretrainConfig()),
        "model_config": model_config(),
        "input": asdict(input_config()),
        "torch_threads": torch.get_num_threads(),
        **metrics,
    }
    _atomic_write(path.parent / META_NAME, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2)))
    _atomic_write(path, lambda tmp: torch.save(state_dict, tmp))
    if progress:
        print(f"Pretrained in {metrics['seconds']:.0f} s (final loss {metrics['final_loss']:.3f}).", flush=True)
    return path


def load_pretrained(
    cache_dir: str | Path | None = None, seed: int = 0, progress: bool = True, config: PretrainConfig | None = None,
    shipped: bool = True,
):
    """(model in eval mode, tokenizer), through open_clip's ordinary local-checkpoint path.

    The recipe the package ships (seed 0, the default :class:`PretrainConfig`) loads the shipped weights
    (:mod:`deft_lightning.toy.shipped`) without pretraining, unless ``shipped=False``; any other seed or
    recipe is pretrained on demand and cached.
    """
    import open_clip

    from deft_lightning.toy import shipped as shipped_weights

    if shipped and shipped_weights.SHIPPED_FILE.is_file() and cache_key(seed, config) == shipped_weights.shipped_meta()["cache_key"]:
        path = shipped_weights.resolve_weights(cache_dir)
    else:
        path = ensure_pretrained(cache_dir, seed=seed, progress=progress, config=config)
    model = open_clip.create_model(MODEL_NAME, pretrained=str(path))
    model.eval()
    return model, open_clip.get_tokenizer(MODEL_NAME)
