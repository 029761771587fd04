"""wav2vec 2.0 CTC training on the engine (``polyformer speech train-ctc``): a tiny model learns a few clips exactly,
the all-blank detector fires on a run that outputs only blanks, a pretrained encoder gets a new head, bad data fails
clearly."""

import json
import re

import pytest
import torch
from click.testing import CliRunner
from test_speech_asr import clip_folder

from polyformer.apps import pipeline
from polyformer.apps.cli import main
from polyformer.apps.engine import CTCTask, TrainingConfig, TrainingHealthError
from polyformer.apps.engine import train as engine_train
from polyformer.apps.recipes.speech_ctc import SpeechCtcTask, evaluate_ctc, load_ctc_recipe, train_ctc
from polyformer.speech.audio import load_audio, normalize_waveform
from polyformer.speech.data import CtcExamples, collate_ctc, read_audio_dataset
from polyformer.speech.wav2vec2 import CtcVocabulary, Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from polyformer.speech.wav2vec2.config import SIZES
from polyformer.speech.wav2vec2.pretrained import load_wav2vec2_ctc
from polyformer.speech.wav2vec2.transcribe import transcribe_ctc

TINY = ['model.size="tiny"', "model.dropout=0.0", "model.layer_drop=0.0", "model.mask_time_prob=0.0"]


def recipe(data, out, *overrides):
    loaded = load_ctc_recipe("ctc", [*TINY, *overrides, f"train.out_dir={json.dumps(str(out))}"])
    loaded.data.train = str(data)
    loaded.train.quiet = True
    return loaded


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
    """A tiny CTC model trained on four clips until it knows them (validated on the same four)."""
    tmp = tmp_path_factory.mktemp("ctc")
    data = clip_folder(tmp / "clips")
    settings = ["train.max_steps=150", "train.batch_size=4", "train.lr=3e-3", "train.warmup_steps=5",
                "train.eval_every=150", "train.threads=2", f"data.eval={json.dumps(str(data))}"]  # fmt: skip
    result, _ = train_ctc(recipe(data, tmp / "run", *settings), echo=lambda line: None)
    return data, result


def test_a_tiny_ctc_model_learns_four_clips_exactly(overfit_run, tmp_path):
    data, result = overfit_run
    model, vocabulary = load_wav2vec2_ctc(result.best_model_dir)
    clips = read_audio_dataset(data)
    scores = evaluate_ctc(model, vocabulary, clips, tsv=tmp_path / "clips.tsv")
    assert scores["wer"] == 0.0 and scores["cer"] == 0.0, (tmp_path / "clips.tsv").read_text()
    assert (result.out_dir / "vocab.json").is_file()


def test_transcribe_eval_and_the_pipeline_take_a_ctc_run(overfit_run, tmp_path):
    data, result = overfit_run
    clips = read_audio_dataset(data)
    first = clips.paths[0]
    out = CliRunner().invoke(main, ["speech", "transcribe", str(first), "--model", str(result.out_dir),
                                    "--output-dir", str(tmp_path / "txt")])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert f"{first}:\n  {clips.texts[0]}" in out.output
    assert (tmp_path / "txt" / f"{first.stem}.txt").read_text().strip() == clips.texts[0]
    for beams in ([], ["--beam-size", "4"]):  # greedy, and CTC prefix beam search
        scored = CliRunner().invoke(main, ["speech", "eval", str(data), "--model", str(result.out_dir), "--json",
                                           *beams])  # fmt: skip
        assert scored.exit_code == 0, scored.output
        assert json.loads(scored.output)["wer"] == 0.0
    beamed = CliRunner().invoke(main, ["speech", "transcribe", str(first), "--model", str(result.out_dir),
                                       "--beam-size", "3"])  # fmt: skip
    assert f"{first}:\n  {clips.texts[0]}" in beamed.output
    for beam_size in (None, 4):
        asr = pipeline("automatic-speech-recognition", model=str(result.out_dir), beam_size=beam_size)
        assert [item["text"] for item in asr([str(p) for p in clips.paths])] == [t.strip() for t in clips.texts]
    first_audio, second_audio = load_audio(clips.paths[0]), load_audio(clips.paths[1])
    joined = torch.cat([first_audio, first_audio, second_audio[: first_audio.numel()]])  # three windows
    model, vocabulary = load_wav2vec2_ctc(result.best_model_dir)
    [text] = transcribe_ctc(model, vocabulary, [joined], window_seconds=first_audio.numel() / 16000)
    assert text.startswith(f"{clips.texts[0]} {clips.texts[0]} ")  # windows joined in order
    with pytest.raises(ValueError, match="no timestamps"):
        asr(str(first), return_timestamps=True)


