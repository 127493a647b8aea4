"""References for the methods defined by equations or an explicit procedure: IMTL-G,
Aligned-MTL, PCGrad, GradVac (60-digit arithmetic on the exact Gramian)."""

from __future__ import annotations

import mpmath as mp

from tests.exact_reference.exact import TINY, gdot, quad, sub

RANK_TOL = mp.mpf("1e-10")  # Aligned-MTL's numerical rank: part of that method's definition


def imtl_g(gram: mp.matrix) -> tuple[list | None, bool]:
    """IMTL-G's defining system on the non-zero rows: ``sum_t a_t = 1`` and equal projections
    ``(G a)_t / ||g_t|| = lambda``. Returns ``(a, zero)``: the weights of the solution (``a``
    None when the system has none) and whether ``d = 0`` solves it (then the method returns
    ``d = 0``; it is the unique ``d`` unless the rows are dependent in a special way)."""
    n = gram.rows
    live = [t for t in range(n) if gram[t, t] > 0]
    weights = [mp.mpf(0)] * n
    if not live:
        return weights, True
    k = len(live)
    norms = [mp.sqrt(gram[t, t]) for t in live]
    g = sub(gram, live, live)
    # the null space of G (in the live rows): d = 0 solves the system iff a null vector has a
    # non-zero sum
    _, s, v = mp.svd_r(g)
    null = [j for j in range(k) if s[j] <= TINY * s[0]]
    if null:
        sums = [mp.fsum(v[j, i] for i in range(k)) for j in null]
        if max(abs(x) for x in sums) > mp.mpf(10) ** -20:
            norm2 = mp.fsum(x**2 for x in sums)
            for idx, t in enumerate(live):
                weights[t] = mp.fsum(sums[m] * v[j, idx] for m, j in enumerate(null)) / norm2
            return weights, True
    system = mp.matrix(k + 1, k + 1)
    for i in range(k):
        for j in range(k):
            system[i, j] = g[i, j] / norms[i]
        system[i, k] = -1
        system[k, i] = 1
    rhs = mp.matrix([0] * k + [1])
    u2, s2, v2 = mp.svd_r(system)
    # least-norm solution through the pseudo-inverse; checked for consistency below
    sol = [mp.mpf(0)] * (k + 1)
    for j in range(k + 1):
        if s2[j] > TINY * s2[0]:
            coef = mp.fsum(u2[i, j] * rhs[i] for i in range(k + 1)) / s2[j]
            for i in range(k + 1):
                sol[i] += coef * v2[j, i]
    residual = max(
        abs(mp.fsum(system[i, j] * sol[j] for j in range(k + 1)) - rhs[i]) for i in range(k + 1)
    )
    if residual > mp.mpf(10) ** -30:
        return None, False
    for idx, t in enumerate(live):
        weights[t] = sol[idx]
    return weights, False


def aligned(gram: mp.matrix) -> list:
    """Aligned-MTL-UB weights ``sqrt(lambda_min) V diag(lambda)^-1/2 V^T 1`` over the
    eigenpairs with ``lambda > RANK_TOL sum_t v_t^2 G_tt``."""
    n = gram.rows
    values, vectors = mp.eigsy(gram)
    top = max(gram[t, t] for t in range(n))
    kept = []
    for j in range(n):
        scale = mp.fsum(vectors[t, j] ** 2 * gram[t, t] for t in range(n))
        if values[j] > RANK_TOL * scale and values[j] > TINY * top:
            kept.append(j)
    if not kept:
        return [mp.mpf(0)] * n
    low = min(values[j] for j in kept)
    out = [mp.mpf(0)] * n
    for j in kept:
        coef = mp.fsum(vectors[t, j] for t in range(n)) / mp.sqrt(values[j])
        for t in range(n):
            out[t] += mp.sqrt(low) * vectors[t, j] * coef
    return out


def pcgrad(gram: mp.matrix, orders: list[list[int]]) -> list:
    """Algorithm 1 of Yu et al. on the rows' coefficients: ``g_i^PC = sum_k C_ik g_k`` exactly,
    so every dot product is a 60-digit quadratic form of the exact Gramian."""
    n = gram.rows
    total = [mp.mpf(0)] * n
    for i in range(n):
        coef = [mp.mpf(1) if t == i else mp.mpf(0) for t in range(n)]
        for j in orders[i]:
            dot = gdot(gram, coef)[j]
            if dot < 0 and gram[j, j] > 0:
                coef[j] -= dot / gram[j, j]
        total = [a + b for a, b in zip(total, coef, strict=True)]
    return total


def gradvac(
    gram: mp.matrix, targets: list[list[float]], orders: list[list[int]], beta: float
) -> tuple[list, list[list]]:
    """GradVac (Wang et al. 2021, Alg. 1): if ``cos(g_i', g_j) < phihat_ij``, add the multiple
    of ``g_j`` that makes the cosine exactly ``phihat_ij`` (asserted here in 60 digits); then
    ``phihat_ij <- (1 - beta) phihat_ij + beta cos``. Returns the summed coefficients and the
    new targets."""
    n = gram.rows
    new = [[mp.mpf(x) for x in row] for row in targets]
    total = [mp.mpf(0)] * n
    for i in range(n):
        coef = [mp.mpf(1) if t == i else mp.mpf(0) for t in range(n)]
        for j in orders[i]:
            norm_i = mp.sqrt(max(quad(gram, coef), 0))
            norm_j = mp.sqrt(gram[j, j])
            size = mp.fsum(abs(coef[k]) * mp.sqrt(gram[k, k]) for k in range(n))
            # g_i' = 0 (up to 1e-30 from sqrt(1 - phi^2) of a 1e-60 round-off): no cosine
            if norm_i <= mp.mpf(10) ** -20 * size or norm_j == 0:
                continue
            phi = max(-1, min(1, gdot(gram, coef)[j] / (norm_i * norm_j)))
            target = new[i][j]
            if phi < target and abs(target) < 1:
                add = (
                    norm_i
                    * (target * mp.sqrt(1 - phi**2) - phi * mp.sqrt(1 - target**2))
                    / (norm_j * mp.sqrt(1 - target**2))
                )
                coef[j] += add
                if 1 - phi**2 > TINY:  # not parallel: the new cosine is exactly the target
                    after = gdot(gram, coef)[j] / (mp.sqrt(quad(gram, coef)) * norm_j)
                    assert abs(after - target) < mp.mpf(10) ** -30, "GradVac's correction"
            new[i][j] = (1 - mp.mpf(beta)) * target + mp.mpf(beta) * phi
        total = [a + b for a, b in zip(total, coef, strict=True)]
    return total, new
