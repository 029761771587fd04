"""wav2vec 2.0 (Baevski et al. 2020): self-supervised speech representations, fine-tuned with CTC.

- :mod:`.config`: :class:`Wav2Vec2Config` (BASE and LARGE-LV60 layouts).
- :mod:`.model`: the conv feature encoder, position conv and encoder (:class:`Wav2Vec2Model`) and the CTC model
  (:class:`Wav2Vec2ForCTC`).
- :mod:`.pretraining`: span masking, distractor sampling, the Gumbel product quantiser and
  :class:`Wav2Vec2ForPreTraining` with the contrastive and diversity losses.
- :mod:`.vocabulary`: :class:`CtcVocabulary`, characters <-> ids (transformers' ``vocab.json`` layout).
- :mod:`.convert`: Hugging Face wav2vec 2.0 directories -> ours.
"""

from .config import Wav2Vec2Config
from .convert import convert_hf_wav2vec2_state_dict, is_hf_wav2vec2_directory, load_hf_wav2vec2, wav2vec2_config_from_hf
from .model import ConvFeatureEncoder, PositionConv, Wav2Vec2Encoder, Wav2Vec2ForCTC, Wav2Vec2Model, Wav2Vec2Output
from .pretraining import (
    GumbelQuantizer,
    PretrainingOutput,
    Wav2Vec2ForPreTraining,
    codebook_perplexity,
    sample_negatives,
    span_mask,
)
from .vocabulary import VOCAB_FILE, CtcVocabulary

__all__ = [
    "VOCAB_FILE",
    "ConvFeatureEncoder",
    "CtcVocabulary",
    "GumbelQuantizer",
    "PositionConv",
    "PretrainingOutput",
    "Wav2Vec2Config",
    "Wav2Vec2Encoder",
    "Wav2Vec2ForCTC",
    "Wav2Vec2ForPreTraining",
    "Wav2Vec2Model",
    "Wav2Vec2Output",
    "codebook_perplexity",
    "convert_hf_wav2vec2_state_dict",
    "is_hf_wav2vec2_directory",
    "load_hf_wav2vec2",
    "sample_negatives",
    "span_mask",
    "wav2vec2_config_from_hf",
]
