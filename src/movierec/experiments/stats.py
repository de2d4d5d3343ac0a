"""The statistics of online experiments: intervals, tests, sample-ratio mismatch, sequential.

All by formula (tested against hand arithmetic): Wilson score intervals; the pooled
two-proportion z-test; Pearson's chi-square of assignment counts against the configured split
(sample-ratio mismatch); an always-valid p-value from the normal-mixture sequential probability
ratio test (mSPRT, Johari et al. 2017) on the difference of two proportions, safe to look at
every hour; the two-sided sign test for interleaving preferences.
"""

from __future__ import annotations

import math

from scipy import stats as st

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (``(0, 1)`` when ``n`` is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float, float]:
    """``(p2 - p1, z, two-sided p)`` of the pooled two-proportion z-test."""
    if n1 == 0 or n2 == 0:
        return 0.0, 0.0, 1.0
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return p2 - p1, 0.0, 1.0
    z = (p2 - p1) / se
    return p2 - p1, z, float(2 * st.norm.sf(abs(z)))


def srm(counts: list[int], shares: list[float]) -> tuple[float, float]:
    """Chi-square statistic and p-value of observed assignment counts vs expected shares."""
    total = sum(counts)
    if total == 0:
        return 0.0, 1.0
    norm = sum(shares)
    chi2 = sum(
        (c - total * s / norm) ** 2 / (total * s / norm)
        for c, s in zip(counts, shares, strict=True)
        if s > 0
    )
    dof = max(sum(1 for s in shares if s > 0) - 1, 1)
    return chi2, float(st.chi2.sf(chi2, dof))


def msprt_p(x1: int, n1: int, x2: int, n2: int, tau: float = 0.05) -> float:
    """Always-valid p-value for ``p2 != p1`` (normal-mixture SPRT with mixing sd ``tau``).

    ``Λ = sqrt(V / (V + τ²)) · exp(θ̂² τ² / (2 V (V + τ²)))`` with ``θ̂ = p2 - p1`` and ``V``
    its variance; the p-value is ``min(1, 1/Λ)``. Taking the running minimum over looks keeps
    the type-I error at the nominal level however often one looks.
    """
    if n1 == 0 or n2 == 0:
        return 1.0
    p1, p2 = x1 / n1, x2 / n2
    v = p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2
    if v <= 0:
        return 1.0
    return msprt_from(p2 - p1, v, tau)


def sign_test(wins_a: int, wins_b: int) -> float:
    """Two-sided p-value that A and B win equally often (ties left out)."""
    n = wins_a + wins_b
    if n == 0:
        return 1.0
    return float(st.binomtest(wins_a, n, 0.5).pvalue)


def mean_diff(a: list[float], b: list[float]) -> tuple[float, float, float, float]:
    """``(mean(b) - mean(a), its variance, z, two-sided p)`` (Welch, normal approximation)."""
    if len(a) < 2 or len(b) < 2:
        return 0.0, 0.0, 0.0, 1.0
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1)
    v = va / len(a) + vb / len(b)
    if v <= 0:
        return mb - ma, 0.0, 0.0, 1.0
    z = (mb - ma) / math.sqrt(v)
    return mb - ma, v, z, float(2 * st.norm.sf(abs(z)))


def msprt_from(theta: float, v: float, tau: float = 0.05) -> float:
    """Always-valid p-value of an estimate ``theta`` with variance ``v`` (normal mixture)."""
    if v <= 0:
        return 1.0
    t2 = tau * tau
    log_lambda = 0.5 * math.log(v / (v + t2)) + theta * theta * t2 / (2 * v * (v + t2))
    return float(min(1.0, math.exp(-log_lambda)))
