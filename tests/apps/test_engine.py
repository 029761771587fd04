"""The training engine in one process: optimizer groups, schedule, sampler, EMA, checkpoints, logging, NaN stop."""

import json

import pytest
import torch
from engine_tiny_run import CLASSES, TinyConfig, build_model, run
from safetensors.torch import load_file
from torch import nn

from polyformer.apps.engine import (
    ClassificationTask,
    MetricsLog,
    NonFiniteLossError,
    ProgressReporter,
    ResumableBatchSampler,
    TrainingConfig,
    decay_parameter_groups,
    load_training_state,
    resolve_checkpoint,
    resolve_precision,
    warmup_cosine_factor,
    write_model_directory,
)
from polyformer.apps.engine.hardware import bf16_is_fast
from polyformer.apps.engine.optim import train_step
from polyformer.core import LearnedPositionalEmbedding, PretrainedModel


def weights(directory):
    return load_file(str(directory / "model.safetensors"))


def assert_same_weights(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


class _Tokens(PretrainedModel):
    config_class = TinyConfig

    def __init__(self):
        super().__init__(TinyConfig())
        self.head = nn.Linear(4, 10, bias=False)  # registered before the embedding it is tied to
        self.embed = nn.Embedding(10, 4)
        self.head.weight = self.embed.weight
        self.pos_embed = LearnedPositionalEmbedding(5, 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 4))  # not named below: decayed, whatever its name
        self.norm = nn.LayerNorm(4)
        self.proj = nn.Linear(4, 4)

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {"cls_token"}


def _group_ids(model):
    return {g["group"]: {id(p) for p in g["params"]} for g in decay_parameter_groups(model, 0.1)}


def test_weight_decay_skips_low_dim_parameters_and_the_models_no_weight_decay_names():
    model = _Tokens()
    groups = {g["group"]: g for g in decay_parameter_groups(model, 0.1)}
    assert {id(p) for p in groups["decay"]["params"]} == {id(model.mask_token), id(model.proj.weight)}
    exempt = [model.embed.weight, model.pos_embed.weight, model.cls_token, model.norm.weight, model.norm.bias]
    exempt.append(model.proj.bias)
    assert {id(p) for p in groups["no_decay"]["params"]} == {id(p) for p in exempt}
    assert groups["no_decay"]["weight_decay"] == 0.0 and len(groups["no_decay"]["params"]) == 6


def test_weight_decay_reads_no_weight_decay_through_a_module_wrapper_and_not_from_names():
    class Wrapper(nn.Module):  # like DDP: the model under ``module``
        def __init__(self, module):
            super().__init__()
            self.module = module

    model = _Tokens()
    assert _group_ids(Wrapper(model)) == _group_ids(model)
    plain = nn.Module()  # no no_weight_decay(): only matrices vs the rest
    plain.embed, plain.cls_token = nn.Embedding(10, 4), nn.Parameter(torch.zeros(1, 1, 4))
    plain.norm = nn.LayerNorm(4)
    assert _group_ids(plain) == {"decay": {id(plain.embed.weight), id(plain.cls_token)},
                                 "no_decay": {id(plain.norm.weight), id(plain.norm.bias)}}  # fmt: skip


