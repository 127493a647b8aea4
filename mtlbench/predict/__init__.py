"""Use a trained HydraNet: the model as MLflow stores it, and predictions on image files.

``card`` describes what a logged model predicts (tasks, labels, preprocessing); ``exported``
wraps the network so MLflow's PyTorch flavour can save and reload it; ``images`` reads image
files the way training did; ``run`` and ``formatting`` back ``mtlbench predict``.
"""
