"""polyformer.speech: audio front end, wav2vec2 (pretraining + CTC) and Whisper-style ASR, built on polyformer.core."""
