"""onn-studio: the design studio for hybrid optical neural networks (library, CLI, jobs)."""

__version__ = "0.1.0"  # the package version (pyproject.toml reads it from here)
