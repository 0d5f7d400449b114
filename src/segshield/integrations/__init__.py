"""Integrations with other libraries, each behind an optional extra imported lazily.

- :mod:`segshield.integrations.monai`: the defences as MONAI transforms (extra
  ``segshield[monai]``); the MONAI networks themselves are segshield models
  (``monai-unet``, ... in :mod:`segshield.models.monai_nets`).
"""
