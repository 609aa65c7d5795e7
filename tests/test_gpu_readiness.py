"""Defects a GPU would show, shown on the CPU (issue: "Ready for the GPU"): the ``meta`` device stands in for
a GPU where only device placement matters, and monkeypatched CUDA queries for device capabilities."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tunedcl.analysis import gradient_coefficients
from tunedcl.analysis.geometry import alignment
from tunedcl.losses.functional import supcon_loss, tcl_loss


def test_the_analysis_puts_labels_where_the_features_are() -> None:
    features = torch.randn(8, 4, device="meta")
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])  # on the CPU, as a data loader leaves them
    coefficients = gradient_coefficients(features, labels)
    assert coefficients.values.device.type == "meta" and coefficients.positive.device.type == "meta"
    with pytest.raises(RuntimeError, match="meta tensors"):  # only the final float() needs data: placement is fine
        alignment(features, labels)


@pytest.mark.parametrize("loss", [tcl_loss, supcon_loss])
def test_the_chunked_backward_ignores_an_enclosing_autocast(loss) -> None:
    """.backward() inside a bf16 autocast region once ran the hand-written backward's products in bf16
    (a 2e-3 relative change); the forward is fp32 either way, so the gradients must be the same bits."""
    g = torch.Generator().manual_seed(0)
    features = torch.randn(64, 2, 32, generator=g)
    labels = torch.randint(0, 6, (64,), generator=g)
    grads = []
    for inside in (False, True):
        leaf = features.clone().requires_grad_(True)
        value = loss(leaf, labels, chunk_size=16)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=inside):
            value.backward()
        grads.append(leaf.grad)
    assert torch.equal(grads[0], grads[1])


def test_auto_precision_counts_only_real_bf16_units(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunedcl.train import runtime

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)  # emulated counts too
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # a T4
    assert runtime.bf16_supported(torch.device("cuda", 0)) is False
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # an A100
    assert runtime.bf16_supported(torch.device("cuda", 0)) is True


def test_every_torchrun_rank_picks_the_same_default_run_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunedcl.train.config import ConfigError
    from tunedcl.train.run import default_run_dir

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "af0774de-060b-4dba-a0df-ba18124ba1e5")
    first = default_run_dir("quick")
    monkeypatch.setattr("time.strftime", lambda *args: "another second")  # ranks start at different times
    assert default_run_dir("quick") == first == Path("runs") / "quick-af0774de-060"
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    with pytest.raises(ConfigError, match=r"pass --out RUN_DIR"):
        default_run_dir("quick")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert default_run_dir("quick").name.startswith("quick-")


def test_one_gpu_per_process_is_gpu_0_whatever_local_rank_says(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunedcl.train import runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # CUDA_VISIBLE_DEVICES=<one> per process
    assert runtime.choose_device("auto", local_rank=3) == torch.device("cuda", 0)
    assert runtime.choose_device("cuda", local_rank=3) == torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)  # every GPU of the node visible
    assert runtime.choose_device("auto", local_rank=3) == torch.device("cuda", 3)


def test_method_states_travel_between_ranks_on_the_cpu() -> None:
    from tunedcl.train.loop import _to_cpu

    for nested in ({"loss": {"queue": torch.ones(2, device="meta")}}, {"steps": [3, torch.zeros(1, device="meta")]}):
        with pytest.raises(NotImplementedError, match="meta"):  # .cpu() reaches every tensor, however nested
            _to_cpu(nested)
    cpu_state = {"loss": {"queue": torch.ones(2)}, "steps": [torch.zeros(1), 3]}
    moved = _to_cpu(cpu_state)
    assert moved["loss"]["queue"].data_ptr() == cpu_state["loss"]["queue"].data_ptr()  # CPU tensors: no copy
    assert moved["steps"][1] == 3


def test_the_training_split_lives_on_the_gpu_only_when_it_fits() -> None:
    """train.data_on_device_gib: CIFAR (150 MB) stays on a GPU with room; ImageNet-100 at 128 px (6 GiB) or a
    nearly full GPU keeps its split on the host (pinned-memory prefetch); the CPU never moves anything."""
    from tunedcl.train.assemble import keep_on_device
    from tunedcl.train.config import ConfigError, load_config

    cuda, gib = torch.device("cuda", 0), 2**30
    cifar, imagenet100 = 50_000 * 3 * 32 * 32, 126_689 * 3 * 128 * 128
    assert keep_on_device(cifar, cuda, 2.0, free_bytes=80 * gib)
    assert not keep_on_device(imagenet100, cuda, 2.0, free_bytes=80 * gib)  # over the limit
    assert keep_on_device(imagenet100, cuda, 8.0, free_bytes=80 * gib)  # a larger limit
    assert not keep_on_device(cifar, cuda, 2.0, free_bytes=cifar * 3)  # more than a quarter of what is free
    assert not keep_on_device(cifar, cuda, 0.0, free_bytes=80 * gib)  # 0: never
    assert not keep_on_device(cifar, torch.device("cpu"), 2.0, free_bytes=80 * gib)
    with pytest.raises(ConfigError, match="train.data_on_device_gib"):
        load_config("quick", ["train.data_on_device_gib=-1"])


def test_augmentation_tables_are_uploaded_once_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """A constant table built with torch.tensor(..., device=cuda) at every step is a blocking host-to-device
    copy per step; after the first batch, no preset builds a tensor from Python values again."""
    from tunedcl.data.augment import make_views

    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    presets = ("crop-flip", "simaug", "autoaug", "randaug")
    for preset in presets:  # the first batch uploads the tables
        make_views(images, 2, preset, (0.5,) * 3, (0.25,) * 3, generator=torch.Generator().manual_seed(0))

    def no_upload(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("torch.tensor called at a later step")

    monkeypatch.setattr(torch, "tensor", no_upload)
    for preset in presets:
        make_views(images, 2, preset, (0.5,) * 3, (0.25,) * 3, generator=torch.Generator().manual_seed(1))
