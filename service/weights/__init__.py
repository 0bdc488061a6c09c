"""Published checkpoints one command away: the catalogue, ``pose3d weights`` and catalogue names in settings.

Everything here is torch-free except :mod:`service.weights.identify` (``pose3d weights add``), which imports the
checkpoint loaders when it runs.
"""
