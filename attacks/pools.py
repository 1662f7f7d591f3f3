"""Attacker data pools that are natural-looking but not the victim's training distribution."""

from __future__ import annotations

import numpy as np


def image_patch_pool(n: int, rng: np.random.Generator, size: int = 8) -> np.ndarray:
    """``n`` random ``size x size`` grayscale patches of scikit-learn's sample photos,
    downsampled 4x and scaled to 0..16 like the digits data (shape ``(n, size**2)``)."""
    from sklearn.datasets import load_sample_images

    patches = []
    images = load_sample_images().images
    per_image = np.bincount(rng.integers(len(images), size=n), minlength=len(images))
    for img, m in zip(images, per_image, strict=True):
        gray = img.mean(axis=2)
        h, w = (gray.shape[0] // 4) * 4, (gray.shape[1] // 4) * 4
        small = gray[:h, :w].reshape(h // 4, 4, w // 4, 4).mean(axis=(1, 3))
        rows = rng.integers(0, small.shape[0] - size, size=m)
        cols = rng.integers(0, small.shape[1] - size, size=m)
        idx_r = rows[:, None, None] + np.arange(size)[None, :, None]
        idx_c = cols[:, None, None] + np.arange(size)[None, None, :]
        patches.append(small[idx_r, idx_c].reshape(m, -1))
    pool = np.concatenate(patches)[rng.permutation(n)]
    lo, hi = pool.min(axis=1, keepdims=True), pool.max(axis=1, keepdims=True)
    return 16.0 * (pool - lo) / np.where(hi > lo, hi - lo, 1.0)


def tabular_pool(victim, n: int, rng: np.random.Generator) -> np.ndarray:
    """A realistic off-distribution pool for a tabular victim: half records whose
    features are resampled independently from the public marginals (correlations
    broken), half Gaussian with the public mean and twice its covariance; clipped
    to the feature box."""
    public = victim.X_public
    half = n // 2
    shuffled = marginals_pool(public, half, rng)
    cov = np.cov(public, rowvar=False) * 2.0
    gauss = rng.multivariate_normal(public.mean(axis=0), cov, size=n - half,
                                    method="eigh")
    pool = np.vstack([shuffled, gauss])[rng.permutation(n)]
    return np.clip(pool, victim.lower, victim.upper)


def marginals_pool(X_public: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows whose features are drawn independently from the empirical marginals of
    ``X_public``: every value is a real value of its feature, the correlations are gone.

    >>> X = np.array([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0]])
    >>> P = marginals_pool(X, 4, np.random.default_rng(0))
    >>> bool(np.isin(P[:, 0], X[:, 0]).all() and np.isin(P[:, 1], X[:, 1]).all())
    True
    """
    d = X_public.shape[1]
    return X_public[rng.integers(len(X_public), size=(n, d)), np.arange(d)]


def in_distribution_pool(X_public: np.ndarray, n: int, rng: np.random.Generator,
                         jitter: float = 0.0, box: tuple | None = None) -> np.ndarray:
    """``n`` real public records: a random order of all of them (without replacement) as
    far as they go, then records drawn with replacement; those repeats get Gaussian
    jitter of ``jitter`` x each feature's public std (clipped to ``box`` when given).

    >>> X = np.arange(6.0).reshape(3, 2)
    >>> P = in_distribution_pool(X, 5, np.random.default_rng(0))
    >>> len({r.tobytes() for r in P[:3]}), bool(np.isin(P, X).all())
    (3, True)
    """
    first = rng.permutation(len(X_public))[:n]
    extra = rng.integers(len(X_public), size=max(0, n - len(X_public)))
    X = X_public[np.concatenate([first, extra])]
    if jitter > 0 and len(extra):
        X[len(first):] += jitter * X_public.std(axis=0) * rng.normal(size=(len(extra),
                                                                           X.shape[1]))
        if box is not None:
            X = np.clip(X, *box)
    return X


def natural_pool(victim, n: int, rng: np.random.Generator) -> np.ndarray:
    """Image patches for the digits victims (64 features), a tabular pool otherwise."""
    if victim.n_features == 64 and victim.name.startswith("digits"):
        return image_patch_pool(n, rng)
    return tabular_pool(victim, n, rng)
