"""The measured cases: phase-1 text features, training step and inference pass; the phase-2 epoch;
JPEG decoding. Each times our path against the naive reference path (see :mod:`benchmarks.run`)."""


from __future__ import annotations

import os
import tempfile
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmarks.class_names import class_names
from benchmarks.harness import Bench
from benchmarks.reference import decode_full, reference_detector, reference_prompt_features


def phase1_cases(bench: Bench, classes: list[int]) -> None:
    """Training step and inference pass of the detector, ours vs the reference text path."""
    from deft_lightning.models.clip import create_clip, get_tokenizer
    from deft_lightning.models.peft.vpt import VisualPromptTuning
    from deft_lightning.models.prompts import DualPromptLearner
    from deft_lightning.models.text_encoder import encode_dual_prompts
    from deft_lightning.modules.detector import DetectorModule

    device, batch = bench.device, bench.args.batch_size
    quick = bench.args.quick
    torch.manual_seed(0)
    clip_model, inputs = create_clip(bench.model_name, pretrained=None)
    visual = VisualPromptTuning(clip_model.visual, num_tokens=4 if quick else 20)
    clip_model.to(device)
    visual.to(device)
    tokenizer = get_tokenizer(bench.model_name)
    size = inputs.image_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator).to(device)
    indices = torch.arange(batch, device=device)
    optimizer = partial(torch.optim.SGD, lr=0.03, momentum=0.9, weight_decay=5e-4)

    for num_classes in classes:
        learner = DualPromptLearner(
            class_names(num_classes), tokenizer, clip_model.token_embedding,
            n_ctx=4 if quick else 16, context_length=clip_model.context_length,
        )
        # warmup_epochs=0: the post-warm-up step, as in 9 of the paper's 10 epochs
        ours = DetectorModule(clip_model, visual, learner, optimizer=optimizer, warmup_epochs=0).to(device)
        naive = reference_detector(ours)
        labels = torch.randint(0, num_classes, (batch,), generator=generator).to(device)
        info = {
            "classes": num_classes,
            "prompt_tokens_naive": int(clip_model.context_length),
            "prompt_tokens_ours": int(learner.token_embeds.shape[1]),
            "shared_prefix_tokens": int(learner.shared_prefix_length) if ours.shared_prefix_text else 0,
        }

        if "phase1_text" in bench.args.cases:
            # the text part of a training step alone: where the step's speed-up comes from, per technique
            def text_step(encode: Callable[[], torch.Tensor]) -> None:
                learner.zero_grad(set_to_none=True)
                with bench.autocast():
                    features = encode()
                features.float().square().sum().backward()
                learner.zero_grad(set_to_none=True)

            def naive_text() -> torch.Tensor:
                return torch.cat([reference_prompt_features(naive, learner.pos_ctx),
                                  reference_prompt_features(naive, learner.neg_ctx)])

            for label, shared in (("cut at EOT", False), ("cut at EOT + shared prefix", True)):
                if shared and not ours.shared_prefix_text:
                    continue
                bench.compare(f"phase-1 text fwd+bwd, C={num_classes}, {label}", partial(text_step, naive_text),
                              partial(text_step, partial(encode_dual_prompts, clip_model, learner, shared)), **info)

        if "phase1_step" in bench.args.cases:
            def step(module: DetectorModule) -> None:
                module.train()
                module.on_train_epoch_start()
                opt = module.configure_optimizers()
                with bench.autocast():
                    loss = module.training_step((images, labels, indices), 0)["loss"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            row = bench.compare(f"phase-1 train step, C={num_classes}", partial(step, naive), partial(step, ours), **info)
            bench.throughput.append({"what": f"phase-1 train, C={num_classes}", "batch": batch,
                                     "naive_images_per_s": batch / row["naive_seconds"],
                                     "ours_images_per_s": batch / row["ours_seconds"]})

        if "phase1_inference" in bench.args.cases and num_classes in bench.inference_classes():
            count = bench.profile["inference_images"]
            batches = max(1, count // batch)

            def inference(module: DetectorModule) -> None:
                module.eval()
                module.on_predict_epoch_start()
                with torch.inference_mode(), bench.autocast():
                    for index in range(batches):
                        module.predict_step((images, labels, indices), index)

            row = bench.compare(f"phase-1 inference, {batches * batch} images, C={num_classes}",
                                partial(inference, naive), partial(inference, ours), **info, images=batches * batch)
            bench.throughput.append({"what": f"phase-1 inference, C={num_classes}", "batch": batch,
                                     "naive_images_per_s": batches * batch / row["naive_seconds"],
                                     "ours_images_per_s": batches * batch / row["ours_seconds"]})
        del ours, naive, learner


def phase2_case(bench: Bench) -> None:
    """One phase-2 epoch at sym 0.6: loss-masked over all samples vs sampling the clean subset."""
    from deft_lightning.data.datamodule import NoisyLabelDataModule
    from deft_lightning.data.readers.synthetic import read_synthetic
    from deft_lightning.losses.robust import CrossEntropy
    from deft_lightning.models.backbones import build_clip_classifier
    from deft_lightning.modules.adapter import AdapterModule

    device, batch = bench.device, bench.args.batch_size
    num_classes = 100
    samples = bench.profile["phase2_samples"]
    reader = partial(read_synthetic, num_classes=num_classes, num_train=samples, num_test=8, image_size=32, seed=0)
    workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    dm = NoisyLabelDataModule(reader, None, "bench", {"mode": "sym", "ratio": 0.6, "seed": 0},
                              batch_size=batch, num_workers=workers)
    dm.load()
    torch.manual_seed(0)
    model = build_clip_classifier(num_classes, model_name=bench.model_name, pretrained=None).to(device)
    dm.configure_inputs(model.input_config)
    clean = dm.given_labels == dm.true_labels
    optimizer = partial(torch.optim.SGD, lr=5e-4, momentum=0.9, weight_decay=5e-4)
    naive = AdapterModule(model, num_classes, CrossEntropy(), optimizer).to(device)
    ours = AdapterModule(model, num_classes, CrossEntropy(), optimizer).to(device)
    # one loader per path, made once as Lightning does per fit, so persistent workers persist across epochs
    from deft_lightning.selection.clean_selection import CleanSelection

    loaders = {}
    selection = CleanSelection(np.arange(len(clean)), dm.given_labels, dm.given_labels, clean.astype(float), clean)
    for label, chosen in (("naive", None), ("ours", selection)):
        dm.use_selection(chosen)
        loaders[label] = dm.train_dataloader()
    is_clean = torch.as_tensor(clean, device=device)  # the reference's loss mask: every sample seen, the noisy weighted 0
    seen: dict[str, int] = {}  # images trained per epoch

    def epoch(module: AdapterModule, label: str) -> None:
        module.train()
        opt = module.configure_optimizers()
        count = 0
        for index, (x, y, idx) in enumerate(loaders[label]):
            x, y, idx = (t.to(device, non_blocking=True) for t in (x, y, idx))
            batch = (x, y, idx, is_clean[idx]) if label == "naive" else (x, y, idx)
            with bench.autocast():
                loss = module.training_step(batch, index)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            count += len(x)
        opt.zero_grad(set_to_none=True)
        seen[label] = count

    info = {"samples": samples, "clean_samples": int(clean.sum()), "noise": "sym 0.6", "classes": num_classes,
            "naive_images": samples, "ours_images": int(clean.sum())}
    row = bench.compare(f"phase-2 epoch, sym 0.6, {samples} samples", partial(epoch, naive, "naive"),
                        partial(epoch, ours, "ours"), **info)
    if seen:
        assert seen == {"naive": row["naive_images"], "ours": row["ours_images"]}, seen
    bench.throughput.append({"what": "phase-2 train", "batch": batch,
                             "naive_images_per_s": row["naive_images"] / row["naive_seconds"],
                             "ours_images_per_s": row["ours_images"] / row["ours_seconds"]})


def jpeg_cases(bench: Bench) -> None:
    """Decode + resize of one JPEG, per image (ms), full decode vs reduced-size decode."""
    from PIL import Image, ImageOps
    from torchvision import transforms as T

    from deft_lightning.data.image_io import load_rgb

    count = bench.profile["jpeg_images"]
    saved_profile = dict(bench.profile)
    bench.profile.update(warmup=1, repeats=bench.profile["jpeg_repeats"])
    photo, source = sample_photo()
    with tempfile.TemporaryDirectory() as tmp:
        for (width, height), target in (((500, 500), 224), ((500, 500), 256), ((1024, 768), 256)):
            path = os.path.join(tmp, f"{width}x{height}.jpg")
            ImageOps.fit(photo, (width, height), Image.BICUBIC).save(path, quality=JPEG_QUALITY)
            resize = T.Resize(target)

            def naive() -> None:
                for _ in range(count):
                    resize(decode_full(path))

            def ours() -> None:
                for _ in range(count):
                    resize(load_rgb(path, target))

            decoded = load_rgb(path, target).size
            bench.compare(f"JPEG {width}x{height} -> {target} (per image, ms)", naive, ours, unit=count / 1000.0,
                          decoded_size_ours=list(decoded), decoded_size_naive=[width, height], source=source,
                          quality=JPEG_QUALITY, file_bytes=os.path.getsize(path))
    bench.profile.clear()
    bench.profile.update(saved_profile)


JPEG_QUALITY = 75  # libjpeg's and Pillow's default


def sample_photo():
    """A real photograph (scikit-learn's sample image, a project dependency): decoding cost depends on
    image content, and synthetic textures are far from photos. Falls back to a smooth synthetic image."""
    from PIL import Image

    try:
        import sklearn.datasets

        path = Path(sklearn.datasets.__file__).parent / "images" / "china.jpg"
        with Image.open(path) as image:
            return image.convert("RGB"), "scikit-learn sample photo china.jpg (640x427), re-encoded"
    except (ImportError, OSError):
        rng = np.random.default_rng(0)
        coarse = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
        return Image.fromarray(coarse).resize((640, 480), Image.BICUBIC), "synthetic smooth image (no sample photo found)"
