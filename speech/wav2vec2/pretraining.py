"""wav2vec 2.0's self-supervised task: span masking, a Gumbel-softmax product quantiser, contrastive and diversity
losses (Baevski et al. 2020, section 3; fairseq's defaults).

- :func:`span_mask`: each real frame starts a masked span of ``span`` frames with probability ``prob`` (spans may
  overlap, so with the paper's p = 0.065 and 10 frames about half the frames end up masked), at least
  ``min_spans`` per clip. (transformers' and fairseq's ``mask_time_prob`` is p x span, 0.65.)
- :func:`sample_negatives`: for each masked frame, K distractors drawn uniformly from the other masked frames of
  the same clip (indices into the flattened (B x S) frames, transformers' convention).
- :class:`GumbelQuantizer`: G codebooks of V entries; the conv features pick one entry per codebook (straight-
  through Gumbel softmax while training, argmax otherwise) and the picks are concatenated.
- :class:`Wav2Vec2ForPreTraining`: the context vectors of masked frames must pick out their own quantised
  target among the distractors (cosine similarity / kappa, cross-entropy), and the diversity loss
  (G V - perplexity) / (G V) keeps all codebook entries in use.

Shape legend: B batch, S frames, C conv channels, D width, G codebooks, V entries per codebook, K distractors,
P the comparison width (``proj_codevector_dim``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyformer.core import PretrainedModel

from .config import Wav2Vec2Config
from .model import Wav2Vec2Model

__all__ = [
    "GumbelQuantizer",
    "PretrainingOutput",
    "Wav2Vec2ForPreTraining",
    "codebook_perplexity",
    "sample_negatives",
    "span_mask",
]


def span_mask(
    frame_lengths: Tensor,
    num_frames: int,
    prob: float,
    span: int,
    min_spans: int = 2,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Which frames to mask (B, S) bool: each real frame starts a span of ``span`` frames with probability ``prob``.

    A clip of L real frames gets ``int(prob * L + u)`` span starts (u uniform in [0, 1), so the expected
    count is exact), at least ``min_spans`` and at most ``L - span + 1``, drawn without replacement from the starts
    that keep the span inside the clip; spans may overlap. A clip shorter than ``span`` frames is not masked.
    """
    lengths = frame_lengths.long().cpu().tolist()
    mask = torch.zeros(len(lengths), num_frames, dtype=torch.bool)
    for row, length in enumerate(lengths):
        starts_possible = min(length, num_frames) - span + 1
        if starts_possible <= 0:
            continue
        wanted = int(prob * length + float(torch.rand((), generator=generator)))
        count = min(max(wanted, min_spans), starts_possible)
        starts = torch.randperm(starts_possible, generator=generator)[:count]
        mask[row, (starts[:, None] + torch.arange(span)).flatten()] = True
    return mask.to(frame_lengths.device)


def sample_negatives(time_mask: Tensor, num_negatives: int, generator: torch.Generator | None = None) -> Tensor:
    """Distractor indices (B, S, K) into the flattened (B x S) frames: for each masked frame, K other masked frames
    of the same clip drawn uniformly with replacement (never the frame itself); 0 at unmasked frames.

    Raises:
        ValueError: a clip with fewer than 2 masked frames (nothing to contrast with).
    """
    batch, frames = time_mask.shape
    out = torch.zeros(batch, frames, num_negatives, dtype=torch.long)
    cpu_mask = time_mask.bool().cpu()
    for row in range(batch):
        masked = cpu_mask[row].nonzero().flatten()
        n = len(masked)
        if n < 2:
            raise ValueError(f"clip {row} has {n} masked frame(s); the contrastive task needs at least 2")
        picks = torch.randint(0, n - 1, (n, num_negatives), generator=generator)
        picks = picks + (picks >= torch.arange(n)[:, None]).long()  # skip the frame itself
        out[row, masked] = masked[picks] + row * frames
    return out.to(time_mask.device)


