"""scaleout: learning-rate scaling sweeps for BEVFormer-family training on GPU clusters.

Importing the package is cheap on purpose: heavy libraries (torch, mlflow, ray, optuna)
are imported by the modules that need them, so `scaleout plan` answers in well under a second.
"""

__version__ = "0.1.0"
