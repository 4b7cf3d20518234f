#!/usr/bin/env bash
# The paper's backbone table: phase 2 with ResNet-50, ViT-B/16, ConvNeXt-T, MAE-ViT-B on Clothing1M,
# DEFT (clean subset) vs CE (all noisy labels). Phase 1 does not depend on the phase-2 backbone, so it
# runs once and every DEFT job reuses its selection (adapter.selection=...).
# Usage: experiments/backbones_clothing1m.sh
# Then:  python -m deft_lightning.aggregate outputs/paper/backbones --paper
source "$(dirname "$0")/common.sh"
OUT="$ROOT/backbones"
BACKBONES=resnet50,vit_b16,convnext_t,mae_vit_b

# -m even for one job, so that LAUNCH's cluster launcher applies to it too
detect -m experiment=paper/clothing1m resume=true "hydra.sweep.dir=$OUT/detection" hydra.sweep.subdir=deft
train -m experiment=paper/clothing1m "phases=[adapt]" method=deft "backbone=$BACKBONES" \
  "adapter.selection=$OUT/detection/deft/detection/selection.csv" resume=true "hydra.sweep.dir=$OUT/deft"
train -m experiment=paper/clothing1m "phases=[adapt]" method=ce "backbone=$BACKBONES" \
  resume=true "hydra.sweep.dir=$OUT/ce"
aggregate "$OUT"
