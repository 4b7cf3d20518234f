"""The toy CLIP shipped with the package: small, code-free, complete for every prompt, and loaded without pretraining."""

from __future__ import annotations

import json

import pytest
import torch

from deft_lightning.models import clip
from deft_lightning.toy import pretrain as toy_pretrain
from deft_lightning.toy import shipped

pytestmark = pytest.mark.skipif(not shipped.SHIPPED_FILE.is_file(), reason="the shipped toy CLIP is not in this checkout")


@pytest.fixture
def no_pretraining(monkeypatch):
    """Any call of the toy pretraining fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("pretrain() was called")

    monkeypatch.setattr(toy_pretrain, "pretrain", refuse)
    return toy_pretrain.PRETRAIN_RUNS


def test_shipped_file_is_small_fp16_safetensors_with_its_record():
    from safetensors import safe_open

    assert shipped.SHIPPED_FILE.stat().st_size < 5 * 2**20
    with safe_open(str(shipped.SHIPPED_FILE), framework="pt") as f:  # safetensors: no pickle, no code
        meta = f.metadata()
        dtypes = {f.get_tensor(k).dtype for k in f.keys() if k != shipped.ROWS_KEY}
        rows = f.get_tensor(shipped.ROWS_KEY)
    assert meta["format"] == shipped.FORMAT and int(meta["vocab_size"]) == 49408
    assert dtypes <= {torch.float16, torch.int64}, dtypes
    record = shipped.shipped_meta()
    assert record["sha256"] == shipped.file_digest(shipped.SHIPPED_FILE)
    assert record["stored_embedding_rows"] == len(rows) < 1000
    assert record["cache_key"] == toy_pretrain.cache_key(0)  # the default recipe, seed 0
    assert record["recipe"]["recipe"] == json.loads(json.dumps(toy_pretrain.PretrainConfig().__dict__))


def test_every_prompt_the_project_builds_uses_only_stored_rows():
    """Zero-shot / label-match templates, DEFT's layout (SOS, X placeholders, name, '.', EOT, padding),
    its word initialisation, and the pretraining captions: all their token ids are stored rows."""
    from safetensors import safe_open

    with safe_open(str(shipped.SHIPPED_FILE), framework="pt") as f:
        rows = set(int(i) for i in f.get_tensor(shipped.ROWS_KEY))
    tokenizer = shipped._tokenizer()
    needed = shipped.project_prompt_token_ids(tokenizer)
    assert {tokenizer.sot_token_id, tokenizer.eot_token_id, 0} <= needed
    assert needed <= rows, sorted(needed - rows)
    captions = shipped.caption_token_ids(tokenizer, n=4000, seed=123)  # another draw than the export's
    assert captions <= rows, sorted(captions - rows)
    # the check has teeth: a word the toy world never uses is not stored
    assert not set(int(i) for i in tokenizer(["zeppelin"])[0, 1:2]) <= rows


def test_expansion_puts_the_stored_rows_back_and_zeros_elsewhere():
    from safetensors import safe_open

    state = shipped.expand_compact(shipped.SHIPPED_FILE)
    with safe_open(str(shipped.SHIPPED_FILE), framework="pt") as f:
        rows = f.get_tensor(shipped.ROWS_KEY).long()
        stored = f.get_tensor(shipped.EMBEDDING_KEY)
    embedding = state[shipped.EMBEDDING_KEY]
    assert embedding.shape == (49408, stored.shape[1]) and embedding.dtype == torch.float32
    assert torch.equal(embedding[rows], stored.float())
    others = torch.ones(len(embedding), dtype=torch.bool)
    others[rows] = False
    assert not embedding[others].any()
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


def test_deft_toy_loads_the_shipped_file_without_pretraining_and_matches_its_record(tmp_path, no_pretraining):
    """Zero-shot accuracy on the recorded 512-image check draw equals the recorded figure.

    Tolerance: the model and the draw are fixed, so only floating-point differences between machines
    (BLAS kernels, thread counts) can move a prediction, and only one whose two best classes tie to
    ~1e-6; two flipped images (0.4 points) allow for that and nothing else. The full test-set figure
    (2000 images) must agree with the check draw within 3 binomial standard errors of 512 images.
    """
    from deft_lightning.toy.generator import SHAPES, generate_labelled
    from deft_lightning.toy.zero_shot import zero_shot_accuracy

    model, inputs = clip.create_clip(toy_pretrain.MODEL_NAME, "deft-toy", cache_dir=str(tmp_path))
    assert toy_pretrain.PRETRAIN_RUNS == no_pretraining
    assert list((tmp_path / "toy_clip").glob("shipped-*/open_clip_model.safetensors"))
    assert inputs == toy_pretrain.input_config()
    record = shipped.shipped_meta()["properties_fp16_shipped"]
    images, labels = generate_labelled(shipped.CHECK_DRAW, seed=0, stream=1)
    acc = 100 * zero_shot_accuracy(model.eval(), clip.get_tokenizer(toy_pretrain.MODEL_NAME), images, labels, SHAPES,
                                   inputs.mean, inputs.std)
    assert abs(acc - record["zero_shot_check_draw_pct"]) <= 100 * 2 / shipped.CHECK_DRAW + 1e-9, (acc, record)
    p = record["zero_shot_test_pct"] / 100
    assert abs(acc / 100 - p) <= 3 * (p * (1 - p) / shipped.CHECK_DRAW) ** 0.5, (acc, record)
    assert 50.0 <= record["zero_shot_test_pct"] <= 85.0  # the toy world's premise (issue 8)


def test_load_pretrained_uses_the_shipped_file_for_its_recipe_only(tmp_path, no_pretraining):
    model, _ = toy_pretrain.load_pretrained(tmp_path, progress=False)
    assert toy_pretrain.PRETRAIN_RUNS == no_pretraining
    # another seed is not what ships: it takes the pretrain-on-demand path
    with pytest.raises(AssertionError, match="pretrain"):
        toy_pretrain.load_pretrained(tmp_path, seed=1, progress=False)


def test_the_tag_resolves_through_the_entry_point(tmp_path, monkeypatch, no_pretraining):
    """The core CLIP loader knows no toy tag: ``deft-toy`` comes from the package's entry point."""
    monkeypatch.setattr(clip, "PRETRAINED_TAGS", {})
    resolve = clip._local_tag_resolver("deft-toy")
    assert resolve is shipped.resolve_weights
    assert clip._local_tag_resolver("no-such-tag") is None
    path = resolve(str(tmp_path))
    assert path.endswith("open_clip_model.safetensors")
    assert resolve(str(tmp_path)) == path  # expanded once, then reused


