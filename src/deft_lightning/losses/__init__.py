"""Loss functions: DEFT's dual-prompt objective and the noisy-label training baselines."""
