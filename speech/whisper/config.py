"""The configuration of a Whisper-style encoder-decoder (Radford et al. 2022, "Robust Speech
Recognition via Large-Scale Weak Supervision"); defaults are OpenAI's Whisper base."""

from __future__ import annotations

from dataclasses import dataclass, field

from polyformer.core.config import BlockSpec, ConfigBase, block_spec_from, require

__all__ = ["WhisperConfig"]


@dataclass
class WhisperConfig(ConfigBase):
    """A Whisper-style model: conv stem + sinusoidal positions + pre-norm encoder over log-mel
    frames, pre-norm decoder with learned positions and cross-attention, output tied to the
    token embeddings. Attention has no key bias, as in Whisper.

    Token ids (``sot_id`` ...) are those of the model's tokenizer; a multilingual Whisper
    vocabulary has 51865 (or 51866) entries, an English-only one 51864.
    """

    model_type = "whisper"

    vocab_size: int = 51865  # tokens, special ones included
    n_mels: int = 80  # mel bins of the input features (80, or 128 for large-v3)
    d_model: int = 512  # width D of both stacks
    num_heads: int = 8  # attention heads in both stacks
    encoder_layers: int = 6
    decoder_layers: int = 6
    d_ff: int = 2048  # feed-forward inner width
    activation: str = "gelu"
    norm_eps: float = 1e-5
    dropout: float = 0.0  # on residual branches and after the embeddings
    attention_dropout: float = 0.0
    max_source_positions: int = 1500  # encoder positions: mel frames / 2 (30 s -> 1500)
    max_target_positions: int = 448  # decoder positions (tokens in a window, prompt included)
    backend: str = "sdpa"  # attention backend of both stacks
    # True: the encoder always gets 30 s windows, silence-padded (OpenAI's checkpoints); False: windows as long as
    # the audio left (up to 30 s), as a model trained here on short clips saw them.
    fixed_window: bool = True
    # A linear CTC head on the encoder output, for joint CTC/attention training (Kim et al. 2017), which teaches a
    # model trained from scratch to align far sooner; not used in decoding, not exported to Hugging Face.
    ctc_head: bool = False
    sot_id: int = 50258  # <|startoftranscript|>: the decoder's first token
    eos_id: int = 50257  # <|endoftext|>
    pad_id: int = 50257  # padding of target batches (Whisper pads with <|endoftext|>)
    # From the checkpoint's generation settings (empty for a model trained here):
    alignment_heads: list[list[int]] = field(default_factory=list)  # (decoder layer, head) pairs for word timing
    suppress_tokens: list[int] = field(default_factory=list)  # never generated (non-speech symbols)
    begin_suppress_tokens: list[int] = field(default_factory=list)  # not generated first (space, EOT)

    def __post_init__(self) -> None:
        require(self.vocab_size > 0, f"vocab_size must be positive, got {self.vocab_size}")
        require(self.n_mels > 0, f"n_mels must be positive, got {self.n_mels}")
        require(self.encoder_layers >= 1 and self.decoder_layers >= 1, "Whisper needs at least one layer per stack")
        require(self.max_source_positions > 0 and self.max_target_positions > 1, "position counts must be positive")
        for name in ("sot_id", "eos_id", "pad_id"):
            value = getattr(self, name)
            require(0 <= value < self.vocab_size, f"{name}={value} is outside the vocabulary [0, {self.vocab_size})")
        for pair in self.alignment_heads:
            require(
                len(pair) == 2 and 0 <= pair[0] < self.decoder_layers and 0 <= pair[1] < self.num_heads,
                f"alignment head {pair} is not a (decoder layer, head) pair of this model",
            )
        self.block_spec()  # checks widths, heads, activation and dropout

    def block_spec(self) -> BlockSpec:
        """Both stacks' blocks: pre-norm LayerNorm, no key bias."""
        return block_spec_from(self, norm_first=True, norm="layernorm", key_bias=False)
