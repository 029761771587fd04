"""Whisper's tokenizer: byte-level BPE from a ``tokenizer.json`` (Hugging Face ``tokenizers``) plus
Whisper's special tokens, found by name.

The special tokens follow the text vocabulary in this order: ``<|endoftext|>``,
``<|startoftranscript|>``, one ``<|xx|>`` per language, ``<|translate|>``, ``<|transcribe|>``,
``<|startoflm|>``, ``<|startofprev|>``, ``<|nocaptions|>`` (the no-speech token; ``<|nospeech|>``
in newer files), ``<|notimestamps|>``, then the timestamp tokens ``<|0.00|>`` ... ``<|30.00|>``
every 0.02 s, which older ``tokenizer.json`` files leave out (their ids simply follow
``<|notimestamps|>``). An English-only vocabulary has no language or task tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer

__all__ = ["LANGUAGE_NAMES", "TIME_PRECISION", "WhisperTokenizer", "language_code"]

TIME_PRECISION = 0.02  # seconds per timestamp token

LANGUAGE_NAMES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko": "korean",
    "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish", "ca": "catalan",
    "nl": "dutch", "ar": "arabic", "sv": "swedish", "it": "italian", "id": "indonesian", "hi": "hindi",
    "fi": "finnish", "vi": "vietnamese", "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay",
    "cs": "czech", "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian", "la": "latin",
    "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak", "te": "telugu", "fa": "persian",
    "lv": "latvian", "bn": "bengali", "sr": "serbian", "az": "azerbaijani", "sl": "slovenian", "kn": "kannada",
    "et": "estonian", "mk": "macedonian", "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian",
    "ne": "nepali", "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer", "sn": "shona",
    "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan", "ka": "georgian", "be": "belarusian",
    "tg": "tajik", "sd": "sindhi", "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao",
    "uz": "uzbek", "fo": "faroese", "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk",
    "mt": "maltese", "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala", "ha": "hausa",
    "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}  # fmt: skip


def language_code(language: str) -> str:
    """``en``, ``English`` or ``english`` -> ``en``; an unknown language is a ValueError."""
    key = language.strip().lower()
    if key in LANGUAGE_NAMES:
        return key
    by_name = {name: code for code, name in LANGUAGE_NAMES.items()}
    if key in by_name:
        return by_name[key]
    raise ValueError(f"unknown language {language!r}; give a code such as 'en' or a name such as 'English'")


class WhisperTokenizer:
    """Text <-> ids with Whisper's special tokens.

    Attributes:
        eot, sot, translate, transcribe, sot_lm, sot_prev, no_speech, no_timestamps: special ids
            (None where the vocabulary lacks them).
        timestamp_begin: id of ``<|0.00|>``; ids from here up to ``vocab_size`` are timestamps.
        languages: the language codes in vocabulary order (empty for English-only models).
    """

    def __init__(self, tokenizer: Tokenizer, vocab_size: int | None = None):
        self.tokenizer = tokenizer
        found = tokenizer.get_vocab(with_added_tokens=True)
        self._ids = found

        def special(*names: str) -> int | None:
            return next((found[n] for n in names if n in found), None)

        self.eot = special("<|endoftext|>")
        self.sot = special("<|startoftranscript|>")
        if self.eot is None or self.sot is None:
            raise ValueError("not a Whisper tokenizer: <|endoftext|> or <|startoftranscript|> is missing")
        self.translate = special("<|translate|>")
        self.transcribe = special("<|transcribe|>")
        self.sot_lm = special("<|startoflm|>")
        self.sot_prev = special("<|startofprev|>")
        self.no_speech = special("<|nospeech|>", "<|nocaptions|>")
        self.no_timestamps = special("<|notimestamps|>")
        if self.no_timestamps is None:
            raise ValueError("not a Whisper tokenizer: <|notimestamps|> is missing")
        self.timestamp_begin = special("<|0.00|>") or self.no_timestamps + 1
        self.languages = [code for code in LANGUAGE_NAMES if f"<|{code}|>" in found]
        self.language_ids = [found[f"<|{code}|>"] for code in self.languages]
        self.vocab_size = vocab_size or max(found.values()) + 1

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 1000,
        languages: Sequence[str] = ("en",),
        timestamps: bool = True,
        kind: str = "bpe",
    ) -> WhisperTokenizer:
        """A new vocabulary trained on ``texts``, followed by Whisper's special tokens (one per language; none for
        ``languages=()``, an English-only layout) and, with ``timestamps``, the 1501 timestamp tokens.

        ``kind="bpe"``: byte-level BPE of about ``vocab_size`` text tokens (any text can be encoded).
        ``kind="char"``: one token per character seen in ``texts`` (``vocab_size`` is ignored); text with
        another character cannot be encoded (see :meth:`unknown_characters`).
        """
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if kind == "bpe":
            tokenizer = Tokenizer(models.BPE())
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tokenizer.decoder = decoders.ByteLevel()
            alphabet = pre_tokenizers.ByteLevel.alphabet()
            trainer = trainers.BpeTrainer(vocab_size=max(vocab_size, len(alphabet)), initial_alphabet=alphabet,
                                          show_progress=False)  # fmt: skip
            tokenizer.train_from_iterator(texts, trainer)
        elif kind == "char":
            characters = sorted(set().union(*(set(text) for text in texts)) | {" "})
            tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(characters)}, merges=[]))
            tokenizer.decoder = decoders.Fuse()
        else:
            raise ValueError(f"tokenizer kind must be 'bpe' or 'char', got {kind!r}")
        codes = [language_code(lang) for lang in languages]
        specials = ["<|endoftext|>", "<|startoftranscript|>", *[f"<|{c}|>" for c in codes]]
        if codes:
            specials += ["<|translate|>", "<|transcribe|>"]
        specials += ["<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
        if timestamps:
            specials += [f"<|{i * TIME_PRECISION:.2f}|>" for i in range(1501)]
        tokenizer.add_special_tokens(specials)
        return cls(tokenizer)

    @classmethod
    def from_file(cls, path: str | Path, vocab_size: int | None = None) -> WhisperTokenizer:
        """Read a ``tokenizer.json``; ``vocab_size`` is the model's (timestamps included)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: a Whisper model directory needs its tokenizer.json")
        return cls(Tokenizer.from_file(str(path)), vocab_size)

    def save(self, path: str | Path) -> None:
        self.tokenizer.save(str(path))

    @property
    def has_timestamps(self) -> bool:
        """Whether the vocabulary has timestamp tokens (a model trained here without them has none)."""
        return self.vocab_size > self.timestamp_begin

    @property
    def text_prefix(self) -> str:
        """What goes before a transcription's first word: a space for a byte-level vocabulary (whose words carry
        their leading space, as Whisper's do), nothing for a character vocabulary (space is a token of its own)."""
        return "" if self.tokenizer.pre_tokenizer is None else " "

    @property
    def multilingual(self) -> bool:
        return bool(self.languages)

    def language_id(self, language: str) -> int:
        code = language_code(language)
        if code not in self.languages:
            raise ValueError(f"this model's vocabulary has no language {code!r} (it has {len(self.languages)})")
        return self._ids[f"<|{code}|>"]

    def sot_sequence(
        self, language: str | None = "en", task: str = "transcribe", timestamps: bool = False
    ) -> list[int]:
        """The decoder prompt: ``<|startoftranscript|>`` [language task] [``<|notimestamps|>``].

        An English-only vocabulary ignores ``language`` and ``task`` (it has neither token).
        """
        if task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {task!r}")
        sequence = [self.sot]
        if self.multilingual:
            if language is None:
                raise ValueError("a multilingual model needs a language (or language detection)")
            sequence.append(self.language_id(language))
            task_id = self.transcribe if task == "transcribe" else self.translate
            if task_id is None:
                raise ValueError(f"this vocabulary has no <|{task}|> token")
            sequence.append(task_id)
        if not timestamps:
            sequence.append(self.no_timestamps)
        return sequence

    def encode(self, text: str) -> list[int]:
        """Text -> ids, without special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def unknown_characters(self, text: str) -> str:
        """The characters of ``text`` this vocabulary cannot encode, in order of first use ("" when it can encode
        all of it; a byte-level vocabulary encodes anything)."""
        if self.decode(self.encode(text)) == text:
            return ""
        missing = [c for c in dict.fromkeys(text) if self.decode(self.encode(c)) != c]
        return "".join(missing)

    def is_special(self, token: int) -> bool:
        return token >= self.eot

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text, dropping special and timestamp tokens."""
        return self.tokenizer.decode([int(t) for t in ids if int(t) < self.eot])

    def decode_with_timestamps(self, ids: Sequence[int]) -> str:
        """Ids -> text with timestamps shown as ``<|1.08|>``."""
        pieces: list[str] = []
        text: list[int] = []
        for token in ids:
            token = int(token)
            if token >= self.timestamp_begin:
                pieces.append(self.tokenizer.decode(text))
                text = []
                pieces.append(f"<|{(token - self.timestamp_begin) * TIME_PRECISION:.2f}|>")
            elif token < self.eot:
                text.append(token)
        pieces.append(self.tokenizer.decode(text))
        return "".join(pieces)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """Each id's own text piece (for word timing)."""
        return [self.tokenizer.decode([int(t)]) for t in ids]

    def non_speech_tokens(self) -> list[int]:
        """Tokens of symbols that are not speech (openai/whisper's ``suppress_tokens="-1"`` set):
        speaker tags, music notes and brackets, which a caption corpus is full of. Symbols a vocabulary cannot
        encode (a character vocabulary without them) are left out."""
        symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
        symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
        miscellaneous = set("♩♪♫♬♭♮♯")
        byte_level = self.text_prefix == " "
        result = set()
        for text in (" -", " '"):
            tokens = self.encode(text)
            if len(tokens) == 1 and self.decode(tokens) == text:
                result.add(tokens[0])
        for symbol in symbols + list(miscellaneous):
            for text in (symbol, " " + symbol):
                tokens = self.encode(text)
                if len(tokens) == 1 and self.decode(tokens) == text:
                    result.add(tokens[0])
                elif symbol in miscellaneous and byte_level and tokens:
                    result.add(tokens[0])  # the first byte of the symbol (openai/whisper's way)
        return sorted(result)
