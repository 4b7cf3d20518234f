#!/usr/bin/env bash
# Table 3 of the paper: real-world noisy labels (CIFAR-100N, Clothing1M, mini-WebVision), DEFT vs CE.
# WebVision reports two test sets (WebVision val and ImageNet val): both appear as rows.
# Usage: experiments/table3_real_noise.sh [dataset ...]   (default: cifar100n clothing1m webvision)
# Then:  python -m deft_lightning.aggregate outputs/paper/table3 --paper
source "$(dirname "$0")/common.sh"
DATASETS=("$@")
[[ ${#DATASETS[@]} -gt 0 ]] || DATASETS=(cifar100n clothing1m webvision)
OUT="$ROOT/table3"

for ds in "${DATASETS[@]}"; do
  train -m "experiment=paper/$ds" resume=true "hydra.sweep.dir=$OUT/$ds/deft"
  train -m "experiment=paper/$ds" "phases=[adapt]" method=ce resume=true "hydra.sweep.dir=$OUT/$ds/ce"
done
aggregate "$OUT"
