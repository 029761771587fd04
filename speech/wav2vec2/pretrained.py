"""wav2vec 2.0 directories, ours or Hugging Face's: the bare encoder to fine-tune, or a CTC model with its vocabulary.

Ours are ``config.json`` (``model_type: wav2vec2``) + ``model.safetensors`` written by :class:`Wav2Vec2Model`,
:class:`Wav2Vec2ForPreTraining` or :class:`Wav2Vec2ForCTC` (a CTC directory also holds ``vocab.json``);
Hugging Face's are read by :func:`~polyformer.speech.wav2vec2.convert.load_hf_wav2vec2`.
"""

from __future__ import annotations

from pathlib import Path

from polyformer.core.pretrained import CONFIG_NAME, WEIGHTS_NAME
from polyformer.core.weights import read_safetensors

from .config import Wav2Vec2Config
from .convert import is_hf_wav2vec2_directory, load_hf_wav2vec2
from .model import Wav2Vec2ForCTC, Wav2Vec2Model
from .vocabulary import VOCAB_FILE, CtcVocabulary

__all__ = ["load_wav2vec2_backbone", "load_wav2vec2_ctc"]

_HEADS = ("ctc_head.", "quantizer.", "project_hid.", "project_q.")


def _check_directory(directory: Path) -> None:
    if not (directory / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{directory / CONFIG_NAME} not found: give a wav2vec 2.0 model directory")


def load_wav2vec2_backbone(directory: str | Path) -> Wav2Vec2Model:
    """The bare :class:`Wav2Vec2Model` of any wav2vec 2.0 directory (pretrained, CTC or bare; ours or Hugging
    Face's), heads left out, in eval mode.

    Raises:
        FileNotFoundError: no ``config.json``.
        ValueError: not a wav2vec 2.0 directory (the message names what it holds).
        WeightsFileError: a damaged weights file.
    """
    directory = Path(directory)
    _check_directory(directory)
    if is_hf_wav2vec2_directory(directory):
        return load_hf_wav2vec2(directory, task="base")
    config = Wav2Vec2Config.load(directory / CONFIG_NAME)
    state = read_safetensors(directory / WEIGHTS_NAME)
    bare = {name.removeprefix("wav2vec2."): t for name, t in state.items() if not name.startswith(_HEADS)}
    model = Wav2Vec2Model(config)
    model.load_weights(bare, source=str(directory / WEIGHTS_NAME))
    return model.eval()


def load_wav2vec2_ctc(directory: str | Path) -> tuple[Wav2Vec2ForCTC, CtcVocabulary]:
    """A CTC model and its vocabulary (``vocab.json``) from our directory or a Hugging Face ``Wav2Vec2ForCTC`` one.

    Raises:
        FileNotFoundError: no ``config.json`` or no ``vocab.json``.
        ValueError: not a CTC model, or a vocabulary of another size than the head.
    """
    directory = Path(directory)
    _check_directory(directory)
    if not (directory / VOCAB_FILE).is_file():
        raise FileNotFoundError(f"{directory / VOCAB_FILE} not found: a CTC model directory keeps its vocabulary there")
    vocabulary = CtcVocabulary.load(directory)
    if is_hf_wav2vec2_directory(directory):
        model = load_hf_wav2vec2(directory, task="ctc")
    else:
        config = Wav2Vec2Config.load(directory / CONFIG_NAME)
        if config.vocab_size < 2:
            raise ValueError(f"{directory} holds a wav2vec 2.0 model without a CTC head; fine-tune it with train-ctc")
        model = Wav2Vec2ForCTC.from_pretrained(directory)
    if len(vocabulary) != model.config.vocab_size:
        heads = model.config.vocab_size
        raise ValueError(f"{directory}: vocab.json has {len(vocabulary)} tokens, the CTC head {heads}")
    return model.eval(), vocabulary
