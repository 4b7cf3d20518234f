# The README's two set-up commands: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline

.PHONY: run test test-fast test-lowest bench install clean toy-table toy-pretrain

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

# The fast tests on the declared lowest versions (pyproject.toml), in a fresh venv of their own.
# Not part of `make test` / .ci/run: about 4 min to install here (torch 2.6.0 CUDA wheels and their nvidia packages), see the README.
LOWEST := torch==2.6.0 torchvision==0.21.0 lightning==2.6.0 open_clip_torch==3.0.0 timm==1.0.21 peft==0.18.0 hydra-core==1.3.2 omegaconf==2.3.0
LOW_VENV ?= build/venv-lowest
test-lowest:
	$(PYTHON) -m venv $(LOW_VENV)
	$(LOW_VENV)/bin/python -m pip install -q $(LOWEST) ".[test,parquet,wandb]"
	$(LOW_VENV)/bin/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) -m benchmarks.run

toy-table: $(STAMP)
	$(PY) -m deft_lightning.experiments.toy_table

# Re-run the shipped toy CLIP's recorded pretraining recipe from scratch (into the cache) and print its
# properties beside the shipped ones (src/deft_lightning/toy/weights/deft-toy-clip-s0.json).
toy-pretrain: $(STAMP)
	$(PY) -m deft_lightning.toy.shipped

clean:
	rm -rf outputs .pytest_cache build *.egg-info src/*.egg-info $(LOW_VENV)
