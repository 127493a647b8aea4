"""MGDA-UB (Sener & Koltun, NeurIPS 2018, Sec. 3.3): MGDA on the shared representation.

The paper's upper bound: instead of the gradients w.r.t. the shared parameters, use the gradients
w.r.t. the shared representation ``Z`` (here the pooled backbone features ``[B, D]``, so one row
of the Jacobian has ``B*D`` entries and only the heads are differentiated per task). Same exact
float64 min-norm solve as :mod:`mgda`: ``a* = argmin_{a in simplex} a^T G a``, ``G = J_Z J_Z^T``;
the backbone then receives ``sum_t a*_t dL_t/dZ`` through one backward pass. Weights sum to 1.
"""

from __future__ import annotations

from mtlbench.weighting.base import GradientNeed
from mtlbench.weighting.mgda import MGDA
from mtlbench.weighting.registry import register


@register
class MGDAUB(MGDA):
    name = "mgda_ub"
    needs = GradientNeed.REPRESENTATION
    paper = "Sener & Koltun, NeurIPS 2018 (MGDA-UB)"
    summary = "MGDA on the gradients of the shared representation"
