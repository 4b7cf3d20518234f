"""Zero-shot classification with "a photo of a {class}." prompts.

This is the number the toy world is tuned on: the pretrained tiny CLIP must already recognise the
downstream classes often (so DEFT has a premise) but not always (so there is room to improve), like
CLIP ViT-B/16 on the paper's datasets. ``python -m deft_lightning.toy.zero_shot`` prints it.
"""

from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from deft_lightning.models.zero_shot import ZERO_SHOT_TEMPLATE as PROMPT, zero_shot_weights


@torch.no_grad()
def zero_shot_predictions(
    model, tokenizer, images: np.ndarray, class_names: Sequence[str], mean, std, batch_size: int = 256
) -> np.ndarray:
    """Predicted class index per image (argmax cosine similarity to the class prompts)."""
    from deft_lightning.toy.pretrain import images_to_tensor

    was_training = model.training
    model.eval()
    text = zero_shot_weights(model, tokenizer, list(class_names), PROMPT)
    size = getattr(model.visual, "image_size", None)
    size = size[0] if isinstance(size, (tuple, list)) else size
    preds = []
    for start in range(0, len(images), batch_size):
        x = images_to_tensor(images[start : start + batch_size], mean, std, size)
        feats = F.normalize(model.encode_image(x), dim=-1)
        preds.append((feats @ text.T).argmax(-1).numpy())
    model.train(was_training)
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


def zero_shot_accuracy(
    model, tokenizer, images: np.ndarray, labels, class_names: Sequence[str], mean, std, batch_size: int = 256
) -> float:
    """Fraction of images whose zero-shot prediction equals ``labels`` (in [0, 1])."""
    preds = zero_shot_predictions(model, tokenizer, images, class_names, mean, std, batch_size)
    return float((preds == np.asarray(labels)).mean())


def main(argv: Sequence[str] | None = None) -> float:
    from deft_lightning.toy.reader import read_toy
    from deft_lightning.toy.pretrain import input_config, load_pretrained

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None, help="project cache root (default ~/.cache/deft_lightning)")
    parser.add_argument("--seed", type=int, default=0, help="pretraining seed")
    parser.add_argument("--data-seed", type=int, default=0, help="toy dataset seed")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model, tokenizer = load_pretrained(args.cache_dir, seed=args.seed)
    data = read_toy(seed=args.data_seed)
    test = next(iter(data.test.values()))
    inputs = input_config()
    acc = zero_shot_accuracy(model, tokenizer, test.images, test.clean_labels, data.class_names, inputs.mean, inputs.std)
    print(f"toy test zero-shot accuracy ({len(test)} images, prompts {PROMPT!r}): {100 * acc:.2f}%")
    return acc


if __name__ == "__main__":
    main()
