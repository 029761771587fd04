"""The configuration of a wav2vec 2.0 model (Baevski et al. 2020, "wav2vec 2.0: A Framework for Self-Supervised
Learning of Speech Representations"); defaults are the BASE model and fairseq's pretraining settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from polyformer.core.config import BlockSpec, ConfigBase, block_spec_from, require

__all__ = ["FEATURE_NORMS", "SIZES", "Wav2Vec2Config", "sized_config"]

FEATURE_NORMS = ("group", "layer")
#: Named shapes (config fields over the defaults): the paper's BASE and LARGE-LV60, and two for CPU training.
SIZES: dict[str, dict] = {
    "base": {},  # 95M parameters
    "large": dict(d_model=1024, num_heads=16, encoder_layers=24, d_ff=4096, feature_norm="layer", conv_bias=True,
                  norm_first=True),  # 317M; fmt: skip
    "small": dict(d_model=256, num_heads=4, encoder_layers=4, d_ff=1024, conv_dim=[256] * 7, pos_conv_kernel=64,
                  pos_conv_groups=8),  # fmt: skip
    "tiny": dict(d_model=96, num_heads=4, encoder_layers=2, d_ff=192, conv_dim=[64] * 7, pos_conv_kernel=32,
                 pos_conv_groups=4),  # fmt: skip
}


@dataclass
class Wav2Vec2Config(ConfigBase):
    """A wav2vec 2.0 model: a convolutional feature encoder over the raw 16 kHz waveform (one frame per 20 ms),
    a projection to the model width, a convolutional relative position embedding and a transformer encoder;
    for pretraining a Gumbel-softmax product quantiser of the conv features, for recognition a CTC head.

    Two layouts, as in the paper: BASE (``feature_norm="group"``: group norm after the first conv only;
    post-norm encoder with a norm before the stack) and LARGE-LV60 (``feature_norm="layer"``: layer norm after
    every conv, conv biases; ``norm_first=True``: pre-norm encoder with a final norm).
    """

    model_type = "wav2vec2"

    conv_dim: list[int] = field(default_factory=lambda: [512] * 7)  # channels of each conv of the feature encoder
    conv_kernel: list[int] = field(default_factory=lambda: [10, 3, 3, 3, 3, 2, 2])
    conv_stride: list[int] = field(default_factory=lambda: [5, 2, 2, 2, 2, 2, 2])  # 320 samples (20 ms) per frame
    conv_bias: bool = False
    feature_norm: str = "group"  # group: GroupNorm after the first conv only | layer: LayerNorm after each conv
    d_model: int = 768  # encoder width D
    num_heads: int = 12
    encoder_layers: int = 12
    d_ff: int = 3072
    activation: str = "gelu"
    norm_first: bool = False  # pre-norm encoder with a final norm (LARGE-LV60) or post-norm (BASE)
    norm_eps: float = 1e-5
    pos_conv_kernel: int = 128  # the relative position embedding: a grouped conv over time
    pos_conv_groups: int = 16
    dropout: float = 0.1  # residual branches, inside the feed-forward, after the position embedding
    attention_dropout: float = 0.1
    feature_dropout: float = 0.0  # after the feature projection
    layer_drop: float = 0.05  # LayerDrop: probability of skipping a whole encoder layer while training
    backend: str = "sdpa"
    # Span masking of the projected features (pretraining; SpecAugment-like while fine-tuning).
    mask_time_prob: float = 0.065  # probability of each frame starting a masked span (the paper's p; transformers'
    # and fairseq's mask_time_prob is p x mask_time_length)
    mask_time_length: int = 10  # frames per span
    mask_time_min_spans: int = 2
    # CTC head (vocab_size 0 = none: a pretraining or feature model).
    vocab_size: int = 0
    blank_id: int = 0  # the CTC blank (transformers: the pad token)
    # Pretraining: product quantiser and contrastive task.
    quantizer_groups: int = 2  # G codebooks
    quantizer_entries: int = 320  # V entries per codebook
    codevector_dim: int = 256  # width of a quantised vector (G x codevector_dim / G)
    proj_codevector_dim: int = 256  # width in which predictions and targets are compared
    num_negatives: int = 100  # K distractors per masked frame
    contrastive_temperature: float = 0.1  # kappa: cosine similarities are divided by it
    diversity_weight: float = 0.1  # alpha: weight of the codebook diversity loss
    quantizer_dropout: float = 0.0  # dropout on the conv features before quantisation

    def __post_init__(self) -> None:
        layers = len(self.conv_dim)
        require(layers > 0 and len(self.conv_kernel) == layers and len(self.conv_stride) == layers,
                "conv_dim, conv_kernel and conv_stride need one entry per conv layer")  # fmt: skip
        require(min(self.conv_dim + self.conv_kernel + self.conv_stride) > 0, "conv sizes must be positive")
        require(self.feature_norm in FEATURE_NORMS, f"feature_norm must be one of {FEATURE_NORMS}")
        require(self.encoder_layers >= 1, "wav2vec 2.0 needs at least one encoder layer")
        require(self.pos_conv_kernel > 0 and self.d_model % self.pos_conv_groups == 0,
                f"pos_conv_groups={self.pos_conv_groups} must divide d_model={self.d_model}")  # fmt: skip
        require(0.0 <= self.mask_time_prob <= 1.0, f"mask_time_prob must be in [0, 1], got {self.mask_time_prob}")
        require(self.mask_time_length >= 1, f"mask_time_length must be >= 1, got {self.mask_time_length}")
        require(self.vocab_size >= 0, "vocab_size must be >= 0 (0 = no CTC head)")
        require(self.vocab_size == 0 or 0 <= self.blank_id < self.vocab_size, "blank_id must be in the vocabulary")
        require(self.codevector_dim % self.quantizer_groups == 0, "quantizer_groups must divide codevector_dim")
        require(self.quantizer_entries > 1 and self.num_negatives >= 1, "need >1 codebook entries and >=1 negative")
        require(0.0 <= self.feature_dropout < 1.0 and 0.0 <= self.quantizer_dropout < 1.0, "dropouts must be in [0, 1)")
        self.block_spec()  # checks widths, heads, activation and dropout

    def block_spec(self) -> BlockSpec:
        """The encoder's blocks: LayerNorm, pre- or post-norm, LayerDrop."""
        return block_spec_from(self, norm="layernorm", norm_first=self.norm_first, layer_drop=self.layer_drop)

    @property
    def frame_stride(self) -> int:
        """Waveform samples per output frame (320 = 20 ms at 16 kHz for the paper's encoder)."""
        stride = 1
        for step in self.conv_stride:
            stride *= step
        return stride

    @property
    def receptive_field(self) -> int:
        """Samples the first output frame sees: the shortest clip that gives one frame (400 = 25 ms)."""
        field_, jump = 1, 1
        for kernel, stride in zip(self.conv_kernel, self.conv_stride):
            field_ += (kernel - 1) * jump
            jump *= stride
        return field_

    def frames_for(self, samples: int) -> int:
        """Output frames of a clip of ``samples`` samples (0 when shorter than the receptive field)."""
        for kernel, stride in zip(self.conv_kernel, self.conv_stride):
            samples = (samples - kernel) // stride + 1 if samples >= kernel else 0
        return samples


def sized_config(size: str = "small", **fields) -> Wav2Vec2Config:
    """The :data:`SIZES` shape ``size`` with ``fields`` over it.

    Raises:
        ValueError: an unknown size, or fields a config refuses.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    return Wav2Vec2Config(**{**SIZES[size], **fields})
