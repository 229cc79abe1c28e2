"""Presets for [Z] Zeno et al., *When Diffusion Models Memorize* (ICML 2025): minimum-norm
shallow ReLU denoisers, their score and probability flows, and virtual-point stability."""

PRESETS: tuple = ()
