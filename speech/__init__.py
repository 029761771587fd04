"""polyformer.speech: the audio front end and Whisper-style speech recognition, built on polyformer.core.

Importing this package registers the Whisper presets (``whisper_*``) in the core registry.
"""

from . import whisper  # noqa: F401  (register the Whisper presets)
