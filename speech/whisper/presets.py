"""Whisper presets: OpenAI's model sizes (Radford et al. 2022, table 1), registered in core's preset registry.

``whisper_micro`` and ``whisper_nano`` are smaller than any of OpenAI's, for training from scratch on little
data (``whisper_nano`` is the shipped ``speech_spoken`` model's shape). Each builds a randomly initialised
:class:`~polyformer.speech.whisper.Whisper` of that shape, for
training from scratch or as the architecture a checkpoint is loaded into; keyword arguments
override :class:`~polyformer.speech.whisper.WhisperConfig` fields (e.g. ``vocab_size`` for another
tokenizer). The multilingual vocabulary has 51865 tokens (51866 from large-v3 on, which also takes
128 mel bins); English-only checkpoints (``*.en``) have 51864.
"""

from __future__ import annotations

from polyformer.core import register_preset

from .config import WhisperConfig
from .model import Whisper

__all__ = [
    "whisper_base", "whisper_large_v2", "whisper_large_v3", "whisper_large_v3_turbo", "whisper_medium",
    "whisper_micro", "whisper_nano", "whisper_small", "whisper_tiny",
]  # fmt: skip


def _whisper(width: int, layers: int, heads: int, decoder_layers: int | None = None, **overrides) -> Whisper:
    fields = dict(
        d_model=width, num_heads=heads, encoder_layers=layers, decoder_layers=decoder_layers or layers, d_ff=4 * width
    )
    return Whisper(WhisperConfig(**{**fields, **overrides}))


@register_preset("whisper_micro", "whisper", "Whisper-style micro: 2+1 layers, width 128, 2 heads (quick experiments)")
def whisper_micro(**overrides) -> Whisper:
    return _whisper(128, 2, 2, decoder_layers=1, **overrides)


@register_preset("whisper_nano", "whisper", "Whisper-style nano: 4+2 layers, width 256, 4 heads (5.6M with characters)")
def whisper_nano(**overrides) -> Whisper:
    return _whisper(256, 4, 4, decoder_layers=2, **overrides)


@register_preset("whisper_tiny", "whisper", "Whisper tiny: 4+4 layers, width 384, 6 heads (39M parameters)")
def whisper_tiny(**overrides) -> Whisper:
    return _whisper(384, 4, 6, **overrides)


@register_preset("whisper_base", "whisper", "Whisper base: 6+6 layers, width 512, 8 heads (74M parameters)")
def whisper_base(**overrides) -> Whisper:
    return _whisper(512, 6, 8, **overrides)


@register_preset("whisper_small", "whisper", "Whisper small: 12+12 layers, width 768, 12 heads (244M parameters)")
def whisper_small(**overrides) -> Whisper:
    return _whisper(768, 12, 12, **overrides)


@register_preset("whisper_medium", "whisper", "Whisper medium: 24+24 layers, width 1024, 16 heads (769M parameters)")
def whisper_medium(**overrides) -> Whisper:
    return _whisper(1024, 24, 16, **overrides)


@register_preset("whisper_large_v2", "whisper", "Whisper large(-v2): 32+32 layers, width 1280, 20 heads, 80 mels")
def whisper_large_v2(**overrides) -> Whisper:
    return _whisper(1280, 32, 20, **overrides)


@register_preset("whisper_large_v3", "whisper", "Whisper large-v3: 32+32 layers, width 1280, 128 mels, 51866 tokens")
def whisper_large_v3(**overrides) -> Whisper:
    return _whisper(1280, 32, 20, **{"n_mels": 128, "vocab_size": 51866, **overrides})


@register_preset("whisper_large_v3_turbo", "whisper", "Whisper large-v3-turbo: 32 encoder, 4 decoder layers, 128 mels")
def whisper_large_v3_turbo(**overrides) -> Whisper:
    return _whisper(1280, 32, 20, decoder_layers=4, **{"n_mels": 128, "vocab_size": 51866, **overrides})
