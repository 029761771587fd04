"""polyformer.vision: ViT image classification and DETR detection, built on polyformer.core.

Importing this package registers the vision presets (``vit_*``) in the core registry.
"""

from . import vit  # noqa: F401  (registers the ViT presets)
