"""Whisper presets have OpenAI's shapes: on the meta device (no memory), each one's weights, in
Hugging Face names, have exactly the shapes of ``WhisperForConditionalGeneration`` of that size."""

import pytest
import torch

from polyformer.core import create_model, list_presets
from polyformer.speech.whisper.convert import hf_whisper_config, whisper_to_hf_state_dict

transformers = pytest.importorskip("transformers")

# name -> (width, encoder layers, decoder layers, heads, mel bins, vocabulary), from openai/whisper's model table
SHAPES = {
    "whisper_tiny": (384, 4, 4, 6, 80, 51865),
    "whisper_base": (512, 6, 6, 8, 80, 51865),
    "whisper_small": (768, 12, 12, 12, 80, 51865),
    "whisper_medium": (1024, 24, 24, 16, 80, 51865),
    "whisper_large_v2": (1280, 32, 32, 20, 80, 51865),
    "whisper_large_v3": (1280, 32, 32, 20, 128, 51866),
    "whisper_large_v3_turbo": (1280, 32, 4, 20, 128, 51866),
}
# Ours, smaller than any of OpenAI's (for training from scratch on little data)
SMALL = {"whisper_micro": (128, 2, 1, 2, 80, 51865), "whisper_nano": (256, 4, 2, 4, 80, 51865)}


def test_every_whisper_preset_is_listed():
    assert sorted(p.name for p in list_presets("whisper")) == sorted({**SHAPES, **SMALL})


@pytest.mark.parametrize("name", sorted({**SHAPES, **SMALL}))
def test_preset_weights_have_the_shapes_of_transformers_whisper(name):
    width, encoder, decoder, heads, mels, vocab = {**SHAPES, **SMALL}[name]
    reference = transformers.WhisperConfig(
        d_model=width, encoder_layers=encoder, decoder_layers=decoder, encoder_attention_heads=heads,
        decoder_attention_heads=heads, encoder_ffn_dim=4 * width, decoder_ffn_dim=4 * width, num_mel_bins=mels,
        vocab_size=vocab,
    )  # fmt: skip
    with torch.device("meta"):
        ours = create_model(name)
        theirs = transformers.WhisperForConditionalGeneration(reference)
    expected = {key: tuple(value.shape) for key, value in theirs.state_dict().items()}
    expected.pop("model.encoder.embed_positions.weight")  # ours is a fixed sinusoid buffer, checked below
    converted = {key: tuple(value.shape) for key, value in whisper_to_hf_state_dict(ours.state_dict()).items()}
    assert tuple(ours.encoder.positions.shape) == (1500, width)
    converted.pop("model.encoder.embed_positions.weight", None)
    assert converted == expected
    assert hf_whisper_config(ours.config)["num_mel_bins"] == mels
