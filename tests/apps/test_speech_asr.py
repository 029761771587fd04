"""Training and fine-tuning Whisper-style models on the engine (``polyformer speech train-asr|finetune-asr|eval``):
a tiny model learns a few clips exactly, a crashed and resumed fine-tune ends with the same weights, bad data and
bad options fail with clear messages, and evaluation writes WER/CER and per-clip results."""

import csv
import functools
import json
import re
import shutil

import pytest
import torch
from cli_runs import metrics_lines, polyformer_process
from click.testing import CliRunner
from safetensors.torch import load_file

from polyformer.apps.cli import main
from polyformer.apps.engine import train as engine_train
from polyformer.apps.pipelines import pipeline
from polyformer.apps.recipes import speech_asr
from polyformer.apps.recipes.speech_asr import AsrTask, evaluate_asr, load_asr_recipe, train_asr
from polyformer.speech.data import SPOKEN_CORPUS_DIR, AsrExamples, collate_asr, read_audio_dataset
from polyformer.speech.whisper.pretrained import load_whisper, whisper_base_files

TINY = [
    "model.d_model=64", "model.num_heads=2", "model.encoder_layers=2", "model.decoder_layers=1", "model.d_ff=128",
    "model.dropout=0.0", "model.max_target_positions=96", "data.spec_augment=false", "data.speed_perturb=[]",
]  # fmt: skip


def clip_folder(folder, count=4, start=0):
    """The first ``count`` training clips of the embedded corpus (from ``start``) as a metadata.csv folder."""
    folder.mkdir(parents=True)
    with open(SPOKEN_CORPUS_DIR / "train" / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[start : start + count]
    with (folder / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "transcription"])
        for row in rows:
            shutil.copy(SPOKEN_CORPUS_DIR / "train" / row["file_name"], folder / row["file_name"])
            writer.writerow([row["file_name"], row["transcription"]])
    return folder


def recipe(data, out, *overrides, config="asr"):
    model = [] if config == "asr_finetune" else TINY  # a fine-tuned model keeps its architecture
    loaded = load_asr_recipe(config, [*model, *overrides, f"train.out_dir={json.dumps(str(out))}"])
    loaded.data.train = str(data)
    loaded.train.quiet = True
    return loaded


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
    """A tiny model trained on four clips until it knows them (validated on the same four)."""
    tmp = tmp_path_factory.mktemp("asr")
    data = clip_folder(tmp / "clips")
    settings = ["train.max_steps=160", "train.batch_size=4", "train.lr=3e-3", "train.warmup_steps=10",
                "train.eval_every=160", "train.threads=2", f"data.eval={json.dumps(str(data))}",
                f"tokenizer.path={json.dumps(str(_tokenizer(tmp)))}"]  # fmt: skip  # every letter, for fine-tuning
    result, scores = train_asr(recipe(data, tmp / "run", *settings))
    return data, result, scores


