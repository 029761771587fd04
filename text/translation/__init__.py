"""Translation with core's encoder-decoder transformer: Hugging Face Marian and BART interop so far."""

from .convert_hf import (
    SEQ2SEQ_MODEL_TYPES,
    convert_hf_seq2seq_state_dict,
    is_hf_seq2seq_directory,
    load_hf_seq2seq,
    seq2seq_config_from_hf,
)

__all__ = [name for name in dir() if not name.startswith("_")]
