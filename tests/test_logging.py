"""The library logs through logging.getLogger("ffvision"); the CLI decides what reaches the terminal."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import pytest

from ffvision.cli import main
from ffvision.config import TrainConfig, apply_overrides
from ffvision.train.run import train


@pytest.fixture
def ffvision_logger():
    """The ffvision logger without the CLI's console handler, restored afterwards."""
    from ffvision.cli import _ConsoleHandler

    logger = logging.getLogger("ffvision")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    for h in [h for h in logger.handlers if isinstance(h, _ConsoleHandler)]:
        logger.removeHandler(h)
    logger.propagate = True
    yield logger
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_a_library_user_at_warning_sees_nothing_and_at_info_gets_every_line(fast_cfg: dict, capsys, ffvision_logger,
                                                                            tmp_path: Path):
    ffvision_logger.setLevel(logging.WARNING)
    s = train(apply_overrides(TrainConfig(), {**fast_cfg, "method": "asge", "epochs": 1}))
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    assert 0 <= s["test_accuracy"] <= 1
    ffvision_logger.setLevel(logging.INFO)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    ffvision_logger.addHandler(handler)
    try:
        train(apply_overrides(TrainConfig(), {**fast_cfg, "method": "bp", "epochs": 1, "out": str(tmp_path / "b")}))
    finally:
        ffvision_logger.removeHandler(handler)
    assert capsys.readouterr().out == ""  # the records went to the user's handler, not to print
    text = stream.getvalue()
    assert "data: fashion-mnist" in text and "epoch 1/1" in text and "test accuracy (bp vgg8" in text


def test_quiet_prints_the_result_only_and_train_log_keeps_the_progress(fast_cfg: dict, capsys):
    argv = ["train", "--method", "asge", *[x for k, v in fast_cfg.items() for x in (f"--{k.replace('_', '-')}",
                                                                                   str(v))]]
    code = main(["-q", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "epoch 1/2" not in out and "loading" not in out
    warned, result = out.split("\n", 1)  # warnings still show: this tiny run is short
    assert warned.startswith("warning: a short run: 14 optimizer steps in all (2 epochs x 7 steps of batch 32")
    assert result.startswith("test accuracy (asge vgg8") and "<- reported" in result
    log = (Path(fast_cfg["out"]) / "train.log").read_text()
    assert re.search(r"^\d{4}-\d\d-\d\d [\d:,]+ INFO epoch 2/2 ", log, re.M) and "test accuracy (asge" in log
    code = main([*argv, "--force", "-v"])  # -v after the command works too; a new run rewrites train.log
    out = capsys.readouterr().out
    assert code == 0 and "epoch 1/2" in out and "loading fashion-mnist" in out
    assert (Path(fast_cfg["out"]) / "train.log").read_text().count("INFO loading fashion-mnist") == 1


def test_tensorboard_only_when_asked(fast_cfg: dict, capsys, monkeypatch):
    import importlib.util

    code = main(["train", "--method", "bp", *[x for k, v in {**fast_cfg, "epochs": 1}.items()
                                             for x in (f"--{k.replace('_', '-')}", str(v))]])
    assert code == 0 and not (Path(fast_cfg["out"]) / "tensorboard").exists()  # installed or not: not asked
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    capsys.readouterr()
    code = main(["train", "--method", "bp", "--tensorboard", "--out", str(Path(fast_cfg["out"]).parent / "tb")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("ffvision: error: --tensorboard needs the tensorboard package: pip install tensorboard")


def test_version_and_changelog(capsys):
    from ffvision import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"ffvision {__version__}\n"
    changelog = (Path(__file__).parents[1] / "CHANGELOG.md").read_text()
    first = re.search(r"^## (\S+)", changelog, re.M)
    assert first and first.group(1) == __version__  # the newest entry is this version
