"""Losses chosen by `conf/loss/*.yaml`: multi-class (imbalance-aware), multi-label, and the
soft-target forms MixUp/CutMix need."""
