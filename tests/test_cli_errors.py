"""A user's mistake on the command line: one line that names the thing, the value and what is allowed, a
non-zero exit, never a traceback (``--debug`` shows it). Run in-process through ``tunedcl.cli.main``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunedcl.cli import main

QUICK = ["train", "--config", "quick", "--quiet"]

# (arguments, what the line must say); "{tmp}" is a fresh folder, "{run}" a finished tiny run, "{file}" a file.
CASES = [
    (["train", "--config", "nope"], "unknown config 'nope': not a file, and not a preset"),
    (["train", "--config", "{tmp}/missing.yaml"], "does not exist"),
    (["train", "--config", "{tmp}/bad.yaml"], "not valid YAML (line"),
    (["train", "--config", "{tmp}/list.yaml"], "a config must be a mapping of sections"),
    (["train", "--config", "{tmp}/section.yaml"], "section 'loss' must be a mapping"),
    ([*QUICK, "loss.k3=1"], "unknown config key 'loss.k3'; valid keys in loss: method, temperature, k1"),
    ([*QUICK, "losses.k1=1"], "unknown config key 'losses.k1'; keys are 'name' and section.field"),
    ([*QUICK, "k1=1"], "unknown config key 'k1'"),
    ([*QUICK, "train.epochs"], "must look like section.key=value"),
    ([*QUICK, "train.epochs=2.5"], "train.epochs must be an integer; got 2.5"),
    ([*QUICK, "train.epochs=0"], "train.epochs=0 is not allowed: training epochs must be > 0"),
    ([*QUICK, "train.epochs=-1"], "train.epochs=-1 is not allowed: training epochs must be > 0"),
    ([*QUICK, "train.max_steps=0"], "train.max_steps=0 is not allowed"),
    ([*QUICK, "loss.k1=-1"], "loss.k1=-1.0 is not allowed: k1 must be a finite number >= 0"),
    ([*QUICK, "loss.temperature=abc"], "loss.temperature must be a finite number; got 'abc'"),
    ([*QUICK, "loss.temperature=0"], "temperature must be a finite number > 0"),
    ([*QUICK, "loss.method=nosuch"], "loss.method: unknown method 'nosuch'; known methods:"),
    ([*QUICK, "loss.method=tcl-sll"], "did you mean 'tcl-ssl'?"),
    ([*QUICK, "loss.variant=in"], "loss.variant must be 'out' for method tcl, which does not use it"),
    ([*QUICK, "loss.method=simclr", "data.n_views=1"], "data.n_views must be >= 2 for self-supervised method"),
    ([*QUICK, "train.channels_last=maybe"], "train.channels_last must be true or false; got 'maybe'"),
    ([*QUICK, "optim.betas=[0.9]"], "optim.betas must be a list of 2 numbers"),
    ([*QUICK, "optim.betas=[0.9, 1.5]"], "optim.betas=(0.9, 1.5) is not allowed: AdamW betas must be two numbers"),
    ([*QUICK, "optim.nesterov=true", "optim.momentum=0"], "optim.nesterov=true needs optim.momentum > 0"),
    ([*QUICK, "optim.optimizer=rmsprop"], "optim.optimizer must be one of sgd, adamw, lars; got 'rmsprop'"),
    ([*QUICK, "optim.momentum=1"], "optim.momentum=1.0 is not allowed: SGD momentum must be in [0, 1)"),
    ([*QUICK, "data.fraction=1.5"], "data.fraction=1.5 is not allowed"),
    ([*QUICK, "data.fraction=0.5"], "data.fraction and data.per_class cannot both be set"),
    ([*QUICK, "data.augment=bogus"], "data.augment: unknown augmentation 'bogus'"),
    ([*QUICK, "data.dataset=digitz"], "data.dataset: unknown dataset 'digitz'; did you mean 'digits'?"),
    ([*QUICK, "data.options.colour=1"], "unknown config key 'data.options.colour'; options of dataset"),
    ([*QUICK, "data.options.label_type=coarse"], "data.options.label_type must be 'fine' for dataset fashion-mnist"),
    ([*QUICK, "model.encoder=resnt18"], "model.encoder: unknown model 'resnt18'; did you mean 'resnet18'?"),
    ([*QUICK, "model.options.widht=1"], "unknown config key 'model.options.widht'; options of model small-cnn"),
    ([*QUICK, "model.options=3"], "model.options must be a mapping of option: value"),
    ([*QUICK, "eval.linear_probe=fastest"], "eval.linear_probe must be one of fast, paper, both, none"),
    ([*QUICK, "train.precision=fp8"], "train.precision must be one of auto, bf16, fp32; got 'fp8'"),
    ([*QUICK, "train.device=meta"], "train.device must be auto, cpu, cuda or cuda:N; got 'meta'"),
    ([*QUICK, "name=../escape"], "name must be a plain folder name"),
    ([*QUICK, "--out", "{file}"], "is a file; choose a folder"),
    ([*QUICK, "--out", "{run}"], "already holds files; pass --resume to continue that run"),
    (["train", "--resume"], "--resume needs --out RUN_DIR"),
    (["train", "--resume", "--out", "{tmp}"], "holds no run (no config.yaml)"),
    (["train", "--resume", "--config", "quick", "--out", "{run}"], "do not pass --config"),
    (["train", "--resume", "--out", "{run}", "loss.k1=3"], "--resume may change only train.epochs"),
    (["eval", "{tmp}/nothing"], "holds no run (no config.yaml)"),
    (["eval", "{run}", "loss.k1=3"], "tunedcl eval only takes eval.*"),
    (["sweep", "--config", "quick", "--out", "{tmp}/s", "--grid", "name=../x"], "would not stay a folder name"),
    (["sweep", "--config", "quick", "--out", "{tmp}/s", "--seeds", "0"], "--seeds must be >= 1; got 0"),
    (["sweep", "--config", "quick", "--out", "{tmp}/s", "--grid", "loss.k9=1"], "unknown config key 'loss.k9'"),
    (["sweep", "--config", "quick", "--out", "{tmp}/s", "--grid", "loss.k1"], "must look like section.key=v1,v2"),
    (["report", "{tmp}"], "holds no finished run, sweep or exported study"),
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run directory (2 steps on scikit-learn's digits)."""
    pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn (pip install 'tunedcl[dev]')")
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main([*QUICK, "--out", str(out), "data.dataset=digits", "data.per_class=null", "model.options.width=0.25",
                 "train.max_steps=2", "train.batch_size=64", "train.tensorboard=false", "eval.linear_probe=none",
                 "eval.knn_k=5"])
    assert code == 0
    return out


def _fill(arguments: list[str], tmp: Path, run: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)).replace("{run}", str(run)).replace("{file}", str(tmp / "a-file"))
            for a in arguments]


@pytest.mark.parametrize("arguments,message", CASES, ids=[" ".join(c[0][2:] or c[0]) for c in CASES])
def test_a_mistake_is_one_line_and_a_non_zero_exit(
    arguments: list[str], message: str, tmp_path: Path, finished_run: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "bad.yaml").write_text("loss:\n  k1: [1, 2\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "section.yaml").write_text("loss: 3\n")
    (tmp_path / "a-file").write_text("not a folder\n")
    code = main(_fill(arguments, tmp_path, finished_run))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("tunedcl ")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    from tunedcl.train.config import ConfigError

    with pytest.raises(ConfigError, match="unknown config key 'loss.k3'"):
        main(["--debug", *QUICK, "--out", str(tmp_path / "x"), "loss.k3=1"])


def test_a_bug_is_one_line_too_and_names_debug(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import tunedcl.cli

    def broken(kind: str | None) -> int:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(tunedcl.cli, "_list", broken)
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (ZeroDivisionError: division by zero)" in err and "--debug" in err
