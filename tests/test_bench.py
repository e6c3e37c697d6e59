"""`ffvision bench`: throughput and peak memory of a method against backprop, in fresh processes."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import assert_one_line_error, run_cli

from ffvision.train.budget import default_batch_size, default_epochs


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
                           "--repeats", "2", "--json", str(out))
    assert code == 0, err
    res = json.loads(out.read_text())
    for r in res["runs"].values():
        speeds = r["images_per_second_all"]
        assert len(speeds) == 2 and r["images_per_second"] == sorted(speeds)[1]  # the median of the turns
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


def test_a_batch_size_sweep_writes_json_and_a_plot_with_the_budget(capsys, tmp_path: Path):
    out, png = tmp_path / "sweep.json", tmp_path / "sweep.png"
    code, stdout, err = run_cli(capsys, "bench", "--method", "asge", "--model", "vgg8", "--width-mult", "0.125",
                                "--image-size", "16", "--batch-sizes", "8,16", "--micro-batch-size", "8",
                                "--budget", "1GiB", "--device", "cpu", "--steps", "1", "--warmup", "1",
                                "--json", str(out), "--plot", str(png))
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["batch_sizes"] == [8, 16] and res["micro_batch_size"] == 8 and res["budget_bytes"] == 2**30
    assert [p["runs"]["asge"]["micro_batches"] for p in res["points"]] == [1, 2]
    e = res["variants"]["asge"]
    assert len(e["peak_memory_bytes"]) == 2 and min(e["images_per_second"]) > 0
    assert e["largest_measured_batch_within_budget"] == 16
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "largest batch measured within the budget: 16" in stdout


def test_the_sweep_pairs_equal_micro_batches_and_finds_where_the_budget_is_reached(monkeypatch):
    from ffvision import bench as bench_module

    def fake(job: dict, what: str) -> dict:  # peak: 1 MiB + 1 MiB per image of the (micro-)batch held
        held = job["batch_size"] // (job["micro_batches"] or 1)
        return {"images_per_second": 100.0, "peak_memory_bytes": (1 + held) * 2**20, "process_peak_bytes": 1,
                "device": "cpu", "micro_batches": job["micro_batches"] or 1}

    monkeypatch.setattr(bench_module, "run_in_fresh_process", fake)
    res = bench_module.batch_sweep("asge", "vgg8", [32, 64, 128], micro_batch_size=32, budget=40 * 2**20,
                                   compare="bp,bp-accum,unsplit")
    for p in res["points"]:  # the method and bp-accum split alike; plain bp and the unsplit method hold the batch
        k = p["batch_size"] // 32
        assert [p["runs"][v]["micro_batches"] for v in ("asge", "bp", "bp-accum", "unsplit")] == [k, 1, k, 1]
    assert res["variants"]["bp"]["largest_measured_batch_within_budget"] == 32
    assert res["variants"]["bp"]["batch_at_budget"] == 39  # 1 + B MiB reaches 40 MiB at B = 39
    assert res["variants"]["asge"]["largest_measured_batch_within_budget"] == 128
    assert res["variants"]["asge"]["batch_at_budget"] is None  # flat: micro-batches hold the same at any batch


def test_a_budget_below_the_smallest_batch_and_sweep_flags_alone_are_one_line_errors(capsys):
    code, _, err = run_cli(capsys, "bench", "--method", "asge", "--model", "vgg8", "--width-mult", "0.125",
                           "--image-size", "16", "--batch-sizes", "8,16", "--budget", "1KiB", "--device", "cpu",
                           "--steps", "1", "--warmup", "1")
    assert_one_line_error(code, err, "is below what asge takes at the smallest batch, 8")
    code, _, err = run_cli(capsys, "bench", "--method", "asge", "--budget", "8GiB")
    assert_one_line_error(code, err, "--budget belong to a sweep: give --batch-sizes")
    code, _, err = run_cli(capsys, "bench", "--method", "asge", "--batch-sizes", "8,12", "--micro-batch-size", "8")
    assert_one_line_error(code, err, "multiple of --micro-batch-size 8: 12 is not")
    code, _, err = run_cli(capsys, "bench", "--method", "asge", "--batch-sizes", "8", "--compare", "unsplit")
    assert_one_line_error(code, err, "--compare unsplit measures the method without micro-batches")
    code, _, err = run_cli(capsys, "bench", "--method", "asge", "--batch-sizes", "8", "--budget", "lots")
    assert_one_line_error(code, err, "memory budget must look like 8GiB")


def test_a_sweeps_run_of_the_rule_counts_as_the_setting_it_chose(monkeypatch, tmp_path: Path):
    """--resume skips a setting the rule's run already trained; the report takes today's rule, not an old one's."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    import protocol

    today = protocol.rule_for(2000)
    assert today == {"batch_size": default_batch_size(2000), "epochs": default_epochs(2000)}
    rule_run = {"name": "asge-2000", "seed": 0, "budget": {}, "machine": protocol.machine(), "config": today}
    out = tmp_path / "data-sizes-here.jsonl"
    out.write_text(json.dumps(rule_run) + "\n")
    done = protocol.recorded("data-sizes", out)
    assert ("asge-2000", protocol.budget_key(today), 0) in done
    assert ("asge-2000", protocol.budget_key({"batch_size": 16, "epochs": 10}), 0) not in done
    old = {**rule_run, "config": {"batch_size": 16, "epochs": 24}}  # a run of the rule before this one
    swept = {**rule_run, "budget": today}
    assert protocol.rule_runs({"{}": [old], protocol.budget_key(today): [swept]}, 2000) == [swept]
    assert protocol.rule_runs({"{}": [old, rule_run]}, 2000) == [rule_run]
    assert protocol.rule_runs({"{}": [old]}, 2000) == [old]  # nothing of today's rule measured: as recorded
    assert protocol.parse_budget("rule") == {} and protocol.parse_budget("epochs=20,batch_size=8") == {
        "epochs": 20, "batch_size": 8}


def test_the_sweep_report_sets_the_rule_against_the_best_setting(monkeypatch, tmp_path: Path):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    import protocol

    def record(budget: dict, config: dict, val: float, seconds: float) -> dict:
        return {"name": "asge-2000", "seed": 0, "budget": budget, "config": config, "val_accuracy_best": val,
                "wall_seconds": seconds, "machine": "here", "commit": "abc", "date": "2026-01-01"}

    today = protocol.rule_for(2000)
    records = [record({}, {"batch_size": 16, "epochs": 24}, 0.90, 100),  # an earlier rule's run: a swept setting
               record({}, today, 0.85, 300), record({"batch_size": 128, "epochs": 10}, {}, 0.80, 50)]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    spec = {"folders": {"f": {"train_subset": 2000}}, "runs": {"asge-2000": {"folder": "f"}}}
    (row,) = protocol.sweep_report([path], spec)[2:]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1:5] == [f"batch {today['batch_size']}, {today['epochs']} epochs", "85.0", "300",
                          "batch_size 16, epochs 24 (of 3)"]
    assert cells[5:10] == ["90.0", "100", "+5.0", "3.00", "1 / 1"]
    path.write_text("".join(json.dumps(r) + "\n" for r in records[1:]))  # the defaults beat every swept setting
    cells = [c.strip() for c in protocol.sweep_report([path], spec)[2].split("|")[1:-1]]
    assert cells[4:9] == ["the defaults (of 2)", "85.0", "300", "+0.0", "1.00"]