def test_a_tiny_model_overfits_a_few_clips_to_exact_transcripts(overfit_run):
    data, result, scores = overfit_run
    assert scores is None  # a folder without a test split: nothing to test on
    assert result.metrics["wer"] == 0.0 and result.metrics["cer"] == 0.0
    model, tokenizer = load_whisper(result.best_model_dir)
    clips = read_audio_dataset(data)
    found = evaluate_asr(model, tokenizer, clips, tsv=result.out_dir / "eval.tsv")
    assert found["wer"] == 0.0 and found["clips"] == 4 and found["words"] == sum(len(t.split()) for t in clips.texts)
    with open(result.out_dir / "eval.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [row["transcription"] for row in rows] == clips.texts and {row["wer"] for row in rows} == {"0.0"}
    assert (result.best_model_dir / "tokenizer.json").is_file() and (result.out_dir / "tokenizer.json").is_file()


def test_the_trained_model_transcribes_and_scores_from_the_command_line(overfit_run, tmp_path):
    data, result, _ = overfit_run
    clips = read_audio_dataset(data)
    out = CliRunner().invoke(main, ["speech", "transcribe", *map(str, clips.paths), "--model", str(result.out_dir),
                                    "--no-timestamps"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert all(f"  {text}\n" in out.output for text in clips.texts), out.output
    tsv = tmp_path / "clips.tsv"
    out = CliRunner().invoke(main, ["speech", "eval", str(data), "--model", str(result.best_model_dir), "--tsv",
                                    str(tsv)])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "(all, 4 clips" in out.output and "WER 0.00%, CER 0.00%" in out.output and "lower case" in out.output
    assert len(tsv.read_text().splitlines()) == 5


def test_a_crashed_and_resumed_finetune_ends_with_the_same_weights(overfit_run, tmp_path, monkeypatch):
    _, result, _ = overfit_run
    data = clip_folder(tmp_path / "new", count=8, start=10)
    settings = ["train.max_steps=6", "train.batch_size=4", "train.checkpoint_every=2", "train.keep_last=5",
                "train.eval_every=100", "train.threads=1", "data.eval_limit=1",
                f"data.init={json.dumps(str(result.best_model_dir))}"]  # fmt: skip

    def finetune(out, *extra, **engine_options):
        monkeypatch.setattr(speech_asr, "train", functools.partial(engine_train, **engine_options))
        return train_asr(recipe(data, out, *settings, *extra, config="asr_finetune"))[0]

    baseline = finetune(tmp_path / "baseline")

    def crash(step, values):
        if step == 3:
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        finetune(tmp_path / "crashed", on_step_end=crash)
    resumed = finetune(tmp_path / "crashed", "train.resume=" + json.dumps(str(tmp_path / "crashed")))
    expected = load_file(str(baseline.model_dir / "model.safetensors"))
    found = load_file(str(resumed.model_dir / "model.safetensors"))
    start = load_file(str(result.best_model_dir / "model.safetensors"))
    assert any(not torch.equal(expected[name], start[name]) for name in expected)
    for name, value in expected.items():
        torch.testing.assert_close(found[name], value, rtol=0, atol=0, msg=name)


def test_frozen_encoder_trains_only_the_decoder(overfit_run, tmp_path):
    _, result, _ = overfit_run
    data = clip_folder(tmp_path / "new", count=5, start=20)
    settings = ["train.max_steps=2", "train.batch_size=4", "train.eval_every=100", "data.eval_limit=1",
                "data.freeze_encoder=true", f"data.init={json.dumps(str(result.best_model_dir))}"]  # fmt: skip
    tuned = train_asr(recipe(data, tmp_path / "run", *settings, config="asr_finetune"))[0]
    before = load_file(str(result.best_model_dir / "model.safetensors"))
    after = load_file(str(tuned.model_dir / "model.safetensors"))
    changed = {name.split(".")[0] for name in before if not torch.equal(before[name], after[name])}
    assert changed == {"decoder"}


def test_freeze_encoder_steps_holds_the_encoder_then_trains_it(overfit_run, tmp_path):
    _, result, _ = overfit_run
    data = clip_folder(tmp_path / "new", count=5, start=20)
    out = CliRunner().invoke(main, [
        "speech", "finetune-asr", str(data), "--init", str(result.best_model_dir), "--freeze-encoder-steps", "2",
        "--max-steps", "3", "--batch-size", "4", "--lr", "1e-3", "--out", str(tmp_path / "run"),
        "train.checkpoint_every=1", "train.keep_last=5", "data.eval_limit=1",
    ])  # fmt: skip
    assert out.exit_code == 0, out.output
    start = load_file(str(result.best_model_dir / "model.safetensors"))
    checkpoints = tmp_path / "run" / "checkpoints"
    steps = [load_file(str(checkpoints / f"step-0000000{n}" / "model.safetensors")) for n in (2, 3)]
    encoder = [name for name in start if name.startswith("encoder.")]
    assert all(torch.equal(steps[0][name], start[name]) for name in encoder)
    assert any(not torch.equal(steps[1][name], start[name]) for name in encoder)
    assert any(not torch.equal(steps[0][name], start[name]) for name in start if name.startswith("decoder."))


def test_two_processes_train_and_gather_the_validation_error_rates(tmp_path):
    """--nproc 2: each process decodes its share of the validation clips; WER and CER count all of them."""
    data = clip_folder(tmp_path / "clips", count=8)
    args = ["speech", "train-asr", str(data), *TINY, "--batch-size", "4", "--nproc", "2", "--max-steps", "2"]
    args += ["train.plot=false", f"data.eval={json.dumps(str(data))}", "data.max_new_tokens=8"]
    done = polyformer_process(*args, "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "batch 4 = 2 process(es)" in done.stdout
    final = metrics_lines(tmp_path / "run", "eval")[-1]
    assert final["wer"] > 0 and final["cer"] > 0  # 2 steps learn nothing; 8 tokens cannot spell a clip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model.d_model=63"], "model: "),
        (['model.preset="vit_tiny"'], "model: unknown model preset 'vit_tiny'"),
        (["model.vocab_size=100"], "model.vocab_size comes from the tokenizer"),
        (["data.task=summarise"], "data.task must be 'transcribe' or 'translate'"),
        (["tokenizer.kind=word"], "tokenizer.kind must be 'char' or 'bpe'"),
        (["data.speed_perturb=[3.0]"], r"data.speed_perturb factors must be within \[0.5, 2\]"),
    ],
)
def test_bad_recipe_values_are_one_line_errors(tmp_path, args, message):
    data = clip_folder(tmp_path / "clips", count=3)
    out = CliRunner().invoke(main, ["speech", "train-asr", str(data), *TINY, *args, "--max-steps", "1", "--out",
                                    str(tmp_path / "run")])  # fmt: skip
    assert out.exit_code != 0 and "Traceback" not in out.output
    assert re.search(message, out.output), out.output


def test_bad_clips_stop_training_with_file_and_line_or_are_skipped(tmp_path):
    data = clip_folder(tmp_path / "clips", count=4)
    rows = (data / "metadata.csv").read_text().splitlines()
    rows[2] = rows[2].split(",")[0] + ",naïve transcription"
    (data / "metadata.csv").write_text("\n".join(rows) + "\n")
    fixed = "tokenizer.path=" + json.dumps(str(_tokenizer(tmp_path)))
    args = ["speech", "train-asr", str(data), *TINY, fixed, "--max-steps", "1", "--batch-size", "2", "--out"]
    out = CliRunner().invoke(main, [*args, str(tmp_path / "a")])
    assert out.exit_code != 0
    assert "metadata.csv, line 3: the transcription of" in out.output and "'ï'" in out.output
    assert "--skip-bad" in out.output
    out = CliRunner().invoke(main, [*args, str(tmp_path / "b"), "--skip-bad"])
    assert out.exit_code == 0, out.output
    assert "1 bad clips or rows skipped" in out.output


def _tokenizer(tmp_path):
    from polyformer.speech.whisper.tokenizer import WhisperTokenizer

    path = tmp_path / "tokenizer.json"
    if not path.is_file():
        WhisperTokenizer.train(["abcdefghijklmnopqrstuvwxyz'"], kind="char", languages=(), timestamps=False).save(path)
    return path


def test_finetune_needs_an_existing_model(tmp_path):
    out = CliRunner().invoke(main, ["speech", "finetune-asr", "spoken", "--init", str(tmp_path / "nowhere")])
    assert out.exit_code != 0 and "no such model directory" in out.output


@pytest.mark.skipif(whisper_base_files() is None, reason="the Whisper base wheels are not installed")
def test_finetuning_whisper_base_lowers_its_loss_on_new_audio(tmp_path):
    """Three steps of fine-tuning OpenAI's Whisper base on synthetic voices it never heard lower its loss there."""
    data = clip_folder(tmp_path / "clips", count=2, start=40)
    settings = ["train.max_steps=3", "train.batch_size=2", "train.lr=3e-5", "train.warmup_steps=0",
                "train.eval_every=3", "train.plot=false", f"data.eval={json.dumps(str(data))}"]  # fmt: skip
    loaded = recipe(data, tmp_path / "run", *settings, config="asr_finetune")
    model, tokenizer = load_whisper("whisper-base")
    prompt = tokenizer.sot_sequence("en")
    examples = AsrExamples(read_audio_dataset(data), tokenizer, prompt, fixed_window=True)
    batch = collate_asr([examples[i] for i in range(2)], tokenizer.eot, len(prompt))
    task = AsrTask(tokenizer=tokenizer, prompt=prompt, perplexity=False)
    with torch.no_grad():
        before = task.loss(model.eval(), batch).item()
    result, _ = train_asr(loaded)
    assert result.metrics["loss"] < before - 0.05, (before, result.metrics)
    assert result.metrics["wer"] < 0.5  # it still transcribes


def test_export_to_hugging_face_loads_in_transformers_and_transcribes(overfit_run, tmp_path):
    transformers = pytest.importorskip("transformers")
    data, result, _ = overfit_run
    out = CliRunner().invoke(main, ["speech", "export-hf", str(result.out_dir), str(tmp_path / "hf")])
    assert out.exit_code == 0, out.output
    hf = transformers.WhisperForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    ours, tokenizer = load_whisper(result.best_model_dir)
    features = torch.randn(2, 80, 3000, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([tokenizer.sot_sequence(None) + tokenizer.encode("the lazy dog")] * 2)
    with torch.no_grad():
        torch.testing.assert_close(hf(input_features=features, decoder_input_ids=ids).logits, ours(features, ids),
                                   rtol=1e-4, atol=1e-4)  # fmt: skip
    clips = read_audio_dataset(data)
    again = CliRunner().invoke(main, ["speech", "transcribe", *map(str, clips.paths), "--model", str(tmp_path / "hf"),
                                      "--no-timestamps"])  # fmt: skip
    assert again.exit_code == 0 and all(f"  {text}\n" in again.output for text in clips.texts), again.output
    asr = pipeline("automatic-speech-recognition", model=str(tmp_path / "hf"), timestamps=False)
    assert [found["text"] for found in asr([str(path) for path in clips.paths])] == clips.texts
    refused = CliRunner().invoke(main, ["speech", "export-hf", str(result.out_dir), str(tmp_path / "hf")])
    assert refused.exit_code != 0 and "is not empty" in refused.output



def test_joint_ctc_loss_mixes_cross_entropy_and_ctc_of_the_encoder(tmp_path):
    """With ctc_weight w the loss is (1 - w) CE + w CTC over each clip's unpadded encoder positions, and the CTC
    head (training only) is left out of the Hugging Face export."""
    import torch.nn.functional as F

    from polyformer.core.objectives import token_cross_entropy
    from polyformer.speech.whisper import Whisper, WhisperConfig, save_hf_whisper
    from polyformer.speech.whisper.tokenizer import WhisperTokenizer

    data = clip_folder(tmp_path / "clips", count=3)
    clips = read_audio_dataset(data)
    tokenizer = WhisperTokenizer.train(clips.texts, kind="char", languages=(), timestamps=False)
    ids = dict(vocab_size=tokenizer.vocab_size, sot_id=tokenizer.sot, eos_id=tokenizer.eot, pad_id=tokenizer.eot)
    torch.manual_seed(0)
    model = Whisper(WhisperConfig(d_model=64, num_heads=2, encoder_layers=1, decoder_layers=1, d_ff=128,
                                  fixed_window=False, ctc_head=True, **ids))  # fmt: skip
    prompt = tokenizer.sot_sequence(None)
    examples = AsrExamples(clips, tokenizer, prompt)
    batch = collate_asr([examples[i] for i in range(3)], tokenizer.eot, len(prompt))
    task = AsrTask(tokenizer=tokenizer, prompt=prompt, perplexity=False, ctc_weight=0.25)
    loss = task.loss(model, batch)
    logits, ctc_logits = model(batch.features, batch.tokens_in, ctc=True)
    assert ctc_logits.shape == (3, batch.features.shape[-1] // 2, tokenizer.vocab_size)
    targets = [torch.tensor(tokenizer.encode(text)) for text in clips.texts]
    ctc = F.ctc_loss(ctc_logits.log_softmax(-1).transpose(0, 1), torch.cat(targets), batch.frames // 2,
                     torch.tensor([len(t) for t in targets]), blank=tokenizer.eot, zero_infinity=True)  # fmt: skip
    torch.testing.assert_close(loss, 0.75 * token_cross_entropy(logits, batch.labels) + 0.25 * ctc)
    loss.backward()
    assert model.ctc_head.weight.grad.abs().sum() > 0
    save_hf_whisper(model, tmp_path / "hf", tokenizer)
    hf = pytest.importorskip("transformers").WhisperForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    window = torch.randn(3, 80, 3000)  # transformers takes 30 s windows only
    with torch.no_grad():
        torch.testing.assert_close(hf(input_features=window, decoder_input_ids=batch.tokens_in).logits,
                                   model.eval()(window, batch.tokens_in), rtol=1e-4, atol=1e-4)  # fmt: skip
    with pytest.raises(ValueError, match="no CTC head"):
        Whisper(WhisperConfig(d_model=64, num_heads=2, encoder_layers=1, decoder_layers=1, d_ff=128, **ids))(
            batch.features, batch.tokens_in, ctc=True
        )


@pytest.mark.parametrize("part, shipped, bound", [
    ("run_spoken_demo", "speech_spoken", 0.2),  # 12.2% when shipped
    ("run_ctc_demo", "speech_ctc_spoken", 0.45),  # 30.2% when shipped
])  # fmt: skip
def test_the_shipped_models_transcribe_voices_they_never_heard(part, shipped, bound):
    """The demo's first parts: the shipped Whisper-style and wav2vec 2.0 CTC checkpoints on held-out-voice clips of
    the embedded corpus."""
    from polyformer.apps.demos import speech
    from polyformer.apps.pipelines import SHIPPED_CHECKPOINTS

    lines = []
    cer = getattr(speech, part)(lines.append)
    assert lines[0].startswith(f"[speech] the shipped {shipped} model") and cer <= bound
    assert sum(p.stat().st_size for p in SHIPPED_CHECKPOINTS[shipped].iterdir()) <= 25e6
    assert sum(line.startswith("    heard:") for line in lines) == 4 and "CER" in lines[-1]
