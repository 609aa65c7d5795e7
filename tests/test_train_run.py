"""End-to-end runs of `tunedcl train` on scikit-learn's digits (offline, seconds): the run directory,
exact resume after SIGKILL at random moments and after Ctrl-C, a non-finite loss, CLI errors, and DDP
with 2 processes under torchrun against 1 process."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn (pip install 'tunedcl[dev]')")

TINY = [
    "name=tiny", "data.dataset=digits", "data.per_class=null", "model.width=0.25", "train.batch_size=64",
    "train.epochs=3", "train.threads=1", "train.checkpoint_every_steps=3", "optim.warmup_epochs=0.5",
    "eval.linear_probe=fast", "eval.probe_epochs=20", "eval.knn_k=20", "eval.every_epochs=2",
]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def tunedcl(*args: str) -> list[str]:
    return [sys.executable, "-m", "tunedcl", *args]


def train_command(out: Path, *extra: str) -> list[str]:
    return tunedcl("train", "--config", "quick", "--out", str(out), "--quiet", *TINY, *extra)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert state["finished"]
    return state["model"]


def checkpoint_step(run_dir: Path) -> int:
    path = run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        return -1
    try:
        return torch.load(path, map_location="cpu", weights_only=False)["step"]
    except Exception:  # noqa: BLE001 - replaced while we read it: try again later
        return -1


def wait_for_step(process: subprocess.Popen, run_dir: Path, step: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while checkpoint_step(run_dir) < step:
        assert process.poll() is None, f"the run ended before step {step}"
        assert time.monotonic() < deadline, f"no checkpoint at step {step} after {timeout} s"
        time.sleep(0.05)


def epoch_losses(run_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "epoch" in r]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    done = subprocess.run(train_command(out), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out


def test_a_finished_run_directory_holds_everything(reference_run: Path) -> None:
    for name in ("config.yaml", "metrics.jsonl", "checkpoints/last.pt", "results.json", "report.md",
                 "loss_curve.png"):
        assert (reference_run / name).is_file(), name
    results = json.loads((reference_run / "results.json").read_text())
    for key in ("linear_top1", "knn_top1", "train_seconds", "views_per_second", "peak_memory_bytes"):
        assert key in results, key
    # Digits are easy: even 3 tiny epochs give far better than the 10% of chance.
    assert results["linear_top1"] > 50 and results["knn_top1"] > 50
    epochs = [r for r in map(json.loads, (reference_run / "metrics.jsonl").read_text().splitlines()) if "epoch" in r]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert all({"loss", "lr", "views_per_s", "seconds", "step"} <= set(r) for r in epochs)
    assert "knn_top1" in epochs[1] and "knn_top1" not in epochs[0]  # eval.every_epochs=2
    assert "linear top-1" in (reference_run / "report.md").read_text()


def test_sigkill_at_random_moments_then_resume_ends_with_identical_weights(
    reference_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    rng = random.Random(0)
    process = subprocess.Popen(train_command(out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for kill_after_step in (4, 31):  # mid-epoch 1 (23 steps per epoch), then mid-epoch 2 of the resumed run
        wait_for_step(process, out, kill_after_step)
        time.sleep(rng.uniform(0.0, 0.4))  # any moment: mid-step, mid-checkpoint write, ...
        process.kill()
        process.wait()
        process = subprocess.Popen(tunedcl("train", "--out", str(out), "--resume", "--quiet"), env=ENV,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr.decode()
    reference, resumed = final_weights(reference_run), final_weights(out)
    for name, tensor in reference.items():
        assert torch.equal(resumed[name], tensor), name
    assert epoch_losses(out) == epoch_losses(reference_run)


def test_ctrl_c_leaves_a_resumable_run(reference_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = subprocess.Popen(train_command(out), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_step(process, out, 5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr.decode()
    assert "resume with: tunedcl train --out" in stderr.decode()
    done = subprocess.run(tunedcl("train", "--out", str(out), "--resume", "--quiet"), env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    reference, resumed = final_weights(reference_run), final_weights(out)
    assert all(torch.equal(resumed[k], v) for k, v in reference.items())


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run(train_command(out, "optim.lr=1e30", "optim.warmup_epochs=0",
                                        "train.checkpoint_every_steps=1"),
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "at step" in done.stderr and "last good checkpoint" in done.stderr
    state = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_cli_errors(tmp_path: Path, reference_run: Path) -> None:
    done = subprocess.run(tunedcl("train", "--config", "quick", "--out", str(reference_run), "--quiet"),
                          env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "already holds files; pass --resume" in done.stderr
    done = subprocess.run(tunedcl("train", "--out", str(tmp_path / "none"), "--resume"), env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "holds no run" in done.stderr
    done = subprocess.run(tunedcl("train", "--config", "quick", "--out", str(tmp_path / "x"), "loss.k3=1"),
                          env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "valid keys in loss" in done.stderr
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_gradient_statistics_are_logged_per_epoch_on_request(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run(train_command(out, "train.epochs=2", "train.log_gradients=true", "eval.linear_probe=none"),
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line]
    for record in epochs:
        assert record["grad_from_positives"] > 0 and record["grad_from_negatives"] > 0
        shares = record["share_positives"] + record["share_k1"] + record["share_negatives"]
        assert abs(shares - 1) < 1e-9
        assert -1 <= record["hardest_positive_similarity"] <= record["mean_positive_similarity"] <= 1
    assert (out / "gradient_curves.png").is_file() and "gradient_curves.png" in (out / "report.md").read_text()


def test_eval_command_re_evaluates_a_run(reference_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(reference_run), str(copy)], check=True)
    done = subprocess.run(tunedcl("eval", str(copy), "eval.knn_k=5", "eval.linear_probe=both", "eval.geometry=true",
                                  "eval.paper_probe_epochs=1"), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "kNN top-1" in done.stdout
    results = json.loads((copy / "results.json").read_text())
    assert results["linear_top1"] == results["paper_linear_top1"] > 20  # 1 epoch; chance is 10
    assert "fast_linear_top1" in results
    # eval.geometry=true: unit vectors give squared distances in [0, 4], dot products in [-1, 1], and
    # uniformity (log-mean of exp(-2 d^2)) in [-8, 0].
    assert 0 < results["alignment"] < 4 and -1 < results["tolerance"] < 1 and -8 < results["uniformity"] < 0
    done = subprocess.run(tunedcl("eval", str(reference_run), "loss.k1=3"), env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "only takes eval.*" in done.stderr


def test_resume_refuses_a_checkpoint_of_another_run_and_allows_what_is_safe(
    reference_run: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(reference_run), str(copy)], check=True)
    config_path = copy / "config.yaml"
    original = config_path.read_text()
    config_path.write_text(original.replace("batch_size: 64", "batch_size: 32", 1))  # edited by hand
    done = subprocess.run(tunedcl("train", "--out", str(copy), "--resume", "--quiet"), env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "was written by another run (train.batch_size: 64 in the checkpoint, 32 now)" \
        in done.stderr, done.stderr
    config_path.write_text(original)
    done = subprocess.run(tunedcl("train", "--out", str(copy), "--resume", "--quiet", "loss.k1=3"), env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--resume may change only train.epochs" in done.stderr, done.stderr
    done = subprocess.run(tunedcl("train", "--out", str(copy), "--resume", "--quiet", "--config", "quick"), env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "do not pass --config" in done.stderr, done.stderr
    # More epochs and another evaluation are what a finished run may be resumed with.
    done = subprocess.run(tunedcl("train", "--out", str(copy), "--resume", "--quiet", "train.epochs=4",
                                  "eval.knn_k=7"), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "epochs: 4" in config_path.read_text() and "knn_k: 7" in config_path.read_text()
    epochs = [json.loads(line)["epoch"] for line in (copy / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line]
    assert epochs == [1, 2, 3, 4]


def test_a_start_that_failed_before_training_can_be_run_again(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run(train_command(out, "data.dataset=cifar10", "data.root=" + str(tmp_path / "nothing")),
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    done = subprocess.run(train_command(out, "train.epochs=1", "eval.every_epochs=0"), env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


class _RunsCode:
    """Pickles as a call to os.system: what a crafted checkpoint would smuggle in."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("content", ["code", "truncated", "empty", "random"])
