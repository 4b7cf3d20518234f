"""A damaged CLIP weights file is a user error naming the file and what it should be (issue 14 item 7)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from deft_lightning.errors import UserError
from deft_lightning.models.clip import (
    WeightsFileNotFoundError,
    WeightsUnavailableError,
    check_weights_file,
    create_clip,
    register_model_configs,
)

TINY = "deft-tiny-clip"


@pytest.fixture(scope="module")
def tiny_state():
    register_model_configs()
    torch.manual_seed(0)
    return open_clip.create_model(TINY, pretrained=None).state_dict()


def _good_pt(tmp_path: Path, state) -> Path:
    path = tmp_path / "tiny.pt"
    torch.save(state, path)
    return path


def _damaged_files(tmp_path: Path, state) -> dict[str, Path]:
    good = _good_pt(tmp_path, state)
    files = {}
    files["garbage"] = tmp_path / "garbage.bin"
    files["garbage"].write_bytes(b"this is not a checkpoint\n" * 40)
    files["empty"] = tmp_path / "empty.pt"
    files["empty"].write_bytes(b"")
    files["truncated"] = tmp_path / "truncated.pt"
    files["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    st = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    files["truncated_safetensors"] = tmp_path / "truncated.safetensors"
    files["truncated_safetensors"].write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    files["not_a_state_dict"] = tmp_path / "list.pt"
    torch.save([1, 2, 3], files["not_a_state_dict"])
    return files


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "truncated_safetensors", "not_a_state_dict"])
def test_a_damaged_clip_weights_file_names_the_file_and_what_it_should_be(kind, tmp_path, tiny_state):
    path = _damaged_files(tmp_path, tiny_state)[kind]
    with pytest.raises(WeightsUnavailableError) as info:
        create_clip(TINY, pretrained=None, weights=str(path))
    message = str(info.value)
    assert str(path) in message and "open_clip state dict" in message and "detector.clip.weights" in message
    assert isinstance(info.value, UserError)
    error = info.value  # one paragraph: no chained traceback behind it
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_a_clip_file_of_another_architecture_is_a_weights_error(tmp_path, tiny_state):
    path = tmp_path / "other.pt"
    state = dict(tiny_state)
    state["text_projection"] = torch.zeros(3, 3)
    torch.save(state, path)
    with pytest.raises(WeightsUnavailableError, match="does not fit CLIP deft-tiny-clip") as info:
        create_clip(TINY, pretrained=None, weights=str(path))
    assert str(path) in str(info.value)


def test_good_files_still_load(tmp_path, tiny_state):
    model, _ = create_clip(TINY, pretrained=None, weights=str(_good_pt(tmp_path, tiny_state)))
    for key, value in model.state_dict().items():
        assert torch.equal(value, tiny_state[key]), key
    st = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_state.items()}, str(st))
    assert check_weights_file(st, "k", "x") == st


def test_a_missing_file_is_still_a_file_not_found_error(tmp_path):
    with pytest.raises(WeightsFileNotFoundError, match="nowhere.pt") as info:
        create_clip(TINY, pretrained=None, weights=str(tmp_path / "nowhere.pt"))
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, UserError)


def test_an_unknown_local_tag_is_left_to_open_clip(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="no-such-tag"):
        create_clip(TINY, pretrained="no-such-tag", cache_dir=str(tmp_path))


def test_the_command_line_prints_one_paragraph_for_a_garbage_clip_file(tmp_path):
    from cli_runs import FAST_DEMO, clean_env, train_command

    garbage = tmp_path / "clip.bin"
    garbage.write_bytes(b"\x00\x01garbage" * 100)
    result = subprocess.run(
        train_command(*FAST_DEMO, "phases=[detect]", f"detector.clip.weights={garbage}",
                      f"paths.output_dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}"),
        env=clean_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 2, (result.stdout[-2000:], result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert str(garbage) in result.stderr and "open_clip state dict" in result.stderr
