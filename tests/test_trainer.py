"""Trainer: outputs, checkpoints that round-trip, exact resume, atomic writes, divergence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ffvision.config import TrainConfig, apply_overrides
from ffvision.errors import CheckpointError, TrainingDiverged, TrainingInterrupted
from ffvision.train import checkpoint as ckpt_mod
from ffvision.train.checkpoint import load_checkpoint, load_method_state, method_from_checkpoint
from ffvision.train.run import evaluate_checkpoint, train


def cfg_of(fast_cfg: dict, **kw) -> TrainConfig:
    return apply_overrides(TrainConfig(), {**fast_cfg, **kw})


def weights(run: Path, name: str = "last.pt") -> dict[str, torch.Tensor]:
    return load_checkpoint(run / name)["model"]


@pytest.mark.parametrize("method", ["asge", "bp"])
def test_run_writes_all_outputs(fast_cfg: dict, method: str):
    summary = train(cfg_of(fast_cfg, method=method), show_progress=False)
    run = Path(fast_cfg["out"])
    for f in ("last.pt", "best.pt", "metrics.jsonl", "curves.png", "summary.json"):
        assert (run / f).is_file(), f
    assert not list(run.glob(".*tmp*"))  # no temporary checkpoint left behind
    on_disk = json.loads((run / "summary.json").read_text())
    for key in ("method", "model", "dataset", "epochs", "num_train", "test_accuracy", "test_accuracy_by_strategy",
                "val_accuracy_best", "train_seconds", "train_images_per_second", "trainable_parameters", "config"):
        assert key in on_disk, key
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["num_train"] == 200 and on_disk["config"]["method"] == method
    assert 0.0 <= on_disk["test_accuracy"] <= 1.0
    expected = {"last", "goodness-sum", "heads"} if method == "asge" else {"last"}
    assert set(on_disk["test_accuracy_by_strategy"]) == expected
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert len(lines[0]["val_layer_accuracy"]) == (7 if method == "asge" else 1)
    ck = load_checkpoint(run / "last.pt")
    assert set(ck["optimizers"]) == set(ck["schedulers"])
    assert len(ck["optimizers"]) == (8 if method == "asge" else 1)  # 7 blocks + heads
    assert ck["config"]["method"] == method and "rng" in ck


def test_checkpoint_round_trip_gives_identical_predictions(fast_cfg: dict):
    train(cfg_of(fast_cfg), show_progress=False)
    run = Path(fast_cfg["out"])
    method, meta = method_from_checkpoint(load_checkpoint(run / "best.pt"))
    assert meta["num_classes"] == 10 and meta["classes"][0] == "T-shirt/top"
    again, _ = method_from_checkpoint(load_checkpoint(run))  # a run dir means its best.pt
    x = torch.rand(4, 1, 16, 16)
    for s in method.strategies:
        assert torch.equal(method.predict(x, s), again.predict(x, s))
    summary = json.loads((run / "summary.json").read_text())
    res = evaluate_checkpoint(run / "best.pt", device="cpu", inference=False)
    assert res["test_accuracy_by_strategy"] == pytest.approx(summary["test_accuracy_by_strategy"])


@pytest.mark.parametrize("stop_at", [7, 9])  # 7 = end of epoch 1 (7 steps/epoch); 9 = mid-epoch 2
def test_interrupted_and_resumed_run_matches_uninterrupted(fast_cfg: dict, tmp_path: Path, stop_at: int):
    full = tmp_path / "full"
    train(cfg_of(fast_cfg, out=str(full), epochs=3), show_progress=False)

    def stop(trainer):
        if trainer.global_step == stop_at:
            trainer.request_stop()

    part = tmp_path / "part"
    with pytest.raises(TrainingInterrupted, match="resume"):
        train(cfg_of(fast_cfg, out=str(part), epochs=3), callbacks=[stop], show_progress=False)
    assert load_checkpoint(part / "last.pt")["global_step"] == stop_at
    train(TrainConfig(), resume=part, show_progress=False)
    a, b = weights(full), weights(part)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from an uninterrupted run"
    assert [json.loads(x)["epoch"] for x in (part / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_resume_may_extend_epochs_but_not_change_the_run(fast_cfg: dict):
    train(cfg_of(fast_cfg, epochs=1), show_progress=False)
    run = Path(fast_cfg["out"])
    from ffvision.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot change lr"):
        train(TrainConfig(), resume=run, overrides={"lr": 0.5}, show_progress=False)
    summary = train(TrainConfig(), resume=run, overrides={"epochs": 2}, show_progress=False)
    assert summary["epochs"] == 2 and load_checkpoint(run / "last.pt")["epoch"] == 2
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg_of(fast_cfg), show_progress=False)


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt_mod.save_checkpoint(path, {"model": {"w": torch.ones(2)}})

    def broken_save(obj, fh):
        fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    with pytest.raises(OSError):
        ckpt_mod.save_checkpoint(path, {"model": {"w": torch.zeros(2)}})
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))  # the old file survived intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_nan_loss_stops_and_keeps_best_checkpoint(fast_cfg: dict):
    run = Path(fast_cfg["out"])

    def poison(trainer):
        if trainer.global_step == 10:  # during epoch 2
            with torch.no_grad():
                next(trainer.method.blocks[0].parameters()).fill_(float("nan"))

    # stopped at the very step whose loss is NaN (the one after the poisoning)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2 step 4; .*last.pt holds the last good "
                       r"state \(epoch 2 step 1\).*best checkpoint .*best.pt .*intact"):
        train(cfg_of(fast_cfg, epochs=3), callbacks=[poison], show_progress=False)
    best = load_checkpoint(run / "best.pt")
    assert best["epoch"] == 1 and all(torch.isfinite(v).all() for v in best["model"].values())
    last = load_checkpoint(run / "last.pt")  # never NaN weights: the last verified state
    assert (last["epoch"], last["step_in_epoch"]) == (1, 1)
    assert all(torch.isfinite(v).all() for v in last["model"].values())
    assert not (run / "summary.json").exists()


def test_the_last_good_state_resumes_consistently_and_reuses_its_buffers(fast_cfg: dict):
    """The divergence snapshot is a whole checkpoint once merged (history, sums and counters of one moment), and
    later snapshots write into the first one's tensors instead of allocating new ones."""
    run = Path(fast_cfg["out"])
    ptrs = []

    def poison(trainer):
        if trainer.global_step in (2, 4, 6):
            ptrs.append(next(iter(trainer.guard.good["model"].values())).data_ptr())
        if trainer.global_step == 10:
            with torch.no_grad():
                next(trainer.method.blocks[0].parameters()).fill_(float("nan"))

    with pytest.raises(TrainingDiverged):
        train(cfg_of(fast_cfg, epochs=3), callbacks=[poison], show_progress=False)
    assert len(ptrs) == 3 and len(set(ptrs)) == 1
    last = load_checkpoint(run / "last.pt")
    assert [r["epoch"] for r in last["history"]] == [1] and last["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["epoch_sums"].values())
    summary = train(TrainConfig(), resume=run, show_progress=False)  # the saved state continues to the end
    assert summary["epochs"] == 3 and [json.loads(x)["epoch"] for x in
                                       (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_callbacks_are_called_at_named_points(fast_cfg: dict):
    from ffvision.train.callbacks import Callback

    calls = []

    class Recorder(Callback):
        def on_fit_start(self, trainer):
            calls.append("fit")

        def on_train_epoch_start(self, trainer):
            calls.append("epoch")

        def on_log_interval(self, trainer, loss, accuracy):
            assert loss > 0 and 0 <= accuracy <= 1
            calls.append("log")

        def on_train_epoch_end(self, trainer, loss, accuracy):
            calls.append("train_end")

        def on_validation_end(self, trainer, record, improved):
            assert record["epoch"] == trainer.epoch and (improved or trainer.best["epoch"] < record["epoch"])
            calls.append("val_end")

    train(cfg_of(fast_cfg, epochs=2), callbacks=[Recorder()], show_progress=False)
    # 7 steps an epoch, a log interval of 2: steps 2, 4, 6 | 8, 10, 12, 14
    assert calls == ["fit", "epoch", "log", "log", "log", "train_end", "val_end",
                     "epoch", "log", "log", "log", "log", "train_end", "val_end"]


def test_nan_in_the_first_epoch_leaves_a_checkpoint(fast_cfg: dict):
    def poison(trainer):
        if trainer.global_step == 1:
            with torch.no_grad():
                next(trainer.method.blocks[0].parameters()).fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match="epoch 1 step 2; .*last.pt holds the last good state"):
        train(cfg_of(fast_cfg), callbacks=[poison], show_progress=False)
    assert load_checkpoint(Path(fast_cfg["out"]) / "last.pt")["global_step"] == 0


def test_exploding_loss_at_chance_is_reported_as_diverged(fast_cfg: dict, capsys):
    from ffvision.cli import main

    argv = ["train", "--method", "bp", "--lr", "1e3", "--epochs", "2"]
    for k, v in fast_cfg.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    code = main(argv)
    err = capsys.readouterr().err
    s = json.loads((Path(fast_cfg["out"]) / "summary.json").read_text())
    assert s["diverged"] and "exploded" in s["warnings"][0] and code == 3 and "the run diverged" in err


def test_dry_run_writes_nothing(fast_cfg: dict):
    res = train(cfg_of(fast_cfg, dry_run=True), show_progress=False)
    assert res["dry_run"] and not Path(fast_cfg["out"]).exists()


def test_bad_checkpoints(tmp_path: Path, fast_cfg: dict):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(CheckpointError, match="corrupted or not a PyTorch file"):
        load_checkpoint(bad)
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an ffvision checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    train(cfg_of(fast_cfg, epochs=1), show_progress=False)
    import ffvision

    other = ffvision.create_method("asge", model="vgg11", num_classes=10, in_channels=1, width_mult=0.125,
                                   image_size=16)
    with pytest.raises(CheckpointError, match="does not fit this ASGE"):
        load_method_state(other, weights(Path(fast_cfg["out"]), "best.pt"))


def test_reported_strategy_is_chosen_on_validation(fast_cfg: dict, tmp_path: Path):
    s = train(cfg_of(fast_cfg, method="asge"), show_progress=False)
    run = Path(fast_cfg["out"])
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = history[s["best_epoch"] - 1]
    by = best["val_accuracy_by_strategy"]
    assert s["strategy"] == best["val_strategy"] and by[s["strategy"]] == max(by.values())
    assert s["test_accuracy"] == s["test_accuracy_by_strategy"][s["strategy"]]  # every strategy still reported
    assert s["strategy_selected_on"] == "validation" and len(s["test_accuracy_by_strategy"]) == 3
    assert s["data"]["image_size"] == 16 and s["data"]["num_val"] == 40 and s["data"]["augment"] == "flip"
    method, _ = method_from_checkpoint(load_checkpoint(run))
    assert method.chosen_strategy() == s["strategy"]  # eval / predict use the run's choice
    given = train(cfg_of(fast_cfg, method="asge", strategy="last", out=str(tmp_path / "given")), show_progress=False)
    assert given["strategy"] == "last" and given["strategy_selected_on"] == "given"
    from ffvision.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown strategy 'probe' for asge"):
        train(cfg_of(fast_cfg, strategy="probe", dry_run=True), show_progress=False)


def test_out_never_overwrites_another_run(fast_cfg: dict, tmp_path: Path):
    from ffvision.errors import ConfigError

    afile = tmp_path / "afile"
    afile.write_text("x")
    # refused before any work: the (missing) data is not even looked at
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        train(cfg_of(fast_cfg, out=str(afile), data_dir=str(tmp_path / "nothing")), show_progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "summary.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"holds files of another run \(summary.json\).*--force"):
        train(cfg_of(fast_cfg, out=str(other)), show_progress=False)
    assert (other / "summary.json").read_text() == "{}"
    train(cfg_of(fast_cfg, out=str(other), force=True, epochs=1), show_progress=False)
    assert json.loads((other / "summary.json").read_text())["epochs"] == 1


def test_amp_auto_resolves_per_method_and_cpu(monkeypatch):
    """--amp auto: bf16 (+ channels_last) on a CPU with native bf16 only for the methods measured faster with it."""
    import ffvision
    from ffvision.train import placement

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    asge = ffvision.create_method("asge", model="vgg8", num_classes=10, in_channels=1, width_mult=0.125)
    bp_vgg = ffvision.create_method("bp", model="vgg8", num_classes=10, in_channels=1, width_mult=0.125)
    bp_mlp = ffvision.create_method("bp", model="mlp", num_classes=10, in_channels=1, image_size=28)
    hinton = ffvision.create_method("hinton", num_classes=10, in_channels=1, image_size=28)
    resolve = placement.resolve_precision
    monkeypatch.setattr(placement, "cpu_has_native_bf16", lambda: True)
    assert resolve(asge, cpu, "auto", None) == (True, True)
    assert resolve(bp_vgg, cpu, "auto", None) == (True, True)
    assert resolve(bp_mlp, cpu, "auto", None) == (False, False)  # not measured: float32
    assert resolve(hinton, cpu, "auto", None) == (False, False)
    assert resolve(asge, cpu, "off", None) == (False, False)  # channels_last comes with bf16 only
    assert resolve(asge, cpu, "auto", False) == (True, False)  # an explicit flag wins
    assert resolve(bp_mlp, cuda, "auto", None) == (True, True)  # CUDA: always
    monkeypatch.setattr(placement, "cpu_has_native_bf16", lambda: False)
    assert resolve(asge, cpu, "auto", None) == (False, False)  # emulated bf16 would be slow


def test_bf16_on_a_cpu_without_native_bf16_warns(fast_cfg: dict, monkeypatch, capsys):
    """--amp bf16 on a CPU that only emulates bf16 trains as asked, and says it will be slow."""
    from ffvision.train import run

    monkeypatch.setattr(run, "cpu_has_native_bf16", lambda: False)
    train(cfg_of(fast_cfg, amp="bf16", dry_run=True), show_progress=False)
    assert "warning: this CPU has no native bf16" in capsys.readouterr().out
    monkeypatch.setattr(run, "cpu_has_native_bf16", lambda: True)
    train(cfg_of(fast_cfg, amp="bf16", dry_run=True), show_progress=False)
    assert "no native bf16" not in capsys.readouterr().out


def test_schedulers_restore_this_steps_lr_under_the_current_schedule():
    """A resumed (possibly extended) run continues at its step's lr of the new schedule, through torch's API."""
    import warnings
    from types import SimpleNamespace

    from ffvision.train.schedule import WarmupCosine, make_schedulers, restore_schedulers, scheduler_states

    def fresh() -> dict:
        return {"block1": torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)}

    cfg = SimpleNamespace(scheduler_interval="step", epochs=2, warmup_epochs=0.5, min_lr_ratio=0.01)
    opts = fresh()
    scheds = make_schedulers(opts, cfg, steps_per_epoch=5)
    for _ in range(4):
        opts["block1"].step()
        scheds["block1"].step()
    saved = scheduler_states(scheds)
    longer = SimpleNamespace(**{**vars(cfg), "epochs": 4})  # extended on resume: 20 steps
    opts2 = fresh()
    scheds2 = make_schedulers(opts2, longer, steps_per_epoch=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # restoring raises no warning
        restore_schedulers(scheds2, saved)
    lam = WarmupCosine(20, 2, 0.01)
    assert opts2["block1"].param_groups[0]["lr"] == pytest.approx(0.1 * lam(4))
    assert scheds2["block1"].get_last_lr() == pytest.approx([0.1 * lam(4)])
    assert scheds2["block1"].last_epoch == 4
    opts2["block1"].step()
    scheds2["block1"].step()
    assert opts2["block1"].param_groups[0]["lr"] == pytest.approx(0.1 * lam(5))
