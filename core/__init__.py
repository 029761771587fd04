"""polyformer.core: from-scratch, modality-agnostic transformer blocks and attention ops.

Everything a domain model needs: :func:`attention` with pluggable backends,
:class:`MultiHeadAttention` with a KV cache, positional encodings, feed-forward layers and
norms, encoder/decoder layers and stacks, token-level encoder-decoder and decoder-only models,
and shared generation (greedy, sampling, beam search).
"""

from . import backends  # noqa: F401  (registers the efficient attention backends)
from .attention import (
    AttentionBackend,
    attention,
    causal_mask,
    create_attention_backend,
    eager_attention,
    list_attention_backends,
    parse_backend_spec,
    register_attention_backend,
)
from .config import ConfigBase, TransformerConfig
from .feedforward import MLP, DropPath, GatedMLP, RMSNorm, build_feed_forward, build_norm
from .generation import GenerationOutput, beam_search, generate, greedy_search, sample, top_k_top_p_filter
from .kv_cache import KVCache, LayerKVCache
from .layers import DecoderLayer, EncoderLayer, LayerScale
from .moe import MoEFeedForward, MoEStats, apply_moe, build_moe_feed_forward, collect_aux_loss, moe_stats
from .multihead import MultiHeadAttention
from .positional import (
    ALiBi,
    LearnedPositionalEmbedding,
    LearnedPositionalEmbedding2D,
    RotaryEmbedding,
    SinusoidalPositionalEmbedding,
    apply_rotary,
    sincos_2d,
    sinusoidal_table,
)
from .presets import Preset, create_model, list_presets, register_preset
from .pretrained import PretrainedModel, atomic_directory, read_state_dict, rename_by_rules
from .seq_models import DecoderOnlyTransformer, EncoderDecoderTransformer, ModelOutput, TokenEmbedding
from .stacks import StackOutput, TransformerDecoder, TransformerEncoder, build_decoder, build_encoder, drop_path_rates

__all__ = [name for name in dir() if not name.startswith("_")]
