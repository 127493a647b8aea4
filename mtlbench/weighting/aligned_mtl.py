"""Aligned-MTL-UB (Senushkin et al., "Independent Component Alignment for Multi-Task Learning",
CVPR 2023): Aligned-MTL on the shared representation (the paper's "-UB" form).

With ``G = J J^T = V diag(lambda) V^T`` (J: task gradients w.r.t. the representation, rank r,
eigenpairs restricted to the non-zero eigenvalues), the aligned gradients are
``J_hat = sqrt(lambda_min) * V diag(lambda)^(-1/2) V^T J``: the task directions are made
orthogonal with equal norms ``sqrt(lambda_min)`` (condition number 1). The update is
``d = J_hat^T w`` with task weights ``w = 1`` (the official code's ``B.sum(0)``; torchjd's
default pref vector is 1/T, T times smaller), i.e. effective weights
``a = sqrt(lambda_min) V diag(lambda)^(-1/2) V^T 1`` (reported).

Native float64 (it wrapped torchjd's ``AlignedMTLWeighting`` before): the eigenvalues come from
Jacobi rotations (:func:`mtlbench.weighting._linalg.jacobi_eigh`), accurate to a relative
``eps * cond`` of the unit-diagonal Gramian, where ``eigh`` (torchjd, LibMTL) loses the small
eigenvalue entirely once gradient norms span 1e-4..1e4 (measured in ``docs/strategies.md``).
"Non-zero" is decided per eigenpair relative to the norms of the gradients it combines
(:func:`mtlbench.weighting._linalg.numerical_range`, tolerance 1e-10): a dependency among the
rows that is exact up to float32 rounding is rank deficiency, a small task is not. Aligned-MTL
is discontinuous there by definition (``lambda_min`` jumps), so the tolerance is part of the
method. Two opposite rows give weights (0, 0): their range has rank 1 and ``V^T 1 = 0``.
"""

from __future__ import annotations

import numpy as np
import torch

from mtlbench.weighting._linalg import numerical_range
from mtlbench.weighting.base import GradientNeed, Strategy
from mtlbench.weighting.registry import register


def aligned_weights(gram: np.ndarray) -> np.ndarray:
    """Effective Aligned-MTL weights ``sqrt(lambda_min) V diag(lambda)^(-1/2) V^T 1``."""
    values, vectors = numerical_range(gram)
    if len(values) == 0:  # every task gradient is zero
        return np.zeros(len(gram))
    coef = vectors.T @ np.ones(len(gram)) / np.sqrt(values)
    return float(np.sqrt(values[0])) * (vectors @ coef)


@register
class AlignedMTL(Strategy):
    name = "aligned_mtl"
    needs = GradientNeed.REPRESENTATION
    paper = "Senushkin et al., CVPR 2023 (Aligned-MTL-UB)"
    summary = "task gradients aligned to an orthogonal, equal-norm system"
    weights_from_gramian = True

    def gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(aligned_weights(gram.numpy()), dtype=torch.float32)
