"""`tunedcl demo` (the loss demo) and the command line's top level."""

from __future__ import annotations

import pytest

from tunedcl.cli import main


def test_demo_prints_the_worked_example_and_the_fp16_contrast(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--n", "256"]) == 0
    out = capsys.readouterr().out
    assert "| 0 (SupCon) | 1 | -0.267 | -2.500 | 2.76e-04 | 0.821 |" in out
    assert "| 5000 | 1 | -0.940 | -2.663 | 1.97e-04 | 0.589 |" in out
    lines = {line.split("|")[1].strip() + "@" + line.split("|")[2].strip(): line for line in out.splitlines()
             if line.startswith("| tunedcl TCLLoss") or line.startswith("| naive")}
    assert lines["naive formula (reference code)@0.05"].rstrip(" |").endswith("nan")
    assert "nan" not in lines["tunedcl TCLLoss@0.05"]


def test_no_command_prints_help_and_bad_demo_size_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "train" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["demo", "--n", "1"])
