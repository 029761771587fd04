"""polyformer.vision: ViT image classification and DETR detection, built on polyformer.core.

Importing this package registers the vision presets (``vit_*``, ``detr_*``) in the core registry.
"""

from . import detr, vit  # noqa: F401  (registers the DETR and ViT presets)
