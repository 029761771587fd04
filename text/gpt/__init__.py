"""GPT for text (Radford et al. 2019): presets and Hugging Face GPT-2 interop. The decoder itself is
core's :class:`~polyformer.core.DecoderOnlyTransformer`, and generation (greedy, sampling, beam) is core's.

Importing this package registers the ``gpt*`` presets in the core registry.
"""

from .convert_hf import (
    convert_hf_gpt2_state_dict,
    gpt2_config_from_hf,
    hf_gpt2_config,
    hf_gpt2_state_dict,
    is_hf_gpt2_directory,
    load_hf_gpt2,
    save_hf_gpt2,
)
from .presets import gpt2_small, gpt_mini, gpt_tiny

__all__ = [name for name in dir() if not name.startswith("_")]
