"""Accuracy-before-training estimators, design sweeps and design search (NTK regression, surrogates, Optuna).

They take an :class:`onn_core.design.Design` and a dataset name; ``estimators.studio`` adds their
job kinds and CLI commands to the studio.
"""

from onn_core import __version__  # one version for the whole package

__all__ = ["__version__"]
