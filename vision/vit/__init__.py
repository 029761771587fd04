"""Vision Transformer (Dosovitskiy et al. 2021): config, model, presets and checkpoint converters.

Importing this package registers the ``vit_*`` presets in the core registry.
"""

from .checkpoints import ViTSource, adapt_vit_state, read_vit_source
from .config import ViTConfig
from .convert_hf import convert_hf_state_dict, is_hf_vit_directory, read_hf_vit, vit_config_from_hf
from .convert_timm import (
    TIMM_VIT_SIZES,
    convert_timm_state_dict,
    read_timm_vit,
    timm_name_from_state,
    vit_config_from_timm,
)
from .model import PatchEmbedding, ViT
from .presets import (
    vit_base_patch16_224,
    vit_cifar_patch4_32,
    vit_mnist_patch4_28,
    vit_nano_patch4_28,
    vit_nano_patch4_32,
    vit_small_patch16_224,
    vit_tiny_patch16_224,
)

__all__ = [name for name in dir() if not name.startswith("_")]