def test_train_step_averages_micro_batches_clips_steps_and_schedules():
    torch.manual_seed(0)
    model, x = nn.Linear(3, 1), torch.randn(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    full_batch_grads = torch.autograd.grad(model(x).pow(2).mean(), list(model.parameters()))
    before = [p.detach().clone() for p in model.parameters()]
    def loss_fn(batch):
        return model(batch).pow(2).mean()

    values = train_step(model, optimizer, scheduler, loss_fn, [x[:2], x[2:]], clip_grad_norm=1e-3)
    assert values["grad_norm"] == pytest.approx(float(torch.cat([g.flatten() for g in full_batch_grads]).norm()))
    assert values["lr"] == 0.1 and optimizer.param_groups[0]["lr"] == 0.05
    update = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
    assert 0 < float(update.norm()) <= 0.1 * 1e-3 * 1.001  # lr x the clipped norm
    assert all(p.grad is None for p in model.parameters())


def test_train_step_refuses_a_non_finite_loss_before_touching_the_weights():
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    before = model.weight.detach().clone()
    seen = []
    with pytest.raises(FloatingPointError, match="the training loss is nan"):
        train_step(model, optimizer, scheduler, lambda b: model(b).sum() * float("nan"), [torch.ones(2, 3)],
                   on_non_finite=lambda what, value: seen.append(what))  # fmt: skip
    assert seen == ["the training loss"] and torch.equal(model.weight, before)
    assert model.weight.grad is None and optimizer.param_groups[0]["lr"] == 0.1


def test_write_model_directory_saves_given_state_and_ties_once(tmp_path):
    model = build_model()
    changed = {name: t + 1 for name, t in model.state_dict().items()}  # e.g. gathered from FSDP shards
    write_model_directory(model, tmp_path / "pretrained", full_state=changed)
    assert (tmp_path / "pretrained" / "config.json").is_file()
    assert_same_weights(weights(tmp_path / "pretrained"), changed)
    plain = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False))
    plain[1].weight = plain[0].weight
    write_model_directory(plain, tmp_path / "plain")
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["model.safetensors"]
    assert_same_weights(weights(tmp_path / "plain"), {"0.weight": plain[0].weight.detach()})


def test_warmup_then_cosine_to_the_floor():
    factors = [warmup_cosine_factor(s, warmup_steps=4, total_steps=20, min_ratio=0.1) for s in range(21)]
    assert factors[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert factors[4] == pytest.approx(1.0) and factors[20] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))


def test_sampler_ranks_and_accumulation_cover_each_global_batch():
    single = list(ResumableBatchSampler(40, global_batch=8, seed=3))
    shards = [list(ResumableBatchSampler(40, 8, grad_accum=2, rank=r, world_size=2, seed=3)) for r in range(2)]
    for step, batch in enumerate(single):
        pieces = [shards[r][2 * step + m] for m in range(2) for r in range(2)]
        assert sorted(sum(pieces, [])) == sorted(batch) and all(len(p) == 2 for p in pieces)
    resumed = ResumableBatchSampler(40, 8, seed=3)
    resumed.set_position(0, 3)
    assert list(resumed) == single[3:]
    resumed.set_position(1, 0)
    assert list(resumed) != single


def test_length_bucketing_groups_similar_lengths_and_keeps_every_sample_once():
    lengths = [(i * 37) % 101 for i in range(100)]
    plain = ResumableBatchSampler(100, 10, seed=5)
    bucketed = ResumableBatchSampler(100, 10, seed=5, lengths=lengths, bucket_steps=5)
    spread = lambda sampler: sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in sampler)  # noqa: E731
    assert sorted(sum(list(bucketed), [])) == sorted(sum(list(plain), [])) == list(range(100))
    assert spread(bucketed) < spread(plain) / 3
    assert list(ResumableBatchSampler(100, 10, seed=5, lengths=lengths, bucket_steps=5)) == list(bucketed)
    resumed = ResumableBatchSampler(100, 10, seed=5, lengths=lengths, bucket_steps=5)
    resumed.set_position(0, 4)
    assert list(resumed) == list(bucketed)[4:]
    shards = [list(ResumableBatchSampler(100, 10, 1, r, 2, seed=5, lengths=lengths, bucket_steps=5)) for r in range(2)]
    assert [sorted(a + b) for a, b in zip(*shards)] == [sorted(b) for b in bucketed]
    with pytest.raises(ValueError, match="one length per training sample"):
        ResumableBatchSampler(100, 10, lengths=lengths[:50], bucket_steps=5)


