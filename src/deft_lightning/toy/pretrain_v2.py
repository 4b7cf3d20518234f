"""Pretraining recipe of the v2 toy CLIP: the shipped v1 model, trained further on fresh web pairs.

The v1 recipe stopped while its loss was still falling (issue 16: 3500 instead of 2000 steps lifted the
linear probe from 67 to 82 %). Re-running all steps from scratch costs about half an hour on a shared
2-core machine, so v2 continues from the shipped v1 weights (a fixed, checked-in file, hence the same
start everywhere) with a fresh warm-up + cosine schedule and a fresh AdamW, on web draws disjoint from
v1's (their own seed stream). Same architecture (``deft-toy-clip``), same InfoNCE loss, same web
domain and captions: only the amount of training differs.

``python -m deft_lightning.toy.pretrain_v2 --out DIR`` writes ``open_clip_model.pt`` and ``meta.json``
and logs progress every 25 steps.

Status: a lever for a stronger toy CLIP, not used by anything shipped. On the shared 2-core machine
of 2026-12-02 (load 8-10) it ran at 6-10 s a step, so a 1200-step run could not finish in the session;
world v2 (:mod:`.world_v2`) reached its target properties with the shipped v1 weights instead.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from deft_lightning.toy.generator import GENERATOR_VERSION, generate_web

# Web draws of the continuation: seeds far from v1's (seed * 1_000_003 + block start, block start < 10^4).
DATA_SEED_BASE = 7_000_000


@dataclass(frozen=True)
class ContinueConfig:
    """The continuation recipe; recorded beside the weights."""

    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    text_lr_mult: float = 1.0
    seed: int = 0
    start_from: str = "deft-toy"  # the shipped v1 weights


def continue_pretraining(
    config: ContinueConfig, log=print, log_every: int = 25, snapshot=None, snapshot_every: int = 0
) -> tuple[dict, dict]:
    """Train the start model further; return (state dict, metrics). Uses its own torch random stream.

    ``snapshot(step, state_dict)`` is called every ``snapshot_every`` steps (intermediate checkpoints
    for a learning curve; they do not change the training).
    """
    import open_clip

    from deft_lightning.toy import shipped
    from deft_lightning.toy.pretrain import MODEL_NAME, _param_groups, encode_text_trimmed, images_to_tensor, input_config

    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = shipped.load_model(shipped.resolve_weights(), MODEL_NAME).train()
        tokenizer = open_clip.get_tokenizer(MODEL_NAME)
        inputs = input_config()
        optimizer = torch.optim.AdamW(_param_groups(model, config), lr=config.lr, betas=(0.9, 0.98), eps=1e-6, fused=True)

        def lr_factor(step: int) -> float:
            if step < config.warmup_steps:
                return (step + 1) / config.warmup_steps
            t = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        block_steps, losses = 50, []
        labels = torch.arange(config.batch_size)
        for block_start in range(0, config.steps, block_steps):
            n_steps = min(block_steps, config.steps - block_start)
            images, captions = generate_web(n_steps * config.batch_size, seed=DATA_SEED_BASE + config.seed * 100_003 + block_start)
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
                step = block_start + i + 1
                if log is not None and (step % log_every == 0 or step == config.steps):
                    log(f"step {step}/{config.steps} loss {np.mean(losses[-log_every:]):.4f} "
                        f"scale {model.logit_scale.exp().item():.1f} {time.perf_counter() - start:.0f}s")
                if snapshot is not None and snapshot_every and step % snapshot_every == 0 and step < config.steps:
                    snapshot(step, {k: v.detach().clone() for k, v in model.state_dict().items()})
        model.eval()
    metrics = {
        "seconds": time.perf_counter() - start,
        "final_loss": float(np.mean(losses[-20:])),
        "logit_scale": float(model.logit_scale.detach().exp()),
        "steps": config.steps,
        "torch_threads": torch.get_num_threads(),
        "generator_version": GENERATOR_VERSION,
    }
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, metrics


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory for open_clip_model.pt and meta.json")
    parser.add_argument("--steps", type=int, default=ContinueConfig.steps)
    parser.add_argument("--lr", type=float, default=ContinueConfig.lr)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--snapshot-every", type=int, default=0, help="also save step-<n>.pt every n steps")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = ContinueConfig(steps=args.steps, lr=args.lr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state, metrics = continue_pretraining(
        config, log=lambda m: print(m, flush=True), snapshot_every=args.snapshot_every,
        snapshot=lambda step, sd: torch.save(sd, out / f"step-{step}.pt"),
    )
    torch.save(state, out / "open_clip_model.pt")
    (out / "meta.json").write_text(json.dumps({"recipe": asdict(config), **metrics}, indent=2), encoding="utf-8")
    print(f"wrote {out} in {metrics['seconds']:.0f} s", flush=True)
    return out


if __name__ == "__main__":
    main()
