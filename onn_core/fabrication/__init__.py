"""From trained kernels to a fabricable metasurface, and what fabrication does to it.

* :mod:`.inverse_design` — radius maps whose PSFs realise each trained kernel's K⁺/K⁻ captures.
* :mod:`.error_model` — seeded, composable fabrication and capture errors with physical units.
* :mod:`.fabricated` — a trained model with its optics replaced by the fabricated (perturbed or
  measured) optics: a frozen frontend the backend can be re-tuned against.
* :mod:`.measured` — validated import of measured PSF stacks and captured feature maps.
* :mod:`.evaluate` — accuracy under fabrication: Monte-Carlo yield, accuracy vs error magnitude.
* :mod:`.compensate` — post-fabrication fine-tuning of the digital backend only (e2e or NTKD).
* :mod:`.gds` and :mod:`.export` — the files a fab and a collaborator need.
"""
