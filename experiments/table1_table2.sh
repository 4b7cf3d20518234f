#!/usr/bin/env bash
# Tables 1 and 2 of the paper: synthetic noise on CIFAR-100, Tiny-ImageNet, Stanford-Cars, CUB-200-2011.
#   Table 1: clean-sample selection precision / recall (DEFT, label-match, small-loss)
#   Table 2: test accuracy best / last (DEFT and the CE, GCE, SCE, ELR, GMM baselines)
# Usage: experiments/table1_table2.sh [dataset ...]      (default: all four)
# Then:  python -m deft_lightning.aggregate outputs/paper/table1_2 --paper
source "$(dirname "$0")/common.sh"
DATASETS=("$@")
[[ ${#DATASETS[@]} -gt 0 ]] || DATASETS=(cifar100 tiny_imagenet stanford_cars cub200)
OUT="$ROOT/table1_2"

for ds in "${DATASETS[@]}"; do
  for noise in "sym 0.2,0.4,0.6" "idn 0.2,0.3,0.4"; do
    read -r mode ratios <<< "$noise"
    # DEFT: phase 1 (Table 1 row "DEFT") then phase 2 on the clean subset (Table 2 row "DEFT")
    train -m "experiment=paper/$ds" "noise=$mode" "noise.ratio=$ratios" resume=true \
      "hydra.sweep.dir=$OUT/$ds/$mode/deft"
    # Table 1 baselines: zero-shot label-match and small-loss (oracle forget rate, as the reference)
    detect -m "experiment=paper/$ds" "noise=$mode" "noise.ratio=$ratios" detector=label_match,small_loss \
      resume=true "hydra.sweep.dir=$OUT/$ds/$mode/detectors"
    # Table 2 baselines: trained on every given label, no phase 1
    train -m "experiment=paper/$ds" "noise=$mode" "noise.ratio=$ratios" "phases=[adapt]" \
      method=ce,gce,sce,elr,gmm resume=true "hydra.sweep.dir=$OUT/$ds/$mode/baselines"
  done
done
aggregate "$OUT"
