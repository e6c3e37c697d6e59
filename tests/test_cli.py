"""The command line: train / eval / predict / list, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ffvision.cli import main


def flags(cfg: dict) -> list[str]:
    return [x for k, v in cfg.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, pattern: str) -> None:
    import re

    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ffvision: error: "), err
    assert "Traceback" not in err
    assert re.search(pattern, lines[0]), lines[0]


@pytest.fixture
def trained(fast_cfg: dict, capsys) -> Path:
    code, out, _ = run_cli(capsys, "train", "--method", "asge", *flags({**fast_cfg, "epochs": 1}))
    assert code == 0 and "heads" in out
    return Path(fast_cfg["out"])


def test_train_eval_predict(trained: Path, fast_cfg: dict, capsys, tmp_path: Path):
    summary = json.loads((trained / "summary.json").read_text())
    code, out, _ = run_cli(capsys, "eval", str(trained / "best.pt"), "--device", "cpu", "--json",
                           str(tmp_path / "e.json"))
    assert code == 0 and "goodness-sum" in out and "exit@0.9" in out and "ms@1" in out
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert res["inference"]["exit@0.9"]["latency_ms"] > 0 and res["inference"]["heads"]["peak_bytes_batch64"] > 0
    code, out, _ = run_cli(capsys, "eval", str(trained), "--strategy", "last", "--device", "cpu", "--no-inference")
    assert code == 0 and out.startswith("last: ")
    img = tmp_path / "shirt.png"
    Image.new("L", (28, 28), 128).save(img)
    rgb = tmp_path / "rgb.jpg"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(rgb)
    code, out, _ = run_cli(capsys, "predict", str(trained / "best.pt"), str(img), str(rgb), "--device", "cpu")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].startswith(f"{img}: ") and lines[0].count(",") == 2  # top-3 classes
    names = json.loads((trained / "summary.json").read_text())
    assert names and any(c in lines[0] for c in ("T-shirt/top", "Trouser", "Bag", "Sneaker", "Coat", "Dress",
                                                 "Sandal", "Shirt", "Pullover", "Ankle boot"))


def test_export_then_eval_and_predict_the_file(trained: Path, capsys, tmp_path: Path):
    model = tmp_path / "asge.pt"
    code, out, err = run_cli(capsys, "export", str(trained), "--strategy", "goodness-sum", "--format", "torchscript",
                             "--out", str(model))
    assert code == 0 and "goodness-sum" in out, err
    code, out, err = run_cli(capsys, "eval", str(model), "--json", str(tmp_path / "x.json"))
    assert code == 0 and "the one the file holds" in out, err
    res = json.loads((tmp_path / "x.json").read_text())
    ours = json.loads((trained / "summary.json").read_text())["test_accuracy_by_strategy"]["goodness-sum"]
    assert abs(res["test_accuracy"] - ours) <= 0.05  # float32 file, the run evaluated in its own precision
    img = tmp_path / "shirt.png"
    Image.new("L", (28, 28), 128).save(img)
    code, out, err = run_cli(capsys, "predict", str(model), str(img))
    assert code == 0 and out.startswith(f"{img}: "), err
    assert_one_line_error(*run_cli(capsys, "predict", str(model), str(img), "--strategy", "heads")[::2],
                          "holds the goodness-sum strategy only")
    assert_one_line_error(*run_cli(capsys, "export", str(trained), "--out", str(tmp_path / "a.bin"))[::2],
                          r"ends in \.onnx")
    with pytest.raises(SystemExit) as e:
        run_cli(capsys, "export", str(trained), "--format", "tflite", "--out", "m")
    assert e.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    assert_one_line_error(*run_cli(capsys, "export", str(trained), "--strategy", "heads", "--threshold", "0.9",
                                   "--out", str(tmp_path / "m.onnx"))[::2], "applies to --strategy early-exit only")


def test_flags_override_recipe(tmp_path: Path, fast_cfg: dict, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: bp\nepochs: 5\nlr: 1e-3\n")
    code, _, _ = run_cli(capsys, "train", "--config", str(recipe), *flags({**fast_cfg, "epochs": 1}))
    summary = json.loads((Path(fast_cfg["out"]) / "summary.json").read_text())
    assert code == 0 and summary["method"] == "bp" and summary["epochs"] == 1 and summary["config"]["lr"] == 1e-3


@pytest.mark.parametrize("argv,pattern", [
    (["train", "--method", "magic"], r"unknown method 'magic'; choose one of: asge, bp"),
    (["train", "--model", "resnet999"], r"unknown model 'resnet999'.*vgg8"),
    (["train", "--dataset", "svhn"], r"unknown dataset 'svhn'.*fashion-mnist"),
    (["train", "--config", "nope"], r"recipe 'nope' not found; shipped recipes: .*asge-fmnist"),
    (["train", "--device", "cuda:7"], r"(CUDA is not available|cuda)"),
    # options of other methods are refused, naming the methods that take them
    (["train", "--method", "asge", "--labels", "fourier", "--granularity", "layer", "--dry-run"],
     r"--labels does not apply to method 'asge'; it is an option of ffcnn, hinton"),
    (["train", "--method", "bp", "--labels", "morphological", "--dry-run"], r"--labels does not apply to .*'bp'"),
    (["train", "--method", "bp", "--head-lr", "0.1", "--dry-run"], r"--head-lr does not apply to method 'bp'.*asge"),
    (["train", "--method", "ffcnn", "--alpha", "1.0", "--dry-run"], r"--alpha does not apply to method 'ffcnn'"),
    (["train", "--method", "asge", "--sff-loss", "margin", "--dry-run"], r"--sff-loss does not apply.*sff"),
    (["train", "--method", "asge", "--filters", "64", "--dry-run"], r"--filters does not apply to model 'vgg8'"),
    (["train", "--image-size", "0", "--dry-run"], r"image_size must be >= 8, got 0"),
])
def test_bad_names_give_one_line(argv, pattern, fast_cfg: dict, capsys):
    cfg = {k: v for k, v in fast_cfg.items() if f"--{k.replace('_', '-')}" not in argv}
    code, _, err = run_cli(capsys, *argv, *flags(cfg))
    assert_one_line_error(code, err, pattern)


def test_bad_data_gives_one_line(tmp_path: Path, fast_cfg: dict, capsys):
    cfg = {**fast_cfg, "data_dir": str(tmp_path / "missing")}
    assert_one_line_error(*run_cli(capsys, "train", *flags(cfg))[::2], r"data directory .*missing does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg["data_dir"] = str(empty)
    assert_one_line_error(*run_cli(capsys, "train", *flags(cfg))[::2],
                          r"fashion-mnist: missing train-images-idx3-ubyte\[\.gz\].*--download.*dataset-fashion-mnist")
    broken = Path(fast_cfg["data_dir"])
    (broken / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bnonsense")
    cfg["data_dir"] = str(broken)
    assert_one_line_error(*run_cli(capsys, "train", *flags(cfg))[::2], r"corrupted IDX file .*t10k-images")


def test_bad_checkpoints_and_images_give_one_line(trained: Path, tmp_path: Path, fast_cfg: dict, capsys):
    junk = tmp_path / "junk.pt"
    # random bytes make torch's unpickler raise many exception types; these seeds give, in order,
    # UnpicklingError, IndexError, KeyError and UnicodeDecodeError (found by fuzzing torch.load)
    for seed, kind in [(0, "UnpicklingError"), (7, "IndexError"), (44, "KeyError"), (199, "UnicodeDecodeError")]:
        rng = random.Random(seed)
        junk.write_bytes(bytes(rng.getrandbits(8) for _ in range(300)))
        code, err = run_cli(capsys, "eval", str(junk))[::2]
        assert_one_line_error(code, err, rf"cannot read checkpoint .*corrupted.*{kind}")
        assert "weights_only=False" not in err  # never the advice to unpickle an untrusted file
    assert_one_line_error(*run_cli(capsys, "predict", str(junk), "x.png")[::2], r"cannot read checkpoint")
    bad_img = tmp_path / "bad.png"
    bad_img.write_text("this is not an image")
    assert_one_line_error(*run_cli(capsys, "predict", str(trained / "best.pt"), str(bad_img))[::2],
                          r"cannot read image .*bad.png")
    assert_one_line_error(*run_cli(capsys, "predict", str(trained / "best.pt"), str(tmp_path / "none.png"))[::2],
                          r"cannot read image .*none.png")
    # a checkpoint whose weights belong to another architecture
    import torch

    ck = torch.load(trained / "best.pt", weights_only=True)
    ck["config"]["model"] = "vgg11"
    torch.save(ck, tmp_path / "other.pt")
    assert_one_line_error(*run_cli(capsys, "eval", str(tmp_path / "other.pt"))[::2],
                          r"does not fit this ASGE \(another architecture")
    assert_one_line_error(*run_cli(capsys, "eval", str(trained), "--strategy", "vote")[::2], r"unknown strategy")
    # the checkpoint's model cannot be changed when resuming
    assert_one_line_error(*run_cli(capsys, "train", "--resume", str(trained), "--model", "vgg11")[::2],
                          r"cannot change model when resuming")


def test_list_and_help_do_not_load_torch():
    """`ffvision list`, `list --method`, `--help` and a bad name answer without importing torch (< 1 s)."""
    code = ("import sys; from ffvision.cli import main\n"
            "for argv in (['list'], ['list', '--method', 'asge'], ['list', '--method', 'nope']):\n"
            "    main(argv)\n"
            "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "unknown method 'nope'" in r.stderr and "asge: ASGE" in r.stdout


def test_list_and_help(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and "asge" in out and "vgg8" in out and "fashion-mnist" in out and "asge-cifar100" in out
    assert "ffcnn (model ffcnn3)" in out and "hinton (model mlp)" in out  # each method's default model
    code, out, _ = run_cli(capsys, "list", "--method", "ffcnn")
    assert code == 0 and "--labels" in out and "--num-negatives" in out and "--head-lr" not in out
    assert "default model: ffcnn3" in out and "strategies:    goodness, probe" in out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--width-mult" in out and "examples:" in out and "--resume" in out


def test_console_entry_point_and_ctrl_c(fast_cfg: dict, tmp_path: Path):
    """A real process: Ctrl-C saves last.pt and exits 130; --resume finishes the run."""
    cfg = {**fast_cfg, "epochs": 40, "out": str(tmp_path / "sig")}
    from processes import Job, wait_for

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    metrics = tmp_path / "sig" / "metrics.jsonl"
    with Job([sys.executable, "-m", "ffvision", "train", *flags(cfg)], env) as job:
        wait_for(metrics, job)
        assert metrics.exists(), job.output()[1]
        job.proc.send_signal(signal.SIGINT)
        code, out, err = job.wait(120)
    assert code == 130, err
    assert "interrupted at epoch" in err and "--resume" in err and "Traceback" not in err
    last = tmp_path / "sig" / "last.pt"
    assert last.exists()
    from ffvision.train.checkpoint import load_checkpoint

    done = load_checkpoint(last)["epoch"]
    res = subprocess.run([sys.executable, "-m", "ffvision", "train", "--resume", str(tmp_path / "sig"),
                          "--epochs", str(done + 1)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    epochs = [json.loads(x)["epoch"] for x in metrics.read_text().splitlines()]
    assert epochs == list(range(1, done + 2))
    assert (tmp_path / "sig" / "summary.json").exists()


@pytest.mark.parametrize("method,extra", [("ffcnn", ["--filters", "4"]),
                                          ("hinton", ["--width-mult", "0.01", "--strategy", "probe"]),
                                          ("asge", [])])
def test_new_methods_train_eval_and_cam(method, extra, fast_cfg: dict, capsys, tmp_path: Path):
    cfg = {**fast_cfg, "epochs": 1}
    if method != "asge":
        cfg.pop("width_mult")
        cfg["model"] = "ffcnn3" if method == "ffcnn" else "mlp"
    code, out, err = run_cli(capsys, "train", "--method", method, *flags(cfg), *extra)
    assert code == 0, err
    summary = json.loads((Path(cfg["out"]) / "summary.json").read_text())
    expected = {"goodness", "probe"} if method != "asge" else {"last", "goodness-sum", "heads"}
    assert set(summary["test_accuracy_by_strategy"]) == expected
    # top-5 is of the reported strategy (it was once counted for the default one): it matches `eval`
    code, out, err = run_cli(capsys, "eval", cfg["out"], "--device", "cpu", "--no-inference", "--json",
                             str(tmp_path / "ev.json"))
    assert code == 0, err
    again = json.loads((tmp_path / "ev.json").read_text())
    assert summary["test_top5_accuracy"] >= summary["test_accuracy"]
    assert abs(summary["test_top5_accuracy"] - again["test_top5_accuracy"]) < 1e-9
    img = tmp_path / "x.png"
    Image.new("L", (28, 28), 90).save(img)
    code, out, err = run_cli(capsys, "cam", cfg["out"], str(img), "--out", str(tmp_path / "cams"), "--device", "cpu")
    if method == "hinton":
        assert_one_line_error(code, err, "need convolutional feature maps")
    else:
        assert code == 0 and (tmp_path / "cams" / "x_cam.png").stat().st_size > 1000
    code, out, err = run_cli(capsys, "diagnose", cfg["out"], "--images", "30", "--out", str(tmp_path / "diag"),
                             "--device", "cpu")
    assert code == 0, err
    diag = json.loads((tmp_path / "diag" / "diagnose.json").read_text())
    assert (tmp_path / "diag" / "diagnose.png").stat().st_size > 1000 and diag["images"] == 30
    assert len(diag["layers"]) == {"ffcnn": 3, "hinton": 4, "asge": 7}[method]
    for entry in diag["layers"]:
        assert sum(entry["rank_histogram"]) == 30 and 1 <= entry["mean_rank"] <= 10
        assert entry["label_to_image_ratio"] >= 0 and 0 <= entry["pairs_ranked_right"] <= 1
        assert 0 <= entry["silent_units"] <= 1 and 0 < entry["active_fraction"] <= 1
        assert 0 <= entry["accuracy_without_label_bias"] <= 1 and entry["label_bias"] >= 0


def test_labels_command(tmp_path: Path, capsys):
    code, out, _ = run_cli(capsys, "labels", "--set", "morphological", "--num-classes", "12", "--out",
                           str(tmp_path / "l.png"))
    assert code == 0 and (tmp_path / "l.png").stat().st_size > 1000
    code, _, err = run_cli(capsys, "labels", "--set", "fourier", "--num-classes", "100", "--image-size", "8",
                           "--out", str(tmp_path / "x.png"))
    assert_one_line_error(code, err, "cannot make 100 distinct patterns")


def test_bad_label_intensity_is_one_line(fast_cfg: dict, capsys):
    code, _, err = run_cli(capsys, "train", "--method", "ffcnn", "--label-intensity", "1.5", *flags(fast_cfg))
    assert_one_line_error(code, err, r"label_intensity must be in \[0, 1\], got 1.5")


def test_dry_run_prints_a_recipe(fast_cfg: dict, capsys, tmp_path: Path):
    import yaml

    code, out, err = run_cli(capsys, "train", "--method", "bp", "--dry-run", *flags(fast_cfg))
    assert code == 0, err
    recipe = yaml.safe_load(out.split("# the resolved config (a recipe for --config):")[1].split("dry run OK")[0])
    assert recipe["method"] == "bp" and recipe["model"] == "vgg8" and "labels" not in recipe  # only bp's options
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    cfg = {k: v for k, v in fast_cfg.items() if k != "out"}
    code, _, err = run_cli(capsys, "train", "--config", str(tmp_path / "r.yaml"), "--dry-run", *flags(cfg))
    assert code == 0, err  # the printed config is a valid recipe


def test_argparse_errors_are_one_line_with_a_pointer_to_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--epochs", "abc"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "usage" not in err
    assert "invalid int value: 'abc'" in err and "ffvision train --help" in err


def test_a_recipe_with_another_method_keeps_only_what_applies(fast_cfg: dict, capsys):
    # README: `ffvision train --method bp --config asge-fmnist` trains the same recipe with backprop
    cfg = {k: v for k, v in fast_cfg.items() if k not in ("width_mult",)}
    code, out, err = run_cli(capsys, "train", "--method", "bp", "--config", "asge-fmnist", "--dry-run",
                             "--width-mult", "0.125", *flags(cfg))
    assert code == 0, err
    assert "its options for asge are not used (alpha, head_init, head_lr" in err
    assert "head_lr" not in out.split("dry run OK")[0]  # the resolved bp config has no ASGE option


@pytest.mark.parametrize("flag,value,pattern", [
    ("--negatives", "best", "negatives must be one of uniform, hard, goodness, got 'best'"),
    ("--ff-loss", "mse", "ff_loss must be one of bce, symba, ce, got 'mse'"),
    ("--goodness", "max", "goodness must be one of sum, mean, got 'max'"),
    ("--optimizer", "lbfgs", "optimizer must be one of adamw, sgd, got 'lbfgs'"),
    ("--momentum", "1.5", r"momentum must be in \[0, 1\), got 1.5"),
    ("--conv", "fft", "conv must be one of auto, direct, spectral, got 'fft'"),
])
def test_a_bad_choice_names_the_choices_in_one_line(capsys, flag, value, pattern):
    code, _, err = run_cli(capsys, "train", "--method", "hinton", flag, value)
    assert_one_line_error(code, err, pattern)


def test_train_help_groups_the_options_by_method(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    training = out.split("run options: training:")[1].split("\n\n")[0]
    assert "--epochs" in training and "--head-lr" not in training
    assert "--lr" in out.split("options of every method:")[1].split("\n\n")[0]
    assert "--head-lr" in out.split("options of asge:")[1].split("\noptions of ")[0]
    assert "--num-negatives" in out.split("options of ffcnn, hinton:")[1].split("\noptions of ")[0]
