"""Atomic artefact writes: all or nothing, and files readable like any other the user creates."""

from __future__ import annotations

import os

import pytest

from deft_lightning.io import atomic_path, write_text


def test_atomic_write_gives_the_files_the_usual_mode(tmp_path):
    path = tmp_path / "out" / "summary.txt"
    write_text(path, "hello")
    mask = os.umask(0)
    os.umask(mask)
    assert path.read_text() == "hello"
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    path = tmp_path / "selection.csv"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["selection.csv"]