def test_the_all_blank_detector_warns_and_can_stop_the_run(tmp_path):
    """A constructed blank-only model (its head's blank bias far above the rest, nothing learnt at lr 1e-9)."""
    data = clip_folder(tmp_path / "clips")
    clips = read_audio_dataset(data)
    vocabulary = CtcVocabulary.build(clips.texts)
    config = Wav2Vec2Config(**SIZES["tiny"], vocab_size=len(vocabulary), layer_drop=0.0, mask_time_prob=0.0)
    examples = CtcExamples(clips, vocabulary, config.frames_for)

    def run(out, stop: bool, lines: list) -> None:
        torch.manual_seed(0)
        model = Wav2Vec2ForCTC(config)
        with torch.no_grad():
            model.ctc_head.bias[vocabulary.blank] = 100.0
        task = SpeechCtcTask(blank=vocabulary.blank, warn=lines.append, warn_after=2, stop_when_blank=stop,
                             vocabulary=vocabulary)  # fmt: skip
        settings = TrainingConfig(out_dir=str(out), max_steps=4, batch_size=4, lr=1e-9, eval_every=2, quiet=True,
                                  plot=False, threads=2)  # fmt: skip
        engine_train(model, task, examples, settings, eval_data=examples, collate_fn=collate_ctc, echo=lines.append)

    lines: list = []
    run(tmp_path / "run", False, lines)
    warnings = [line for line in lines if line.startswith("warning: every validation clip decodes to blanks only")]
    assert len(warnings) == 1, lines  # said once, at step 2
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["empty_outputs"] for m in metrics if m["event"] == "eval"] == [1.0, 1.0]
    assert all(m["blank_frames"] == 1.0 for m in metrics if m["event"] == "train")
    with pytest.raises(TrainingHealthError, match="stopped: every validation clip decodes to blanks only at step 2"):
        run(tmp_path / "run2", True, [])


def test_the_blank_detector_reads_the_validation_numbers():
    said = []
    task = CTCTask(blank=0, warn=said.append, warn_after=100)
    task.on_eval(50, {"empty_outputs": 1.0})  # too early: every CTC model starts all-blank
    task.on_eval(100, {"empty_outputs": 0.5})
    assert not said
    task.on_eval(150, {"empty_outputs": 1.0})
    task.on_eval(200, {"empty_outputs": 1.0})
    assert len(said) == 1 and "step 150" in said[0]
    logits = torch.full((2, 6, 4), -3.0)
    logits[..., 0] = 3.0  # every frame blank
    logits[1, 2, 3] = 9.0
    assert task.decode(logits, torch.tensor([6, 6])) == [[], [3]]


