"""`ffvision bench`: throughput and peak memory of a method against backprop, in fresh processes."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import assert_one_line_error, run_cli


def test_bench_compares_against_backprop_and_writes_json(capsys, tmp_path: Path):
    out = tmp_path / "bench.json"
    code, stdout, err = run_cli(capsys, "bench", "--method", "asge", "--model", "vgg8", "--width-mult", "0.125",
                                "--batch-size", "16", "--compare", "bp,bp-checkpoint,bp-accum", "--device", "cpu",
                                "--steps", "2", "--warmup", "1", "--json", str(out))
    assert code == 0, err
    res = json.loads(out.read_text())
    assert set(res["runs"]) == {"asge", "bp", "bp-checkpoint", "bp-accum"}
    for r in res["runs"].values():
        assert r["images_per_second"] > 0 and r["peak_memory_bytes"] > 0 and r["device"] == "cpu"
        assert r["process_peak_bytes"] > 0 and r["exact_breakdown"]["at_peak_parameter"] > 0
    a, b = res["runs"]["asge"], res["runs"]["bp"]
    assert abs(res["ratios"]["bp"]["throughput"] - a["images_per_second"] / b["images_per_second"]) < 1e-9
    assert abs(res["ratios"]["bp"]["memory"] - a["peak_memory_bytes"] / b["peak_memory_bytes"]) < 1e-9
    # the exact measure sees what checkpointing and micro-batching save
    assert res["runs"]["bp-checkpoint"]["peak_memory_bytes"] < b["peak_memory_bytes"]
    assert res["runs"]["bp-accum"]["peak_memory_bytes"] < b["peak_memory_bytes"]
    assert "asge" in stdout and "bp-accum" in stdout  # the printed table


def test_bench_repeats_take_turns_and_resolve_precision_like_train(capsys, tmp_path: Path):
    from ffvision.train.devices import cpu_has_native_bf16

    out = tmp_path / "bench.json"
    code, _, err = run_cli(capsys, "bench", "--method", "asge", "--model", "vgg8", "--width-mult", "0.125",
                           "--batch-size", "8", "--compare", "bp", "--device", "cpu", "--steps", "1", "--warmup", "1",
                           "--repeats", "3", "--json", str(out))
    assert code == 0, err
    res = json.loads(out.read_text())
    for r in res["runs"].values():
        speeds = r["images_per_second_all"]
        assert len(speeds) == 3 and r["images_per_second"] == sorted(speeds)[1]  # the median of the turns
        # --amp auto: what `ffvision train` would use on this CPU
        assert r["amp"] == ("bf16" if cpu_has_native_bf16() else "float32")
        assert r["channels_last"] == cpu_has_native_bf16()
    code, _, err = run_cli(capsys, "bench", "--method", "asge", "--model", "vgg8", "--width-mult", "0.125",
                           "--batch-size", "8", "--device", "cpu", "--steps", "1", "--warmup", "1", "--amp", "off",
                           "--no-channels-last", "--json", str(out))
    assert code == 0, err
    r = json.loads(out.read_text())["runs"]["asge"]
    assert r["amp"] == "float32" and r["channels_last"] is False


def test_bench_sff_granularity_and_bad_input(capsys, tmp_path: Path):
    code, _, err = run_cli(capsys, "bench", "--method", "sff", "--model", "mobilenet_v3_small", "--granularity",
                           "layer", "--batch-size", "4", "--device", "cpu", "--steps", "1", "--warmup", "0",
                           "--image-size", "28", "--json", str(tmp_path / "sff.json"))
    assert code == 0, err
    assert json.loads((tmp_path / "sff.json").read_text())["method_kwargs"] == {"granularity": "layer"}
    # the run options are checked as `ffvision train` checks them, with its messages
    code, _, err = run_cli(capsys, "bench", "--method", "asge", "--granularity", "layer")
    assert_one_line_error(code, err, "--granularity does not apply to method 'asge'; it is an option of sff")
    code, _, err = run_cli(capsys, "bench", "--method", "asge", "--model", "vgg99")
    assert_one_line_error(code, err, "unknown model 'vgg99'")
    code, _, err = run_cli(capsys, "bench", "--method", "asge", "--batch-size", "0")
    assert_one_line_error(code, err, "batch_size must be positive, got 0")
    code, _, err = run_cli(capsys, "bench", "--method", "asge", "--steps", "0")
    assert_one_line_error(code, err, "batch size, steps and repeats must be positive")
    code, _, err = run_cli(capsys, "bench", "--method", "asge", "--dropout", "1.5")
    assert_one_line_error(code, err, r"dropout must be in \[0, 1\), got 1.5")
    code, _, err = run_cli(capsys, "bench", "--method", "asge", "--amp", "fp8")
    assert_one_line_error(code, err, "amp must be one of auto, bf16, off, got 'fp8'")


def test_sweep_words_and_the_validation_pick(monkeypatch):
    """Sweep overrides keep 'off' a word (YAML 1.1 reads it as False); the pick ranks by validation alone."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    from pick_and_test import best_val
    from sweep_quick import parse_pairs

    assert parse_pairs(["amp=off", "input_norm=true", "filters=128", "labels=fourier"]) == {
        "amp": "off", "input_norm": True, "filters": 128, "labels": "fourier"}
    record = {"val_by_epoch": [{"goodness": 0.5, "probe": 0.9}, {"goodness": 0.7, "probe": 0.6}]}
    assert best_val(record, "goodness") == 0.7 and best_val(record, "probe") == 0.9
