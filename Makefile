# The README's two set-up commands: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline

.PHONY: run run-v2 test test-fast test-lowest test-lowest-subset lowest-venv bench install clean toy-table toy-pretrain toy-properties

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Re-install whenever the project metadata changes; the package is installed editable.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[test,parquet,wandb]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m deft_lightning.train experiment=toy

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# The fast tests on the declared lowest versions (pyproject.toml), in a fresh venv of their own (.ci/run runs it
# after `make test`). A non-editable `pip install .` (so package data - configs, class names, the shipped toy
# weights - must ship), resolved together with the pins, so pip checks the declared floors against them.
# The torch pair comes from PyPI (CUDA 12 builds, ~3 GB with their nvidia packages);
# LOWEST_PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu" takes PyTorch's CPU wheels instead,
# where that index is reachable. pytest runs against the installed copy (checked first: not from src/).
LOWEST := torch==2.6.0 torchvision==0.21.0 lightning==2.6.0 open_clip_torch==3.0.0 timm==1.0.21 peft==0.18.0 hydra-core==1.3.2 omegaconf==2.3.0
LOWEST_PIP_ARGS ?=
LOW_VENV ?= build/venv-lowest
LOW_PY := $(LOW_VENV)/bin/python
LOW_STAMP := $(LOW_VENV)/.installed
LOWEST_PYTEST ?= -q -m "not slow" -p no:cacheprovider --durations=10

# Built from a copy of the sources (build/lowest-src), so setuptools' build files never meet the working tree's
# (.ci/run builds this while `make test` runs; tests install the checkout too) and no stale build/lib ships.
LOW_SRC := build/lowest-src
$(LOW_STAMP): pyproject.toml Makefile
	rm -rf $(LOW_VENV) $(LOW_SRC)
	mkdir -p $(LOW_SRC)
	cp pyproject.toml README.md $(LOW_SRC)/
	$(PYTHON) -c "import shutil; shutil.copytree('src', '$(LOW_SRC)/src', ignore=shutil.ignore_patterns('*.egg-info', '__pycache__'))"
	$(PYTHON) -m venv $(LOW_VENV)
	$(LOW_PY) -m pip install -q --upgrade pip "setuptools>=77" wheel  # the build backend: test_cli builds the checkout without isolation
	$(LOW_PY) -m pip install -q $(LOWEST_PIP_ARGS) $(LOWEST) "./$(LOW_SRC)[test,parquet,wandb]"
	touch $(LOW_STAMP)

lowest-venv: $(LOW_STAMP)

test-lowest: $(LOW_STAMP)
	cd tests && $(abspath $(LOW_PY)) -c "import sys, deft_lightning as d; from pathlib import Path; f = Path(d.__file__).resolve(); print('deft_lightning from', f); sys.exit(f'imported from the source tree, not the install: {f}' if Path('../src').resolve() in f.parents else 0)"
	$(LOW_PY) -m pip check
	DEFT_EXPECT_INSTALLED=1 $(LOW_PY) -m pytest $(LOWEST_PYTEST) $(LOWEST_TESTS)

# What CI runs on the lowest set (.ci/run): the fast tests of the code that meets the libraries whose floors
# are declared - torch and the losses/gradients (exactness), open_clip (text encoder, prompts, zero-shot), peft
# (visual PEFT), timm (backbones, weights, transforms), hydra/omegaconf (configs, schemas), Lightning (the demo's
# two phases end to end) - and the packaging checks: 246 tests, 91 s on the quiet 2-core build machine. The whole
# fast suite on the lowest set (`make test-lowest`) took 9:15 there, too long for CI beside `make test`.
LOWEST_SUBSET := tests/test_exactness.py tests/test_dual_prompt_loss.py tests/test_robust_losses.py \
	tests/test_visual_peft.py tests/test_text_encoder.py tests/test_prompt_options.py tests/test_detector_gradients.py \
	tests/test_timm_backbones.py tests/test_zero_shot.py tests/test_packaging.py tests/test_end_to_end.py \
	tests/test_configs.py tests/test_layers.py
test-lowest-subset:
	$(MAKE) test-lowest LOWEST_TESTS="$(LOWEST_SUBSET)"

bench: $(STAMP)
	$(PY) -m benchmarks.run

# Toy world v2 (40 colour-shape classes): DEFT with the paper's phase-1 settings but the toy CLIP's own logit
# scale (see README "Toy world v2").
run-v2: $(STAMP)
	$(PY) -m deft_lightning.train experiment=toy_v2

# Zero-shot, linear-probe and clean fine-tuning accuracy of the shipped toy CLIP on toy world v2.
toy-properties: $(STAMP)
	$(PY) -m deft_lightning.toy.properties --model deft-toy --dataset toy_v2

# The toy table on world v2: its properties, then 5 detectors/methods x 5 noise settings x 3 seeds (resumable;
# outputs/toy_table/toy_v2), one run per core at a time (--jobs N --threads T to choose).
toy-table: $(STAMP)
	$(PY) -m deft_lightning.experiments.toy_table

# Re-run the shipped toy CLIP's recorded pretraining recipe from scratch (into the cache) and print its
# properties (v1 zero-shot; toy_v2 zero-shot, linear probe, clean fine-tuning) beside the shipped ones
# (toy/weights/deft-toy-clip-s0*.json); exits 1 if any is more than 1 point off.
toy-pretrain: $(STAMP)
	$(PY) -m deft_lightning.toy.shipped

clean:
	rm -rf outputs .pytest_cache build *.egg-info src/*.egg-info $(LOW_VENV) $(LOW_SRC)
