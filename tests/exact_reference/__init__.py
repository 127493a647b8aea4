"""Independent high-precision references for the gradient-based strategies.

Each reference is computed from the method's defining optimisation problem or equations in
60-digit arithmetic (``mpmath``) on the *exact* Gramian of the float32 task gradients (integer
arithmetic), never from the implementation's formula. :mod:`tests.exact_reference.table` maps
every registered gradient strategy to its check;
``tests/unit/weighting/test_exact_reference.py`` runs
them over the regimes of :mod:`tests.exact_reference.regimes`.
"""
