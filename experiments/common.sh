# Shared by the recipes: where sweeps go, how they are launched, and a dry-run switch.
#   DEFT_PAPER_DIR   root of all paper sweeps            (default: outputs/paper)
#   LAUNCH           extra overrides for every command, e.g. "hydra/launcher=slurm trainer=ddp_slurm"
#   PYTHON           interpreter with deft_lightning installed (default: python)
#   DRY_RUN=1        print the commands instead of running them
set -euo pipefail
ROOT="${DEFT_PAPER_DIR:-outputs/paper}"
PYTHON="${PYTHON:-python}"
read -r -a LAUNCH_ARGS <<< "${LAUNCH:-}"

run() {
  echo "+ $*"
  if [[ -z "${DRY_RUN:-}" ]]; then "$@"; fi
}

# (the ${a[@]+...} form keeps `set -u` quiet about an empty LAUNCH on older bash)
train() { run "$PYTHON" -m deft_lightning.train "$@" ${LAUNCH_ARGS[@]+"${LAUNCH_ARGS[@]}"}; }
detect() { run "$PYTHON" -m deft_lightning.detect "$@" ${LAUNCH_ARGS[@]+"${LAUNCH_ARGS[@]}"}; }
aggregate() { run "$PYTHON" -m deft_lightning.aggregate "$1" --paper --online; }