def test_a_pretrained_encoder_gets_a_new_head_for_all_the_transcriptions_characters(tmp_path):
    torch.manual_seed(0)
    config = Wav2Vec2Config(d_model=96, num_heads=4, encoder_layers=2, d_ff=192, conv_dim=[64] * 7,
                            pos_conv_kernel=32, pos_conv_groups=4, quantizer_entries=16, codevector_dim=32,
                            proj_codevector_dim=32)  # fmt: skip
    pretrained = Wav2Vec2ForPreTraining(config)
    pretrained.save_pretrained(tmp_path / "pretrained")
    data = clip_folder(tmp_path / "clips")
    settings = ["train.max_steps=2", "train.batch_size=2", "train.threads=2", f"data.eval={json.dumps(str(data))}",
                f"data.init={json.dumps(str(tmp_path / 'pretrained'))}", "data.label_fraction=0.5"]  # fmt: skip
    run = load_ctc_recipe("ctc", [*settings, f"train.out_dir={json.dumps(str(tmp_path / 'run'))}"])
    run.data.train, run.train.quiet = str(data), True
    result, _ = train_ctc(run, echo=lambda line: None)
    model, vocabulary = load_wav2vec2_ctc(result.model_dir)
    # trained on half the transcriptions, but the vocabulary has every character of all of them
    texts = read_audio_dataset(data).texts
    assert len(CtcVocabulary.build(texts[:2])) < len(CtcVocabulary.build(texts))
    assert len(vocabulary) == model.config.vocab_size == len(CtcVocabulary.build(texts))
    # the conv feature encoder stayed as pretrained (frozen); the rest trained
    start = pretrained.wav2vec2.state_dict()
    ended = model.wav2vec2.state_dict()
    assert all(torch.equal(ended[n], start[n]) for n in start if n.startswith("feature_encoder."))
    assert any(not torch.equal(ended[n], start[n]) for n in start if n.startswith("encoder.stack."))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (['model.size="huge"'], "model: unknown size 'huge'"),
        (["model.vocab_size=9"], "model.vocab_size comes from the vocabulary"),
        (["data.label_fraction=0"], r"data.label_fraction must be in \(0, 1\]"),
        (["data.init=\"nowhere\""], "nowhere"),
    ],
)
def test_bad_recipe_values_are_one_line_errors(tmp_path, args, message):
    data = clip_folder(tmp_path / "clips", count=3)
    out = CliRunner().invoke(main, ["speech", "train-ctc", str(data), *args, "--max-steps", "1", "--out",
                                    str(tmp_path / "run")])  # fmt: skip
    assert out.exit_code != 0 and "Traceback" not in out.output, out.output
    assert re.search(message, out.output), out.output


def test_characters_outside_a_resumed_vocabulary_and_too_short_clips_name_the_line(tmp_path):
    import soundfile

    data = clip_folder(tmp_path / "clips", count=3)
    soundfile.write(data / "short.wav", torch.zeros(300).numpy(), 16000)
    with (data / "metadata.csv").open("a") as handle:
        handle.write("short.wav,hello\n")
    out = CliRunner().invoke(main, ["speech", "train-ctc", str(data), *TINY, "--max-steps", "1", "--out",
                                    str(tmp_path / "run")])  # fmt: skip
    assert out.exit_code != 0 and "metadata.csv, line 5: 'short.wav' is too short for the model" in out.output


def test_the_pipeline_reads_a_hugging_face_ctc_directory_as_transformers_does(tmp_path):
    import transformers

    vocabulary = CtcVocabulary.build(["abc def"])
    config = transformers.Wav2Vec2Config(hidden_size=32, num_attention_heads=4, num_hidden_layers=2,
                                         intermediate_size=64, num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=4, vocab_size=len(vocabulary), pad_token_id=0,
                                         conv_dim=(16,) * 7)  # fmt: skip
    torch.manual_seed(0)
    reference = transformers.Wav2Vec2ForCTC(config).eval()
    reference.save_pretrained(tmp_path / "hf")
    vocabulary.save(tmp_path / "hf")
    audio = torch.randn(16000)
    with torch.no_grad():
        best = reference(normalize_waveform(audio)[None]).logits.argmax(-1)[0]
    expected = vocabulary.decode([int(i) for i in torch.unique_consecutive(best) if int(i) != 0])
    found = pipeline("automatic-speech-recognition", model=str(tmp_path / "hf"), precision="fp32")(audio)
    assert found == {"text": expected}


def test_validation_characters_outside_the_training_vocabulary_name_the_file_and_line(tmp_path):
    data = clip_folder(tmp_path / "clips", count=3)
    held = clip_folder(tmp_path / "held", count=1, start=3)
    rows = (held / "metadata.csv").read_text().splitlines()
    name = rows[1].split(",")[0]
    (held / "metadata.csv").write_text(f"{rows[0]}\n{name},zebra quiz ü\n")
    out = CliRunner().invoke(main, ["speech", "train-ctc", str(data), *TINY, f"data.eval={json.dumps(str(held))}",
                                    "--max-steps", "1", "--out", str(tmp_path / "run")])  # fmt: skip
    assert out.exit_code != 0 and "Traceback" not in out.output, out.output
    assert f"metadata.csv, line 2: the transcription of '{name}' has characters outside the vocabulary" in out.output
