"""Encoder-only (BERT-style) token models and their task heads.

Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding" (reference code google-research/bert and Hugging Face ``BertModel``): token,
position and token-type embeddings summed and normed, a bidirectional encoder stack, and small
heads: masked-LM (dense + activation + norm, then a decoder tied to the token embeddings plus
its own bias), sequence classification (over BERT's tanh pooler of the first token, or the
mean of the real tokens), token classification, and mean-pooled sentence embeddings (as
sentence-transformers). Positions are absolute (learned or sinusoidal), rotary or ALiBi.
Text (BERT) and bio (DNABERT, a BERT over k-mers) both build on these.

Shape legend: B batch, T tokens, D model dim, V vocabulary, K labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention_ops import backend_class
from .config import EncoderConfig
from .feedforward import ACTIVATIONS, GATED, build_norm
from .kv_cache import positions_from_mask
from .objectives import IGNORE_INDEX
from .positional import ALiBi
from .pretrained import PretrainedModel
from .seq_models import TokenEmbedding, check_token_ids, self_attention_mask
from .stacks import StackOutput, build_encoder

__all__ = [
    "EncoderForMaskedLM",
    "EncoderForSequenceClassification",
    "EncoderForTokenClassification",
    "EncoderOnlyTransformer",
    "MaskedLMHead",
    "mean_pool",
]


def mean_pool(hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """Mean of the real tokens' vectors: hidden (B, T, D), mask (B, T) True = real -> (B, D)."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class EncoderOnlyTransformer(PretrainedModel):
    """Embeddings + bidirectional encoder stack (+ BERT's pooler): ids (B, T) -> vectors (B, T, D).

    Args:
        config: the architecture; default BERT-base.
        with_pooler: build the pooler when ``config.pooler`` is set (the masked-LM model, which
            never reads it, passes False, as Hugging Face's ``BertForMaskedLM`` does).

    Attributes:
        embed: token (+ position, + token-type) embeddings with the embedding norm.
        encoder: the encoder stack (final norm only for pre-norm blocks).
        pooler: dense + tanh over the first token, or None.
    """

    config_class = EncoderConfig
    config: EncoderConfig

    def __init__(self, config: EncoderConfig | None = None, with_pooler: bool = True):
        config = EncoderConfig() if config is None else config
        super().__init__(config)
        spec = config.block_spec()
        if config.position == "alibi":
            backend_class(config.backend).check_use(float_mask=True, where="ALiBi")
        norm = build_norm(config.norm, config.d_model, config.norm_eps) if config.embedding_norm else None
        self.embed = TokenEmbedding(
            config.vocab_size, config.d_model, config.position, config.max_len, False, config.dropout,
            config.pad_id, type_vocab_size=config.type_vocab_size, norm=norm,
        )  # fmt: skip
        self.encoder = build_encoder(spec, config.num_layers)
        self.alibi = ALiBi(config.num_heads) if config.position == "alibi" else None
        pooler = config.pooler and with_pooler
        self.pooler = nn.Sequential(nn.Linear(config.d_model, config.d_model), nn.Tanh()) if pooler else None
        for module in self.encoder.modules():
            if isinstance(module, nn.Linear):  # BERT's initialisation
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> StackOutput:
        """Encode ids (B, T); ``attention_mask`` (B, T) True (or 1) = real token; default: all real.

        Returns:
            The stack's output; ``last_hidden_state`` is (B, T, D).
        """
        check_token_ids(input_ids, self.config.vocab_size, "input_ids")
        b, t = input_ids.shape
        if self.config.max_tokens is not None and t > self.config.max_tokens:
            raise ValueError(
                f"input has {t} tokens but the model has {self.config.max_len} positions; truncate the input"
            )
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask must be (B, T) = {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}"
                )
            attention_mask = attention_mask.bool()
        # Right-padded batches: positions count 0..T-1 in every row, as in BERT.
        positions = positions_from_mask(None, t, None, input_ids.device).expand(b, t)
        mask = self_attention_mask(self.alibi, positions, positions, attention_mask)
        x = self.embed(input_ids, positions, token_type_ids)
        return self.encoder(
            x,
            mask=mask,
            positions=positions,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )

    def pool(self, hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """One vector per sequence (B, D): the pooler over the first token, or the mean of real tokens."""
        if self.config.pool == "cls":
            if self.pooler is None:
                raise ValueError("this encoder was built without its pooler; use pool='mean'")
            return self.pooler(hidden[:, 0])
        return mean_pool(hidden, None if attention_mask is None else attention_mask.bool())

    @torch.no_grad()
    def sentence_embeddings(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, normalize: bool = True
    ) -> Tensor:
        """Mean-pooled last hidden states (B, D), unit length when ``normalize`` (sentence-transformers)."""
        hidden = self(input_ids, attention_mask).last_hidden_state
        pooled = mean_pool(hidden, None if attention_mask is None else attention_mask.bool())
        return F.normalize(pooled, dim=-1) if normalize else pooled


class MaskedLMHead(nn.Module):
    """BERT's masked-LM head: dense -> activation -> norm -> decoder (D -> V) + bias.

    An encoder with a gated feed-forward (``swiglu``, ``geglu``) gets its gate's activation here
    (SiLU, GELU): the head has no second projection to gate, as in DNABERT-2 / MosaicBERT, whose
    GEGLU encoders keep a GELU prediction head.

    Args:
        config: the encoder config (width, activation, norm, vocabulary).
        embedding: token embedding matrix (V, D) the decoder shares, or None for its own.
    """

    def __init__(self, config: EncoderConfig, embedding: nn.Parameter | None = None):
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.activation = GATED.get(config.activation, config.activation)
        self.norm = build_norm(config.norm, config.d_model, config.norm_eps)
        self.decoder = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if embedding is not None:
            self.decoder.weight = embedding
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: Tensor) -> Tensor:
        """Hidden states (..., D) -> vocabulary logits (..., V)."""
        return self.decoder(self.norm(ACTIVATIONS[self.activation](self.dense(hidden)))) + self.bias


