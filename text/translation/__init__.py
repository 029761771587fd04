"""Translation with core's encoder-decoder transformer: tokenized pairs, decoding, model directories with their
tokenizer, and Hugging Face Marian / BART interop."""

from .convert_hf import (
    SEQ2SEQ_MODEL_TYPES,
    convert_hf_seq2seq_state_dict,
    is_hf_seq2seq_directory,
    load_hf_seq2seq,
    seq2seq_config_from_hf,
)
from .model import (
    SOURCE_TOKENIZER_FILE,
    TranslationPairs,
    load_source_tokenizer,
    load_translation_model,
    pad_pairs,
    save_tokenizers,
    save_translation_model,
    tokenizer_files,
    translate,
    translation_config,
)

__all__ = [name for name in dir() if not name.startswith("_")]
