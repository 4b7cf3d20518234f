"""Image decoding: RGB PIL images, with reduced-size JPEG decoding when the transform shrinks them anyway.

Decoding a 500x375 JPEG at 1/2 scale is several times cheaper than at full size, and Clothing1M and
WebVision images are mostly larger than the 256 px the transforms resize to.
"""

from __future__ import annotations

import logging
import os
import warnings

from PIL import Image

from deft_lightning.data.base import DatasetError

log = logging.getLogger(__name__)


def load_rgb(path: str, decode_size: int | None = None) -> Image.Image:
    """Open ``path`` as an RGB image.

    With ``decode_size`` a JPEG is decoded at the smallest 1/1, 1/2, 1/4 or 1/8 scale that keeps
    both sides >= ``decode_size`` (``Image.draft``), so no resolution the transform needs is lost. An
    unreadable or corrupt file raises a :class:`DatasetError` naming it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. palette images with transparency
            with Image.open(path) as image:
                if decode_size and image.format == "JPEG":
                    image.draft("RGB", (int(decode_size), int(decode_size)))
                return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DatasetError(
            f"Cannot read image {path}: {err}. Expected a readable image file (JPEG, PNG, ...); "
            "re-download or remove it from the dataset's list. `python -m deft_lightning.inspect_data "
            "dataset=... --verify-images` lists every unreadable image of a dataset."
        ) from None


def image_problem(path: str, decode: bool = False) -> str | None:
    """Why ``path`` is not a usable image, or None when it is.

    Without ``decode`` only the cheap checks run: the file exists, is not empty, and PIL recognises
    its header (``Image.open`` is lazy: it reads the header and the size, not the pixels). A file cut
    short after its header passes them; ``decode=True`` decodes every pixel and finds it too.
    """
    try:
        size = os.stat(path).st_size
    except OSError as err:
        return f"cannot be opened ({err.strerror or err})"
    if size == 0:
        return "empty file (0 bytes)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                width, height = image.size
                if width <= 0 or height <= 0:
                    return f"image has no pixels ({width}x{height})"
                if decode:
                    image.load()
    except Image.UnidentifiedImageError:
        return "not an image PIL can read (unknown or damaged header)"
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        return f"cannot be decoded: {err}"
    return None


def _problem_decoded(path: str) -> str | None:
    return image_problem(path, decode=True)


def _problem_header(path: str) -> str | None:
    return image_problem(path, decode=False)


def default_workers() -> int:
    """The CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def find_bad_images(
    paths: list[str], decode: bool = False, workers: int | None = None, progress: bool = False, desc: str = "images"
) -> list[tuple[int, str]]:
    """``(index, reason)`` of every unusable image in ``paths``, in index order.

    ``workers > 1`` checks in a process pool (decoding is CPU-bound); ``progress`` shows a tqdm bar.
    The result depends only on the files, so every DDP rank computes the same list. Should the pool
    fail to start (e.g. a ``python -c`` caller that spawned workers cannot re-import), the rest is
    checked in this process.
    """
    check = _problem_decoded if decode else _problem_header
    workers = default_workers() if workers is None else max(1, int(workers))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(paths), desc=f"{'decoding' if decode else 'checking'} {desc}", unit="img")
    bad: list[tuple[int, str]] = []
    done = 0

    def consume(results) -> None:
        nonlocal done
        for reason in results:
            if reason is not None:
                bad.append((done, reason))
            done += 1
            if bar is not None:
                bar.update(1)

    try:
        if workers > 1 and len(paths) >= 64:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            from concurrent.futures.process import BrokenProcessPool

            chunk = max(1, min(256, len(paths) // (workers * 16)))
            # spawn: the caller may hold threads (torch, tqdm) that fork would copy half-way
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
                try:
                    consume(pool.map(check, paths, chunksize=chunk))
                except BrokenProcessPool:
                    log.warning("image check: the worker pool failed; checking the remaining images in this process")
        consume(map(check, paths[done:]))
    finally:
        if bar is not None:
            bar.close()
    return bad