class EncoderForMaskedLM(PretrainedModel):
    """:class:`EncoderOnlyTransformer` + :class:`MaskedLMHead`: ids (B, T) -> logits (B, T, V).

    Given ``labels`` (B, T) it returns the logits of the labelled positions only, (N, V) for the
    N labels that are not ``IGNORE_INDEX``, in row-major order: the head's projection onto the
    vocabulary, the largest matrix product of masked-LM training, then runs on the ~15% of the
    tokens that are predicted instead of on all of them (the engine's ``MaskedLMTask`` uses this).
    """

    config_class = EncoderConfig
    config: EncoderConfig
    accepts_mlm_labels = True  # forward(..., labels=...) returns the labelled positions' logits only

    def __init__(self, config: EncoderConfig | None = None):
        config = EncoderConfig() if config is None else config
        super().__init__(config)
        self.backbone = EncoderOnlyTransformer(config, with_pooler=False)
        self.mlm_head = MaskedLMHead(config, self.backbone.embed.tokens.weight if config.tie_embeddings else None)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        hidden = self.backbone(input_ids, attention_mask, token_type_ids).last_hidden_state  # (B, T, D)
        if labels is None:
            return self.mlm_head(hidden)
        if labels.shape != input_ids.shape:
            raise ValueError(f"labels must be (B, T) = {tuple(input_ids.shape)}, got {tuple(labels.shape)}")
        return self.mlm_head(hidden[labels.ne(IGNORE_INDEX)])  # (N, V)


def _classifier(config: EncoderConfig) -> tuple[nn.Dropout, nn.Linear]:
    rate = config.dropout if config.classifier_dropout is None else config.classifier_dropout
    return nn.Dropout(rate), nn.Linear(config.d_model, config.num_labels)


class EncoderForSequenceClassification(PretrainedModel):
    """:class:`EncoderOnlyTransformer` + dropout + linear over the pooled vector: ids (B, T) -> logits (B, K)."""

    config_class = EncoderConfig
    config: EncoderConfig
    head_prefixes = ("classifier",)

    def __init__(self, config: EncoderConfig | None = None):
        config = EncoderConfig() if config is None else config
        super().__init__(config)
        self.backbone = EncoderOnlyTransformer(config)
        self.dropout, self.classifier = _classifier(config)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        hidden = self.backbone(input_ids, attention_mask, token_type_ids).last_hidden_state
        return self.classifier(self.dropout(self.backbone.pool(hidden, attention_mask)))


class EncoderForTokenClassification(PretrainedModel):
    """:class:`EncoderOnlyTransformer` + dropout + linear per token: ids (B, T) -> logits (B, T, K)."""

    config_class = EncoderConfig
    config: EncoderConfig
    head_prefixes = ("classifier",)

    def __init__(self, config: EncoderConfig | None = None):
        config = EncoderConfig() if config is None else config
        super().__init__(config)
        self.backbone = EncoderOnlyTransformer(config)
        self.dropout, self.classifier = _classifier(config)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        return self.classifier(self.dropout(self.backbone(input_ids, attention_mask, token_type_ids).last_hidden_state))
