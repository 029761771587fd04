"""wav2vec 2.0 pretraining on the engine (``polyformer speech pretrain``) and its health monitor: the collapse
detector fires on a constructed collapsed codebook, the monitor's bands and stop, and the run's logged numbers."""

import json

import pytest
import torch
from test_speech_asr import clip_folder

from polyformer.apps.engine import HealthMonitor, HealthRule, TrainingConfig, TrainingHealthError
from polyformer.apps.engine import train as engine_train
from polyformer.apps.recipes.speech_wav2vec2 import (
    HealthSettings,
    NormalizedCrops,
    Wav2Vec2PretrainTask,
    health_rules,
    load_pretrain_recipe,
    pretrain_wav2vec2,
)
from polyformer.speech.data import collate_audio, read_audio_dataset
from polyformer.speech.wav2vec2 import Wav2Vec2Config, Wav2Vec2ForPreTraining
from polyformer.speech.wav2vec2.config import SIZES

SMALL_QUANTIZER = dict(quantizer_entries=16, codevector_dim=32, proj_codevector_dim=32, num_negatives=5)


def test_the_monitor_warns_once_after_patience_and_logs_a_health_event(tmp_path):
    said = []
    rule = HealthRule("code_perplexity", low=4.0, after=10, advice="codebook collapse", patience=3)
    monitor = HealthMonitor([rule], warn=said.append, log_path=tmp_path / "metrics.jsonl")
    for step in range(1, 10):
        monitor(step, {"code_perplexity": 1.0})  # before `after`: expected at the start
    monitor(10, {"code_perplexity": 1.0})
    monitor(11, {"code_perplexity": 9.0})  # one healthy value resets the count
    for step in range(12, 20):
        monitor(step, {"code_perplexity": 1.5})
    assert len(said) == 1 and said[0].startswith("warning: code_perplexity is 1.5 at step 14, outside [4, inf]")
    [event] = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert event["event"] == "health" and event["step"] == 14 and event["value"] == "code_perplexity"


def test_a_stop_rule_and_a_non_finite_value():
    monitor = HealthMonitor([HealthRule("grad_norm", low=0.0, high=10.0, stop=True, patience=1, advice="unstable")])
    monitor(1, {"grad_norm": 3.0})
    with pytest.raises(TrainingHealthError, match=r"stopped: grad_norm is nan at step 2, outside \[0, 10\]"):
        monitor(2, {"grad_norm": float("nan")})


def test_the_recipe_rules_use_the_codebook_size_and_chance():
    config = Wav2Vec2Config(**SIZES["tiny"], **SMALL_QUANTIZER)
    rules = {rule.name: rule for rule in health_rules(HealthSettings(), config, 1000, stop=False)}
    assert rules["code_perplexity"].low == 4.0 and rules["code_perplexity"].after == 100  # 2 entries per codebook
    assert rules["accuracy"].low == pytest.approx(1.5 / 6) and rules["accuracy"].after == 500  # 1.5 x chance (K=5)
    assert rules["grad_norm"].high == 50.0


def test_the_collapse_detector_fires_on_a_constructed_collapsed_codebook(tmp_path):
    """Every frame picks entry 0 of each codebook (the quantiser's weights zeroed, its bias favouring entry 0)."""
    data = clip_folder(tmp_path / "clips", count=4)
    crops = NormalizedCrops(read_audio_dataset(data, labelled=False), max_seconds=4.0)
    config = Wav2Vec2Config(**SIZES["tiny"], **SMALL_QUANTIZER, layer_drop=0.0)
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(config)
    with torch.no_grad():
        model.quantizer.weight_proj.weight.zero_()
        model.quantizer.weight_proj.bias.zero_()
        model.quantizer.weight_proj.bias[:: config.quantizer_entries] = 100.0
    rules = health_rules(HealthSettings(after_fraction=0.0), config, 6, stop=False)
    said = []
    monitor = HealthMonitor(rules, warn=said.append, log_path=tmp_path / "run" / "metrics.jsonl")
    task = Wav2Vec2PretrainTask(total_steps=6)
    settings = TrainingConfig(out_dir=str(tmp_path / "run"), max_steps=6, batch_size=4, lr=1e-9, quiet=True,
                              plot=False, threads=2, checkpoint_every=0)  # fmt: skip
    engine_train(model, task, crops, settings, collate_fn=collate_audio, on_step_end=monitor, echo=said.append)
    collapse = [line for line in said if line.startswith("warning: code_perplexity is 2 at step 3")]
    assert len(collapse) == 1 and "codebook collapse" in collapse[0], said
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(line["event"] == "health" and line["value"] == "code_perplexity" for line in lines)
    trained = [line for line in lines if line["event"] == "train"]
    logged = {"contrastive", "accuracy", "code_perplexity", "temperature"}
    assert trained and all(logged <= set(line) for line in trained)