def codebook_perplexity(probs: Tensor, mask: Tensor | None = None) -> Tensor:
    """Sum over codebooks of exp(entropy) of the average entry distribution (N, G, V) over the frames of ``mask``
    (N,): G x V when every entry is used equally, G when each codebook always picks one entry."""
    if mask is not None:
        keep = mask.flatten().to(probs.dtype)[:, None, None]
        marginal = (probs * keep).sum(dim=0) / keep.sum().clamp(min=1)
    else:
        marginal = probs.mean(dim=0)
    return torch.exp(-torch.xlogy(marginal, marginal).sum(dim=-1)).sum()


class GumbelQuantizer(nn.Module):
    """Product quantiser: conv features (B, S, C) -> quantised vectors (B, S, codevector_dim).

    Attributes:
        weight_proj: features -> G x V logits.
        codevectors: the (1, G x V, codevector_dim / G) codebook entries.
        temperature: the Gumbel softmax temperature (annealed by the pretraining recipe, 2 -> 0.5).
    """

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.groups, self.entries = config.quantizer_groups, config.quantizer_entries
        self.weight_proj = nn.Linear(config.conv_dim[-1], self.groups * self.entries)
        self.codevectors = nn.Parameter(
            torch.empty(1, self.groups * self.entries, config.codevector_dim // self.groups).uniform_()
        )
        nn.init.normal_(self.weight_proj.weight, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)
        self.temperature = 2.0

    def forward(self, features: Tensor, time_mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Quantised vectors (B, S, codevector_dim), the perplexity of the (soft, while training) code
        distribution over the masked frames, the hard codes (B, S, G) (the logits' argmax) and the entries the
        vectors were made of (B, S, G) (the Gumbel samples while training, the hard codes otherwise)."""
        batch, frames, _ = features.shape
        logits = self.weight_proj(features).view(batch * frames, self.groups, self.entries).float()
        codes = logits.argmax(dim=-1)
        if self.training:
            one_hot = F.gumbel_softmax(logits, tau=self.temperature, hard=True)
            picks = one_hot.argmax(dim=-1)
            perplexity = codebook_perplexity(logits.softmax(dim=-1), time_mask)
        else:
            one_hot = F.one_hot(codes, self.entries).float()
            picks = codes
            perplexity = codebook_perplexity(one_hot, time_mask)
        # (G, N, V) @ (G, V, codevector_dim / G): each codebook's one-hot (straight-through while training) picks
        # its entry; one batched matmul instead of a (N, G x V, codevector_dim / G) product and sum.
        table = self.codevectors.view(self.groups, self.entries, -1)
        vectors = torch.bmm(one_hot.to(table.dtype).transpose(0, 1), table).transpose(0, 1)
        return (vectors.reshape(batch, frames, -1), perplexity, codes.view(batch, frames, self.groups),
                picks.view(batch, frames, self.groups))  # fmt: skip


@dataclass
class PretrainingOutput:
    """What :class:`Wav2Vec2ForPreTraining` returns (losses are None without ``time_mask`` and ``negatives``).

    Attributes:
        loss: contrastive_loss + diversity_weight x diversity_loss (per masked frame).
        contrastive_loss: mean cross-entropy of picking the true target among K + 1 candidates.
        diversity_loss: (G V - perplexity) / (G V).
        accuracy: fraction of masked frames whose true target scores highest.
        perplexity: of the code distribution over the masked frames (soft while training).
        code_perplexity: of the hard codes over the masked frames (what the health monitor watches).
        projected_states: (B, S, P) the context vectors in the comparison space.
        projected_quantized: (B, S, P) the quantised targets in the comparison space.
    """

    loss: Tensor | None
    contrastive_loss: Tensor | None
    diversity_loss: Tensor | None
    accuracy: Tensor | None
    perplexity: Tensor
    code_perplexity: Tensor
    projected_states: Tensor
    projected_quantized: Tensor


class Wav2Vec2ForPreTraining(PretrainedModel):
    """wav2vec 2.0 with its quantiser and contrastive task; see the module docstring."""

    config_class = Wav2Vec2Config
    config: Wav2Vec2Config

    def __init__(self, config: Wav2Vec2Config):
        super().__init__(config)
        self.wav2vec2 = Wav2Vec2Model(config)
        self.quantizer_dropout = nn.Dropout(config.quantizer_dropout)
        self.quantizer = GumbelQuantizer(config)
        self.project_hid = nn.Linear(config.d_model, config.proj_codevector_dim)
        self.project_q = nn.Linear(config.codevector_dim, config.proj_codevector_dim)

    def forward(
        self,
        waveform: Tensor,
        attention_mask: Tensor | None = None,
        time_mask: Tensor | None = None,
        negatives: Tensor | None = None,
    ) -> PretrainingOutput:
        """Run the model on masked input and score the contrastive task.

        Args:
            waveform: (B, N) normalised 16 kHz samples.
            attention_mask: (B, N) True = a real sample.
            time_mask: (B, S) bool, the masked frames (:func:`span_mask`).
            negatives: (B, S, K) distractor indices (:func:`sample_negatives`).
        """
        out = self.wav2vec2(waveform, attention_mask, time_mask)
        predicted = self.project_hid(out.last_hidden_state)
        quantized, perplexity, codes, picks = self.quantizer(self.quantizer_dropout(out.features), time_mask)
        targets = self.project_q(quantized.to(self.project_q.weight.dtype))
        code_perplexity = codebook_perplexity(F.one_hot(codes.flatten(0, 1), self.quantizer.entries).float(),
                                              time_mask)  # fmt: skip
        losses: tuple[Tensor | None, ...] = (None, None, None, None)
        if time_mask is not None and negatives is not None:
            losses = self._losses(predicted, targets, perplexity, picks, time_mask.bool(), negatives)
        return PretrainingOutput(*losses, perplexity, code_perplexity, predicted, targets)

    def _losses(
        self,
        predicted: Tensor,
        targets: Tensor,
        perplexity: Tensor,
        picks: Tensor,
        time_mask: Tensor,
        negatives: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The losses on the masked frames only: the cosine similarities of each clip's predictions with its
        targets (one (B, S, S) batched matmul of unit vectors), of which each masked frame's own target and its K
        distractors are gathered; a distractor made of the same codebook entries as the target (so the same
        vector) is left out (-inf).

        Raises:
            ValueError: a distractor from another clip (sample_negatives and transformers draw them in the clip).
        """
        batch, frames, width = targets.shape
        rows = time_mask.flatten().nonzero().squeeze(1)  # (M,) the masked frames in the flattened (B x S) frames
        candidates = torch.cat([rows[:, None], negatives.reshape(batch * frames, -1)[rows]], dim=1)  # (M, K + 1)
        columns = candidates - (rows - rows % frames)[:, None]  # the candidates' frames within the clip
        if bool(((columns < 0) | (columns >= frames)).any()):
            raise ValueError("every distractor must be a frame of the masked frame's own clip")
        with torch.autocast(predicted.device.type, enabled=False):  # the similarities in fp32, as cosine_similarity
            units = F.normalize(predicted.float(), dim=-1, eps=1e-8)
            target_units = F.normalize(targets.float(), dim=-1, eps=1e-8)
            similarity = torch.bmm(units, target_units.transpose(1, 2)).view(batch * frames, frames)
            logits = similarity[rows].gather(1, columns) / self.config.contrastive_temperature
        entry = picks.reshape(batch * frames, -1)
        entry = (entry * self.quantizer.entries ** torch.arange(entry.shape[1], device=entry.device)).sum(dim=1)
        same = entry[candidates[:, 1:]] == entry[rows][:, None]  # (M, K): a distractor identical to the target
        logits = torch.cat([logits[:, :1], logits[:, 1:].masked_fill(same, float("-inf"))], dim=1)
        contrastive = F.cross_entropy(logits, torch.zeros(len(rows), dtype=torch.long, device=logits.device))
        entries = self.quantizer.groups * self.quantizer.entries
        diversity = (entries - perplexity) / entries
        accuracy = (logits.argmax(dim=-1) == 0).float().mean()
        return contrastive + self.config.diversity_weight * diversity, contrastive, diversity, accuracy