def test_a_checkpoint_can_never_run_code_and_a_broken_one_is_one_line(
    reference_run: Path, tmp_path: Path, content: str
) -> None:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(reference_run), str(copy)], check=True)
    checkpoint, marker = copy / "checkpoints" / "last.pt", tmp_path / "pwned"
    if content == "code":
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        torch.save({**state, "extra": _RunsCode(marker)}, checkpoint)
    elif content == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    elif content == "empty":
        checkpoint.write_bytes(b"")
    else:
        checkpoint.write_bytes(random.Random(0).randbytes(5000))
    for command in (tunedcl("eval", str(copy)), tunedcl("train", "--out", str(copy), "--resume", "--quiet")):
        done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        errors = [line for line in done.stderr.splitlines() if "cannot be loaded as a tunedcl checkpoint" in line]
        assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
        assert "weights_only=False" not in done.stderr  # never the advice to load a foreign file unsafely
    assert not marker.exists()  # the pickled call never ran


def test_ddp_two_processes_complete_resume_and_match_one_process(tmp_path: Path) -> None:
    """Same global batch, no augmentation: the curves differ only through per-rank BatchNorm statistics
    (each rank normalises its own half of the batch). Stated tolerance: 5% relative per epoch."""
    common = ["data.augment=none", "train.epochs=2", "train.checkpoint_every_steps=5"]
    single = tmp_path / "single"
    done = subprocess.run(train_command(single, *common), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ddp = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "tunedcl"]
    process = subprocess.Popen(torchrun + train_command(ddp, *common)[3:], env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    wait_for_step(process, ddp, 10)
    os.killpg(process.pid, signal.SIGKILL)  # the whole group: agent and both workers
    process.wait()
    done = subprocess.run(torchrun + ["train", "--out", str(ddp), "--resume", "--quiet"], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (ddp / "results.json").is_file()
    one, two = epoch_losses(single), epoch_losses(ddp)
    assert len(one) == len(two) == 2
    for a, b in zip(one, two, strict=True):
        assert abs(a - b) <= 0.05 * abs(a), (one, two)


def test_sweep_runs_the_grid_skips_finished_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    base = [o for o in TINY if not o.startswith(("train.epochs", "name", "eval.every_epochs"))]
    command = tunedcl("sweep", "--config", "quick", "--grid", "loss.k1=0,50", "--seeds", "2", "--out", str(out),
                      *base, "train.epochs=1", "eval.linear_probe=none", "train.log_gradients=true",
                      "eval.geometry=true")
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["loss.k1=0", "loss.k1=50"]
    assert all((out / point / f"seed{s}" / "results.json").is_file() for point in ("loss.k1=0", "loss.k1=50")
               for s in (0, 1))
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["point"], r["seeds"]) for r in summary["rows"]] == [("loss.k1=0", 2), ("loss.k1=50", 2)]
    assert all(r["knn_top1_mean"] > 30 and r["knn_top1_std"] >= 0 for r in summary["rows"])
    import yaml

    for s in (0, 1):
        assert yaml.safe_load((out / "loss.k1=0" / f"seed{s}" / "config.yaml").read_text())["train"]["seed"] == s
    # Started again: nothing is rerun (it finishes in seconds and prints no 'running').
    again = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "sweep: running" not in again.stdout
    (out / "summary.md").unlink()
    report = subprocess.run(tunedcl("report", str(out), str(out / "loss.k1=0" / "seed0")), env=ENV,
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert (out / "summary.md").is_file() and "± " in (out / "summary.md").read_text()
    assert (out / "accuracy.png").is_file() and "accuracy.png" in (out / "summary.md").read_text()
    # Gradient curves (train.log_gradients=true): one curve per grid point, the mean of its seeds' records.
    assert (out / "gradients.png").is_file() and "gradient from positives" in (out / "summary.md").read_text()
    assert "| alignment | uniformity | tolerance |" in (out / "summary.md").read_text()
    seed_curves = [[json.loads(line)["grad_from_positives"] for line in
                    (out / "loss.k1=50" / f"seed{s}" / "metrics.jsonl").read_text().splitlines()
                    if '"grad_from_positives"' in line] for s in (0, 1)]
    curve = summary["rows"][1]["gradient_curves"]["grad_from_positives"]
    assert curve == pytest.approx([(a + b) / 2 for a, b in zip(*seed_curves, strict=True)], rel=1e-12)
    # A run folder left by another base config is an error, not a silent reuse.
    changed = [*command, "optim.lr=0.05"]
    stale = subprocess.run(changed, env=ENV, capture_output=True, text=True, timeout=120)
    assert stale.returncode == 2 and "was run with a different config (differs in optim.lr: 0.1 there, 0.05 planned)" in stale.stderr
    # --reuse: a point whose exact config finished elsewhere is linked; a new one is trained.
    other = tmp_path / "other"
    reuse = tunedcl("sweep", "--config", "quick", "--grid", "loss.k1=50,7", "--reuse", str(out), "--seeds", "1",
                    "--out", str(other), *command[command.index("--out") + 2:])
    done = subprocess.run(reuse, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    linked = other / "loss.k1=50" / "seed0"
    assert linked.is_symlink() and linked.resolve() == (out / "loss.k1=50" / "seed0").resolve()
    assert "sweep: reusing" in done.stdout and "sweep: running " + str(other / "loss.k1=7") in done.stdout
    fresh = other / "loss.k1=7" / "seed0"
    assert not fresh.is_symlink() and (fresh / "results.json").is_file()
    # A link whose run was deleted is reported before anything runs, not a crash mid-sweep.
    subprocess.run(["rm", "-r", str(out / "loss.k1=50" / "seed0")], check=True)
    dangling = subprocess.run(reuse, env=ENV, capture_output=True, text=True, timeout=120)
    assert dangling.returncode == 2 and "links to a run that no longer exists" in dangling.stderr
    bad = subprocess.run(tunedcl("sweep", "--config", "quick", "--grid", "loss.k9=1", "--seeds", "1", "--out",
                                 str(tmp_path / "bad")), env=ENV, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "valid keys in loss" in bad.stderr and not (tmp_path / "bad").exists()


def test_tensorboard_scalars_are_written_when_asked(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is an optional extra (pip install 'tunedcl[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    done = subprocess.run(train_command(out, "train.epochs=2", "train.tensorboard=true", "eval.linear_probe=none"),
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"loss", "lr", "views_per_s", "embedding_spread"} <= set(events.Tags()["scalars"])
    losses = [event.value for event in events.Scalars("loss")]
    logged = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line]
    assert losses == pytest.approx(logged)
    results = json.loads((out / "results.json").read_text())
    from tunedcl.train.runtime import describe_cpu

    assert results["hardware"].startswith(describe_cpu()) and "threads" in results["hardware"]  # model + features


def test_a_validation_split_and_a_sweep_that_selects_on_it(tmp_path: Path) -> None:
    """data.validation holds images out of training; the sweep picks per method on validation only, then runs
    the chosen point with more seeds (the grid's own seed linked) and reports its test numbers."""
    out = tmp_path / "tune"
    command = tunedcl("sweep", "--config", "quick", "--grid", "loss.method=supcon,tcl", "optim.lr=0.05,0.2",
                      "--seeds", "1", "--out", str(out), "--select-on", "knn", "--final-seeds", "2",
                      *TINY[1:], "train.epochs=1", "eval.every_epochs=0", "data.validation=20")
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "loss.method=tcl,optim.lr=0.05" / "seed0" / "results.json").read_text())
    assert {"val_knn_top1", "val_linear_top1", "val_fast_linear_top1"} <= set(results)
    summary = json.loads((out / "summary.json").read_text())["rows"]
    selected = (out / "selected.md").read_text()
    for method in ("supcon", "tcl"):
        rows = [r for r in summary if r["overrides"]["loss.method"] == method]
        best = max(rows, key=lambda r: r["val_knn_top1_mean"])
        assert f"| {method} | {best['point']} |" in selected
        assert (out / "selected" / best["point"] / "seed0").is_symlink()  # the grid's run, linked
        assert (out / "selected" / best["point"] / "seed1" / "results.json").is_file()  # a new seed
    chosen = json.loads((out / "selected.json").read_text())["chosen"]  # what a study's next stage reads
    assert {m: c["overrides"]["loss.method"] for m, c in chosen.items()} == {"supcon": "supcon", "tcl": "tcl"}
    assert all(c["point"] in selected for c in chosen.values())
    config = (out / "loss.method=tcl,optim.lr=0.05" / "seed0" / "config.yaml").read_text()
    assert "validation: 20" in config
    bad = subprocess.run(tunedcl("sweep", "--config", "quick", "--grid", "optim.lr=0.05", "--seeds", "1", "--out",
                                 str(out), "--select-on", "knn", *TINY[1:], "train.epochs=1", "data.validation=0",
                                 "eval.every_epochs=0"), env=ENV, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--select-on knn needs validation numbers" in bad.stderr, bad.stderr


def test_a_choice_that_a_grown_grid_overturns_is_set_aside_not_mixed_in(tmp_path: Path, monkeypatch) -> None:
    """When a rerun with a larger grid picks another point, the earlier choice's test runs leave ``selected/``
    (so its summary and exported records hold only today's choice) for ``superseded/``, links intact."""
    from tunedcl.train import sweep

    out = tmp_path / "tune"
    for point in ("optim.lr=0.1", "optim.lr=1.0"):
        (out / point / "seed0").mkdir(parents=True)
        (out / point / "seed0" / "results.json").write_text("{}")
    old = out / "selected" / "optim.lr=0.1"
    old.mkdir(parents=True)
    (old / "seed0").symlink_to(os.path.relpath(out / "optim.lr=0.1" / "seed0", old), target_is_directory=True)
    (old / "seed1").mkdir()
    ran = []
    monkeypatch.setattr(sweep, "run_sweep", lambda config, point, seeds, where, *a, **k: ran.append(
        (point, where)) or {"rows": [{"seeds": seeds, "linear_top1_mean": 1.0, "linear_top1_std": 0.0,
                                      "knn_top1_mean": 1.0, "knn_top1_std": 0.0}]})
    monkeypatch.setattr(sweep, "write_summary", lambda *a, **k: {})
    rows = [{"point": "optim.lr=0.1", "overrides": {"optim.lr": "0.1"}, "val_linear_top1_mean": 80.0},
            {"point": "optim.lr=1.0", "overrides": {"optim.lr": "1.0"}, "val_linear_top1_mean": 81.0}]
    sweep.select_and_confirm("quick", out, [], rows, "linear", 2)
    assert ran == [(["optim.lr=1.0"], out / "selected")]  # the point as the grid spelled it (its folder name)
    assert not old.exists()
    moved = out / "superseded" / "optim.lr=0.1"
    assert (moved / "seed0" / "results.json").is_file() and (moved / "seed1").is_dir()  # the link still resolves
    assert json.loads((out / "selected.json").read_text())["chosen"]["-"]["point"] == "optim.lr=1.0"
    old.mkdir()  # chosen, overturned again later: both earlier runs are kept
    sweep.select_and_confirm("quick", out, [], rows, "linear", 2)
    assert (out / "superseded" / "optim.lr=0.1~1").is_dir() and moved.is_dir()


def test_a_run_that_collapses_in_a_sweep_is_a_result_not_a_crash(tmp_path: Path, monkeypatch) -> None:
    """A grid point that collapses (TrainingError) on a seed: the sweep goes on, the failure is kept (failed.json,
    not retried, listed under the summary, exported as a record) and the point is never chosen, even with the
    best validation number."""
    from tunedcl.records import export_runs
    from tunedcl.report import write_summary
    from tunedcl.train import run, sweep
    from tunedcl.train.loop import TrainingError

    calls = []

    def fake_training(config, run_dir, resume=False, quiet=True):
        calls.append(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text("{}\n")
        if ("optim.lr=1.0" in str(run_dir) and run_dir.name == "seed1") or "optim.lr=3.0" in str(run_dir):
            raise TrainingError("the embeddings collapsed in epoch 2")
        top1 = 90.0 if "optim.lr=1.0" in str(run_dir) else 80.0
        (run_dir / "results.json").write_text(json.dumps({"linear_top1": top1, "knn_top1": top1,
                                                          "val_linear_top1": top1, "val_knn_top1": top1}))

    monkeypatch.setattr(run, "run_training", fake_training)
    monkeypatch.setattr(sweep, "_check_same_config", lambda run_dir, config: None)
    out = tmp_path / "tune"
    summary = sweep.run_sweep("quick", ["optim.lr=0.1,1.0,3.0"], 2, out, [])
    collapsed = "the embeddings collapsed in epoch 2"
    assert len(calls) == 6 and summary["failed"] == {"optim.lr=1.0": {1: collapsed}, "optim.lr=3.0": {0: collapsed,
                                                                                                       1: collapsed}}
    assert json.loads((out / "optim.lr=1.0" / "seed1" / "failed.json").read_text())["error"].startswith("the emb")
    text = (out / "summary.md").read_text()
    assert "Runs that failed (not in the table): `optim.lr=1.0` seed 1: the embeddings collapsed" in text
    sweep.run_sweep("quick", ["optim.lr=0.1,1.0,3.0"], 2, out, [])  # started again: failed runs are not retried
    assert len(calls) == 6
    table = sweep.select_and_confirm("quick", out, [], summary["rows"], "linear", 2)
    chosen = json.loads((out / "selected.json").read_text())
    assert chosen["chosen"]["-"]["point"] == "optim.lr=0.1"
    assert set(chosen["excluded"]) == {"optim.lr=1.0", "optim.lr=3.0"}  # 3.0 has no finished run at all
    assert "Not eligible (a run failed): `optim.lr=1.0`" in table
    export_runs([out], tmp_path / "records")
    assert (tmp_path / "records" / "optim.lr=1.0" / "seed1.failed.json").is_file()
    rebuilt = write_summary(tmp_path / "records")
    assert rebuilt["failed"]["optim.lr=1.0"] == {1: collapsed} and len(rebuilt["failed"]) == 2
    retried = out / "optim.lr=1.0" / "seed1"  # a retry that finishes: its record replaces the failure's
    (retried / "failed.json").unlink()
    (retried / "results.json").write_text(json.dumps({"linear_top1": 1.0, "knn_top1": 1.0}))
    export_runs([out], tmp_path / "records")
    assert not (tmp_path / "records" / "optim.lr=1.0" / "seed1.failed.json").exists()
    assert "optim.lr=1.0" not in write_summary(tmp_path / "records")["failed"]
    (retried / "results.json").unlink()
    (retried / "failed.json").write_text(json.dumps({"error": collapsed}))
    export_runs([out], tmp_path / "records")  # and back: the failure's record replaces the finished one
    assert not (tmp_path / "records" / "optim.lr=1.0" / "seed1.json").exists()
    assert write_summary(tmp_path / "records")["failed"]["optim.lr=1.0"] == {1: collapsed}
    assert [row["point"] for row in rebuilt["rows"]] == ["optim.lr=0.1", "optim.lr=1.0"]  # seed 0 finished
    from tunedcl.docfill import fill_document

    document = tmp_path / "doc.md"
    document.write_text("# Tuning\n\n<!-- summary: records -->\n\nProse after the table.\n")
    fill_document(document, {"records": tmp_path / "records"})
    once = document.read_text()
    assert "| optim.lr=1.0 | 1 |" in once and "\n\nRuns that failed (not in the table): `optim.lr=1.0` seed 1" in once
    fill_document(document, {"records": tmp_path / "records"})  # the failed-runs line is replaced, not repeated
    assert document.read_text() == once and once.count("Runs that failed") == 1 and once.endswith("Prose after the table.\n")
    prose = "Runs that failed at tau 0.2 are discussed below.\n"  # an author's sentence is never taken for output
    other = tmp_path / "prose.md"
    other.write_text("<!-- paired: records -->\n\n| a |\n|---|\n\n" + prose)
    (tmp_path / "records" / "paired.md").write_text("| a | b |\n|---|---|\n")
    fill_document(other, {"records": tmp_path / "records"})
    assert other.read_text().endswith(prose)
    from tunedcl.report import _failures_said

    said = _failures_said({"p": {1: "collapsed in epoch 2: spread 0.004", 0: "collapsed in epoch 2: spread 0.009",
                                 2: "loss became non-finite; the last good checkpoint"}})
    assert said == ["`p` seeds 0, 1: collapsed in epoch 2", "`p` seed 2: loss became non-finite"]



def test_select_on_a_grid_where_every_point_failed_says_so(tmp_path: Path) -> None:
    from tunedcl.train import sweep
    from tunedcl.train.config import ConfigError

    out = tmp_path / "tune"
    (out / "optim.lr=3.0" / "seed0").mkdir(parents=True)
    (out / "optim.lr=3.0" / "seed0" / "failed.json").write_text(json.dumps({"error": "collapsed"}))
    with pytest.raises(ConfigError, match="every grid point of .* has a failed run"):
        sweep.select_and_confirm("quick", out, [], [], "linear", 2)


def test_a_sweep_whose_every_run_failed_is_exported_and_reported(tmp_path: Path) -> None:
    """Every run collapsed: the failures are the result. They export, the study reports (no machine, an empty
    table, the failed-runs line), beside another sweep in one study; summary.json keeps seeds as numbers."""
    from tunedcl.records import export_runs
    from tunedcl.report import report_dirs

    for seed in (0, 1):
        failed = tmp_path / "tcl" / "loss.k1=50000" / f"seed{seed}"
        failed.mkdir(parents=True)
        (failed / "failed.json").write_text(json.dumps({"error": "the embeddings collapsed in epoch 2"}))
    finished = tmp_path / "supcon" / "base" / "seed0"
    finished.mkdir(parents=True)
    (finished / "results.json").write_text(json.dumps({"linear_top1": 80.0, "knn_top1": 70.0}))
    export_runs([tmp_path / "tcl"], tmp_path / "alone")
    export_runs([tmp_path / "supcon", tmp_path / "tcl"], tmp_path / "study")
    assert (tmp_path / "study" / "tcl@loss.k1=50000" / "seed1.failed.json").is_file()
    said = report_dirs([tmp_path / "alone"], baseline="loss.k1=0")  # nothing to pair: said, not an error
    assert f"{tmp_path / 'alone'}: no paired.md (no run finished)" in said
    report_dirs([tmp_path / "study"])
    alone = (tmp_path / "alone" / "summary.md").read_text()
    assert alone.startswith("Machine: none (no run finished).")
    assert "Runs that failed (not in the table): `loss.k1=50000` seeds 0, 1: the embeddings collapsed" in alone
    summary = json.loads((tmp_path / "study" / "summary.json").read_text())
    assert summary["failed"] == {"tcl@loss.k1=50000": [{"seed": 0, "error": "the embeddings collapsed in epoch 2"},
                                                       {"seed": 1, "error": "the embeddings collapsed in epoch 2"}]}
    assert [row["point"] for row in summary["rows"]] == ["supcon"]
