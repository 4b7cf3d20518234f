"""Oracle-free small-loss selection: a two-component GMM on per-sample losses (DivideMix style).

Used by the `gmm` training baseline (refit every epoch after warm-up, SPEC §4) and by the
small-loss detection baseline's oracle-free variant. Clean samples are fitted early, so their
losses form the low-mean mode; the posterior of that mode is the clean probability.
"""

from __future__ import annotations

import numpy as np
from sklearn.mixture import GaussianMixture

__all__ = ["gmm_clean_mask"]

# DivideMix's settings: a short, loose fit is enough to split two modes and keeps the refit cheap.
_MAX_ITER = 10
_TOL = 1e-2
_REG_COVAR = 5e-4


def gmm_clean_mask(
    per_sample_losses: np.ndarray, seed: int = 0, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Return (is_clean bool mask, clean posterior) for a 1-D array of per-sample losses.

    Losses are min-max normalised so the fixed `reg_covar` means the same thing whatever the loss
    scale. Degenerate input -- fewer than two samples or all losses equal -- has no second mode to
    find; every sample is then called clean (posterior 1), because the alternative, discarding all
    of them, would leave phase 2 nothing to train on, and equal losses give no evidence against any.
    """
    losses = np.asarray(per_sample_losses, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(losses)):
        bad = np.flatnonzero(~np.isfinite(losses))
        raise ValueError(
            f"gmm_clean_mask got {bad.size} non-finite losses (first at positions {bad[:5].tolist()}); "
            "the per-sample loss pass diverged or produced NaN."
        )
    low, high = (losses.min(), losses.max()) if losses.size else (0.0, 0.0)
    span = high - low
    if losses.size < 2 or span <= 1e-12 * max(1.0, abs(high)):
        return np.ones(losses.size, dtype=bool), np.ones(losses.size, dtype=np.float64)

    normalised = ((losses - low) / span)[:, None]
    gmm = GaussianMixture(
        n_components=2, max_iter=_MAX_ITER, tol=_TOL, reg_covar=_REG_COVAR, random_state=seed
    )
    gmm.fit(normalised)
    clean_component = int(np.argmin(gmm.means_.reshape(-1)))
    posterior = gmm.predict_proba(normalised)[:, clean_component]
    return posterior > threshold, posterior