def test_the_gumbel_temperature_falls_geometrically_over_the_run():
    task = Wav2Vec2PretrainTask(total_steps=100, temperature_start=2.0, temperature_end=0.5)
    assert task.temperature(0) == 2.0 and task.temperature(50) == pytest.approx(1.0) and task.temperature(100) == 0.5
    assert task.temperature(500) == 0.5


def test_a_resumed_run_continues_the_temperature_schedule(tmp_path):
    """Two steps of four, then the rest from the checkpoint: steps 3 and 4 use the temperatures of steps 2 and 3."""
    clips = read_audio_dataset(clip_folder(tmp_path / "clips", count=4), labelled=False)
    crops = NormalizedCrops(clips, max_seconds=2.0)
    config = Wav2Vec2Config(**SIZES["tiny"], **SMALL_QUANTIZER, layer_drop=0.0)
    settings = dict(out_dir=str(tmp_path / "run"), batch_size=4, lr=1e-4, quiet=True, plot=False, threads=2,
                    checkpoint_every=2, log_every=1)  # fmt: skip
    for steps in (2, 4):
        task = Wav2Vec2PretrainTask(total_steps=4)
        resume = str(tmp_path / "run") if steps == 4 else None
        engine_train(Wav2Vec2ForPreTraining(config), task, crops, TrainingConfig(max_steps=steps, resume=resume,
                     **settings), collate_fn=collate_audio)  # fmt: skip
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = {line["step"]: line["temperature"] for line in lines if line["event"] == "train"}
    assert logged == pytest.approx({step: task.temperature(step - 1) for step in (1, 2, 3, 4)})


def test_a_pretraining_config_refuses_a_vocabulary_and_bad_bands():
    from polyformer.apps.recipes.typed_config import ConfigError

    with pytest.raises(ConfigError, match="model.vocab_size comes from fine-tuning"):
        load_pretrain_recipe("wav2vec2_pretrain", ["model.vocab_size=30"])
    with pytest.raises(ConfigError, match="health.grad_norm_min < health.grad_norm_max"):
        load_pretrain_recipe("wav2vec2_pretrain", ["health.grad_norm_max=0"])


def test_a_few_hundred_steps_lower_the_contrastive_loss_and_keep_the_codebook_in_use(tmp_path):
    """Eight clips, random 2 s crops: the model learns their structure (validation on fixed masks)."""
    data = clip_folder(tmp_path / "clips", count=8)
    overrides = ['model.size="tiny"', "model.quantizer_entries=32", "model.codevector_dim=64",
                 "model.proj_codevector_dim=64", "model.num_negatives=10", "model.dropout=0.0", "data.max_seconds=2.0",
                 f"data.eval={json.dumps(str(data))}", "train.max_steps=240", "train.batch_size=8", "train.lr=2e-3",
                 "train.eval_every=120", "train.threads=2", "train.quiet=true", "train.plot=false",
                 f"train.out_dir={json.dumps(str(tmp_path / 'run'))}"]  # fmt: skip
    recipe = load_pretrain_recipe("wav2vec2_pretrain", overrides)
    recipe.data.train = str(data)
    said = []
    pretrain_wav2vec2(recipe, echo=said.append)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [line for line in lines if line["event"] == "eval"]
    first = [line for line in lines if line["event"] == "train"][0]
    assert first["contrastive"] > 2.2  # ln(11) = 2.40: chance among the target and 10 distractors
    chance = 2.398  # ln(11)
    assert evals[-1]["contrastive"] < min(chance, first["contrastive"]) - 0.15, evals
    assert evals[-1]["accuracy"] > 1 / 11, evals  # above chance
    assert evals[-1]["code_perplexity"] > 2 * 2  # the collapse floor: 2 entries per codebook
    assert not [line for line in said if "code_perplexity is" in line], said


def test_an_empty_folder_is_one_clear_line_and_writes_no_run(tmp_path):
    from click.testing import CliRunner

    from polyformer.apps.cli import main

    (tmp_path / "empty").mkdir()
    out = CliRunner().invoke(main, ["speech", "pretrain", str(tmp_path / "empty"), "--max-steps", "1", "--out",
                                    str(tmp_path / "run")])  # fmt: skip
    assert out.exit_code != 0 and "Traceback" not in out.output
    assert f"no audio clips in {tmp_path / 'empty'}" in out.output and not (tmp_path / "run").exists()
