"""Accuracy-before-training estimators and design sweeps (NTK regression, surrogates).

Planned in issue 6; they will take an :class:`onn_core.design.Design` and a dataset name.
"""