def test_sampler_rejects_batches_that_do_not_split():
    with pytest.raises(ValueError, match="divisible"):
        ResumableBatchSampler(40, 6, grad_accum=4)
    with pytest.raises(ValueError, match="fewer than one batch"):
        ResumableBatchSampler(4, 8)


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="precision"):
        TrainingConfig(precision="fp16")
    with pytest.raises(ValueError, match="ema_decay"):
        TrainingConfig(ema_decay=1.5)


def test_precision_auto_follows_the_hardware():
    expected = "bf16" if bf16_is_fast("cpu") else "fp32"
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"


def test_run_writes_checkpoints_best_and_logs(tmp_path):
    model, result = run(tmp_path, keep_last=1, plot=True)
    assert result.steps == 12 and result.metrics["accuracy"] > 0.5
    assert [p.name for p in sorted((tmp_path / "checkpoints").glob("step-*"))] in (
        ["step-00000012"],
        [result.best_checkpoint.name, "step-00000012"],
    )
    assert resolve_checkpoint(tmp_path) == result.last_checkpoint
    state = load_training_state(result.last_checkpoint)  # weights_only=True
    assert state["step"] == 12 and state["epoch"] == 2 and state["epoch_step"] == 0
    summary = json.loads((result.best_checkpoint / "summary.json").read_text())
    assert summary["best"]["step"] == int(result.best_checkpoint.name.split("-")[1])
    assert_same_weights(weights(result.model_dir), {k: v for k, v in model.state_dict().items()})
    events = [json.loads(line)["event"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert events[0] == "start" and events[-1] == "end" and events.count("train") == 6 and events.count("eval") == 3
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    run(tmp_path / "a", max_steps=6)
    run(tmp_path / "b", max_steps=6, grad_accum=4)
    assert_same_weights(weights(tmp_path / "a" / "model"), weights(tmp_path / "b" / "model"))


def test_ema_weights_are_exported(tmp_path):
    model, result = run(tmp_path, max_steps=6, ema_decay=0.5)
    assert (result.last_checkpoint / "ema" / "model.safetensors").is_file()
    exported, raw = weights(result.model_dir), weights(result.last_checkpoint)
    assert_same_weights(exported, weights(result.last_checkpoint / "ema"))
    assert not torch.equal(exported["head.weight"], raw["head.weight"])


def test_bf16_autocast_trains(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYFORMER_NATIVE_BF16", "1")  # explicit bf16 warns on emulated-bf16 CPUs
    _, result = run(tmp_path, max_steps=4, precision="bf16", checkpoint_every=None)
    assert result.metrics["loss"] < 5


class _NanAtStep(ClassificationTask):
    def __init__(self, step):
        super().__init__(CLASSES)
        self.step, self.calls = step, 0

    def loss(self, model, batch):
        self.calls += 1
        loss = super().loss(model, batch)
        return loss * float("nan") if self.calls == self.step else loss


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLossError, match="at step 7") as caught:
        run(tmp_path, task=_NanAtStep(7), max_steps=12)
    assert caught.value.step == 7 and caught.value.last_checkpoint.name == "step-00000004"
    assert (tmp_path / "checkpoints" / "step-00000004" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["event"] == "stopped"


def test_progress_plain_lines_and_quiet():
    lines = []
    reporter = ProgressReporter(10, mode="lines", echo=lines.append)
    reporter.report(5, {"loss": 0.5})
    reporter.message("eval")
    quiet = ProgressReporter(10, mode="quiet", echo=lines.append)
    quiet.report(5, {"loss": 0.5})
    quiet.message("x")
    assert lines == ["step 5/10  loss 0.5", "eval"]


def test_metrics_log_drops_lines_after_the_resumed_step(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    for step in range(5):
        log.write("train", step=step)
    with (tmp_path / "m.jsonl").open("a") as handle:
        handle.write('{"event": "tr')  # torn line of a killed run
    log.truncate_after(2)
    assert [json.loads(line)["step"] for line in (tmp_path / "m.jsonl").read_text().splitlines()] == [0, 1, 2]
