"""The classic two-objective toy of Liu et al. NeurIPS 2021 (CAGrad, Fig. 1), reused by Nash-MTL
(Navon et al. ICML 2022) and FAMO (Liu et al. NeurIPS 2023).

:mod:`~mtlbench.toy.problem` holds the analytic losses and the papers' starting points,
:mod:`~mtlbench.toy.pareto` the Pareto set and the distance to it, :mod:`~mtlbench.toy.run` drives
every registered strategy through the trainer's gradient engine, :mod:`~mtlbench.toy.plot` draws
one panel per strategy and :mod:`~mtlbench.toy.track` logs a run to MLflow. Importing this package
imports nothing heavy; each module imports torch / matplotlib / mlflow itself.
"""
