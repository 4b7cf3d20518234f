"""Clean-sample selection rules: dual prompt, label-match, small-loss, GMM."""
