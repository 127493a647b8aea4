"""Measure each gradient method (and torchjd 0.18's peers) against the 60-digit references of
``tests/exact_reference`` in the regimes of issue 10; prints a Markdown table of the worst
relative error ``||d - d_ref|| / ||d_ref||`` (floor-limited cases shown as <= floor).

    PYTHONPATH=$PWD python experiments/exactness.py [--seeds 8] [--peers]

Run it with another checkout first on PYTHONPATH to measure that checkout's strategies (the
references are always this checkout's)."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

import mtlbench.weighting  # noqa: F401  (first: the checkout on PYTHONPATH is measured)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's references

from tests.exact_reference import convex, equations
from tests.exact_reference.checks import combine, create
from tests.exact_reference.exact import exact_gram, floor, to_np
from tests.exact_reference.regimes import REGIMES, make_case

METHODS = ("mgda", "upgrad", "cagrad", "nash_mtl", "imtl", "aligned_mtl")


def reference(name: str, gram) -> np.ndarray | None:
    if name == "mgda":
        return to_np(convex.min_norm(gram))
    if name == "upgrad":
        return to_np(convex.upgrad(gram))
    if name == "cagrad":
        b, _ = convex.cagrad(gram, 0.4)
        return None if b is None else to_np(b)
    if name == "nash_mtl":
        a = convex.nash(gram, None)
        return None if a is None else to_np(a)
    if name == "imtl":
        a, zero = equations.imtl_g(gram)
        return None if a is None else (np.zeros(gram.rows) if zero else to_np(a))
    return to_np(equations.aligned(gram))


def peer(name: str, gram64: torch.Tensor) -> np.ndarray | None:
    from torchjd import aggregation as agg

    n = gram64.shape[0]
    try:
        if name == "mgda":
            w = agg.MGDAWeighting()(gram64)
        elif name == "upgrad":
            w = agg.UPGradWeighting()(gram64)
        elif name == "cagrad":
            w = agg.CAGradWeighting(c=0.4)(gram64)
        elif name == "imtl":
            w = agg.IMTLGWeighting()(gram64)
        elif name == "aligned_mtl":
            w = agg.AlignedMTLWeighting(pref_vector=torch.ones(n, dtype=gram64.dtype))(gram64)
        else:
            return None
    except Exception as exc:
        print(f"  {name}: torchjd raised {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    return w.double().numpy()


def rel_error(rows: np.ndarray, got: np.ndarray, want: np.ndarray, scale: str) -> float:
    d, r = got @ rows, want @ rows
    if scale == "fit" and d @ d > 0:  # torchjd's CAGrad/UPGrad conventions differ by a factor
        d = d * float(d @ r) / float(d @ d)
    # 0 when within the float32 rounding floor of the tests, else relative to ||d_ref||
    err = float(np.linalg.norm(d - r))
    if err <= floor(rows, want, got):
        return 0.0
    return err / float(np.linalg.norm(r)) if np.linalg.norm(r) > 0 else np.inf


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--peers", action="store_true", help="torchjd 0.18 instead of mtlbench")
    args = parser.parse_args()
    worst: dict[tuple[str, str], float] = {}
    for regime in REGIMES:
        for seed in range(args.seeds):
            case = make_case(regime, args.tasks, args.width, seed)
            gram = exact_gram(case.rows)
            rows = case.rows.astype(np.float64)
            for name in METHODS:
                want = reference(name, gram)
                if args.peers:
                    g64 = torch.as_tensor(rows @ rows.T)
                    got = peer(name, g64)
                    if got is None:
                        continue
                    scale = "fit" if name in ("cagrad", "upgrad") else "exact"
                else:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        combo = combine(create(name, case), case)
                    got = combo.weights.double().numpy()
                    if name == "imtl" and not combo.gradient.any():
                        got = np.zeros_like(got)
                    scale = "exact"
                if want is None:
                    if name in ("nash_mtl", "cagrad"):  # no solution / not unique: see tests
                        continue
                    want = np.zeros(case.n_tasks)  # IMTL-G without solution: fallback d = 0
                err = rel_error(rows, got, want, scale)
                key = (name, regime)
                worst[key] = max(worst.get(key, 0.0), err if np.isfinite(err) else np.inf)
    print("| method | " + " | ".join(REGIMES) + " |")
    print("|---" * (len(REGIMES) + 1) + "|")
    for name in METHODS:
        cells = []
        for regime in REGIMES:
            v = worst.get((name, regime))
            if v is None:
                cells.append("-")
            else:
                cells.append("floor" if v == 0 else ("< 1e-6" if v < 1e-6 else f"{v:.2g}"))
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
