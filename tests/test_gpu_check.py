"""benchmarks/gpu_check.sh --dry-run: the GPU check's code runs on the CPU with tiny sizes and writes its report,
so the script a GPU session runs (with minutes of device time) has already worked once."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_dry_run_passes_and_writes_its_report(tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    report = (tmp_path / "report.md").read_text()
    assert done.returncode == 0, report + done.stderr
    for section in ("Device", "Losses on the device", "Host syncs", "TCL loss", "Augmentations", "Training speed",
                    "CIFAR presets", "DDP"):
        assert f"## {section}" in report
    assert "Every section passed." in report and "| cifar100-resnet50 | 4 | 2 |" in report