def test_a_damaged_shipped_file_is_a_weights_error(tmp_path, monkeypatch):
    bad = tmp_path / "deft-toy-clip-s0.safetensors"
    bad.write_bytes(shipped.SHIPPED_FILE.read_bytes()[:1000])
    monkeypatch.setattr(shipped, "SHIPPED_FILE", bad)
    with pytest.raises(clip.WeightsUnavailableError, match="deft-toy-clip-s0.safetensors"):
        shipped.resolve_weights(tmp_path / "cache")


def test_core_clip_module_does_not_import_the_toy_world():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(clip))
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and "toy" in m], imported


def _rerun_is_the_shipped_model(monkeypatch, tmp_path, v2_shift: float):
    """`make toy-pretrain` with the shipped weights standing in for the re-run and v2 values shifted by ``v2_shift``."""
    from deft_lightning.toy import properties

    expanded = shipped.resolve_weights(tmp_path / "cache")
    monkeypatch.setattr(toy_pretrain, "ensure_pretrained", lambda *a, **k: expanded)
    recorded_v2 = json.loads(shipped.SHIPPED_V2_META.read_text(encoding="utf-8"))["properties"]
    fresh = {k: recorded_v2[k] + v2_shift for k in shipped.V2_PROPERTIES}
    monkeypatch.setattr(properties, "read_dataset", lambda *a, **k: None)
    monkeypatch.setattr(properties, "measure_properties", lambda *a, **k: fresh)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep this test process's threads


def test_toy_pretrain_reports_every_property_and_passes_when_they_reproduce(tmp_path, monkeypatch, capsys):
    _rerun_is_the_shipped_model(monkeypatch, tmp_path, v2_shift=0.9)
    out = tmp_path / "check.json"
    assert shipped.main(["--cache-dir", str(tmp_path / "cache"), "--reuse", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for key in ("zero_shot_test_pct", *shipped.V2_PROPERTIES):
        assert key in printed
    assert "toy_v2 targets (zero_shot_pct 55-70, linear_probe_pct 85-100, clean_finetune_pct 90-100): met" in printed
    record = json.loads(out.read_text())
    assert record["reproduced"] and record["v2_targets_met"] and len(record["rows"]) == 5
    # the v1 zero-shot of the shipped weights themselves is the recorded one exactly
    assert record["rows"][0]["difference"] == 0


def test_toy_pretrain_fails_when_a_property_is_more_than_a_point_off(tmp_path, monkeypatch, capsys):
    _rerun_is_the_shipped_model(monkeypatch, tmp_path, v2_shift=-1.2)
    assert shipped.main(["--cache-dir", str(tmp_path / "cache"), "--reuse"]) == 1
    assert "NOT reproduced" in capsys.readouterr().out
