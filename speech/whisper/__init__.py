"""Whisper-style speech recognition: the model, presets, checkpoint interop, tokenizer and decoding.

Importing this package registers the ``whisper_*`` presets in the core registry.
"""

from .config import WhisperConfig
from .convert import (
    convert_ctranslate2_state,
    convert_hf_whisper_state_dict,
    is_ctranslate2_whisper_directory,
    is_hf_whisper_directory,
    read_ctranslate2,
    save_hf_whisper,
    whisper_config_from_ctranslate2,
    whisper_config_from_hf,
    whisper_to_hf_state_dict,
)
from .model import Whisper, WhisperEncoder, whisper_sinusoids
from .presets import (
    whisper_base,
    whisper_large_v2,
    whisper_large_v3,
    whisper_large_v3_turbo,
    whisper_medium,
    whisper_micro,
    whisper_nano,
    whisper_small,
    whisper_tiny,
)

__all__ = [
    "Whisper",
    "WhisperConfig",
    "WhisperEncoder",
    "convert_ctranslate2_state",
    "convert_hf_whisper_state_dict",
    "is_ctranslate2_whisper_directory",
    "is_hf_whisper_directory",
    "read_ctranslate2",
    "save_hf_whisper",
    "whisper_config_from_ctranslate2",
    "whisper_config_from_hf",
    "whisper_base",
    "whisper_large_v2",
    "whisper_large_v3",
    "whisper_large_v3_turbo",
    "whisper_medium",
    "whisper_micro",
    "whisper_nano",
    "whisper_sinusoids",
    "whisper_small",
    "whisper_tiny",
    "whisper_to_hf_state_dict",
]
