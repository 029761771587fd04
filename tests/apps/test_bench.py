"""Smoke runs of `polyformer bench attention` and `polyformer bench moe` at tiny sizes, and their helpers."""

import json

import pytest
import torch
from click.testing import CliRunner

from polyformer.apps.cli import main
from polyformer.benchmarks.attention_backends import (
    Measurement,
    fit_exponent,
    overtakes,
    parse_backend_list,
    peak_allocated_bytes,
)


def test_bench_attention_writes_table_json_and_plot(tmp_path):
    out_json, out_png = tmp_path / "attention.json", tmp_path / "attention.png"
    args = [
        "bench", "attention",
        "--backends", "eager,sdpa,chunked:32,linformer:k=16,performer:features=16,local:8,block_sparse:block=8",
    ]
    args += [
        "--seq", "32,64", "--dim", "16", "--heads", "2", "--repeats", "1",
        "--features-sweep", "8,16", "--sweep-len", "32",
    ]
    result = CliRunner().invoke(main, args + ["--json", str(out_json), "--plot", str(out_png)])
    assert result.exit_code == 0, result.output
    assert "time exp" in result.output and "performer relative error" in result.output
    data = json.loads(out_json.read_text())
    rows = {(r["backend"], r["n"]): r for r in data["results"]}
    assert all(r["status"] == "ok" for r in rows.values())
    assert rows[("chunked:32", 64)]["rel_error"] < 1e-5 and rows[("sdpa", 64)]["rel_error"] == 0.0
    assert rows[("eager", 64)]["peak_bytes"] >= 2 * 64 * 64 * 4  # at least one (H, n, n) score tensor
    assert set(data["summary"]) == {spec for spec, _ in rows}
    assert set(data["performer_feature_errors"]["1.0"]) == {"8", "16"}
    assert out_png.read_bytes()[:4] == b"\x89PNG"


def test_bench_attention_reports_unsupported_and_out_of_memory_instead_of_crashing(tmp_path):
    out_json = tmp_path / "r.json"
    args = [
        "bench", "attention", "--backends", "eager,linformer,local:4",
        "--seq", "64,128", "--dim", "16", "--heads", "2",
    ]
    args += [
        "--repeats", "1", "--causal", "--backward", "--max-memory", "0.0001",
        "--features-sweep", "", "--json", str(out_json),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = {(r["backend"], r["n"]): r for r in json.loads(out_json.read_text())["results"]}
    assert rows[("linformer", 64)]["status"] == "unsupported" and "causal" in rows[("linformer", 64)]["note"]
    assert rows[("eager", 64)]["status"] == "skipped" and "out of memory" in rows[("eager", 64)]["note"]
    assert rows[("local:4", 64)]["status"] == "ok"


def test_bench_attention_rejects_bad_arguments():
    runner = CliRunner()
    assert runner.invoke(main, ["bench", "attention", "--backends", "flash9"]).exit_code != 0
    assert runner.invoke(main, ["bench", "attention", "--seq", "12,abc"]).exit_code != 0
    assert runner.invoke(main, ["bench", "attention", "--dim", "10", "--heads", "4"]).exit_code != 0


def test_backend_list_keeps_options_with_their_spec():
    assert parse_backend_list("eager,linformer:k=64,share=head,local:256") == [
        "eager",
        "linformer:k=64,share=head",
        "local:256",
    ]
    with pytest.raises(ValueError):
        parse_backend_list("eager,local:width=3")


def test_fit_exponent_and_overtake():
    ns = [1024, 2048, 4096]
    assert fit_exponent(ns, [n**2 * 3.0 for n in ns]) == pytest.approx(2.0)
    assert fit_exponent(ns, [n * 5.0 for n in ns], from_n=2048) == pytest.approx(1.0)
    rows = [Measurement("sdpa", n, "ok", n**2 / 1e6) for n in ns] + [Measurement("x", n, "ok", n / 500) for n in ns]
    assert overtakes(rows, "x") == 2048 and overtakes(rows, "sdpa", "x") is None  # 4.10 < 4.19 s at n=2048


def test_peak_allocated_bytes_sees_a_temporary():
    size = 1 << 20

    def make():
        a = torch.ones(size)  # 4 MiB, freed before returning
        return float(a.sum())

    assert 4 * size <= peak_allocated_bytes(make) < 8 * size


def test_bench_moe_smoke(tmp_path):
    out_json = tmp_path / "moe.json"
    args = ["bench", "moe", "--steps", "3", "--batch-size", "2", "--seq-len", "16", "--d-model", "16", "--heads", "2"]
    args += [
        "--layers", "2", "--d-ff", "32", "--experts", "4", "--top-k", "2",
        "--eval-batches", "2", "--json", str(out_json),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    results = json.loads(out_json.read_text())["results"]
    assert results["moe"]["active_parameters_per_token"] < results["moe"]["parameters"]
    # Same active feed-forward weights per token (2 experts of width 16 vs one MLP of width 32); per layer the
    # MoE adds only the router (E x D) and the second active expert's output bias (D).
    assert (
        results["moe"]["active_parameters_per_token"] - results["dense"]["active_parameters_per_token"]
        == 2 * (4 * 16 + 16)
    )
    assert results["dense"]["val_loss"] > 0 and results["moe"]["tokens_per_s"] > 0
