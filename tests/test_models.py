"""Tests for tunedcl.models: shapes, parameter counts, init, argument checks, BN modes, bf16/channels_last."""

from __future__ import annotations

import ast
import math
import pathlib

import numpy as np
import pytest
import torch
from torch import nn

import tunedcl.models as models_pkg
from tunedcl.models import (
    MODELS,
    BasicBlock,
    Bottleneck,
    ContrastiveModel,
    ContrastiveOutput,
    Encoder,
    LinearClassifier,
    ProjectionHead,
    ResNet,
    create_model,
    list_models,
    model_options,
    register_model,
)

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
LAYOUTS = {  # He et al. 2016, Table 1: (blocks per stage, bottleneck?)
    "resnet18": ((2, 2, 2, 2), False),
    "resnet34": ((3, 4, 6, 3), False),
    "resnet50": ((3, 4, 6, 3), True),
    "resnet101": ((3, 4, 23, 3), True),
}
# Published totals of the torchvision ImageNet models, 1000-way fc included.
PUBLISHED_WITH_FC = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------------
# An independent parameter count, from the architecture's description rather than from the modules.


def _conv(k: int, cin: int, cout: int) -> int:
    return k * k * cin * cout  # no bias: every conv is followed by BatchNorm


def _bn(c: int) -> int:
    return 2 * c  # weight and bias (running stats are buffers)


def resnet_params_by_formula(name: str, in_channels: int = 3, stem_kernel: int = 7, base: int = 64) -> int:
    layers, bottleneck = LAYOUTS[name]
    expansion = 4 if bottleneck else 1
    total = _conv(stem_kernel, in_channels, base) + _bn(base)
    cin = base
    for stage, blocks in enumerate(layers):
        planes = base * 2**stage
        cout = planes * expansion
        for j in range(blocks):
            stride = 2 if stage > 0 and j == 0 else 1
            if bottleneck:
                total += _conv(1, cin, planes) + _bn(planes) + _conv(3, planes, planes) + _bn(planes)
                total += _conv(1, planes, cout) + _bn(cout)
            else:
                total += _conv(3, cin, planes) + _bn(planes) + _conv(3, planes, planes) + _bn(planes)
            if stride != 1 or cin != cout:  # projection shortcut
                total += _conv(1, cin, cout) + _bn(cout)
            cin = cout
    return total


def small_cnn_params_by_formula(in_channels: int, base: int = 32) -> int:
    chans = [in_channels] + [base * 2**i for i in range(4)]
    return sum(_conv(3, a, b) + _bn(b) for a, b in zip(chans[:-1], chans[1:], strict=True))


def _halve_ceil(n: int, times: int) -> int:
    # A 3x3 stride-2 pad-1 conv, a 7x7 stride-2 pad-3 conv and a 3x3 stride-2 pad-1 max-pool all map n
    # to ceil(n / 2).
    for _ in range(times):
        n = (n + 1) // 2
    return n


def expected_map_size(name: str, stem: str, size: int) -> int:
    if name == "small-cnn":
        return size // 8  # three 2x2 max-pools, floor
    return _halve_ceil(size, 3 if stem == "cifar" else 5)


# ---------------------------------------------------------------------------------------------------
# Registry and factory


def test_list_models_names_every_encoder():
    assert list_models() == sorted(["small-cnn", *RESNETS])


def test_create_model_returns_encoders_with_the_documented_feature_dim():
    assert isinstance(create_model("small-cnn"), Encoder)
    assert create_model("small-cnn").feature_dim == 256
    assert create_model("resnet18", width=0.25).feature_dim == 128
    assert create_model("resnet50", width=0.25).feature_dim == 512


def test_create_model_accepts_case_and_underscore_variants():
    assert isinstance(create_model("ResNet18", width=0.125), ResNet)
    assert create_model("small_cnn", width=0.25).feature_dim == 64


def test_model_options_lists_builder_keywords_with_defaults():
    assert model_options("resnet50") == {"stem": "cifar", "width": 1.0, "zero_init_residual": False}
    assert model_options("small-cnn") == {"width": 1.0}


def test_register_model_adds_a_custom_encoder_and_rejects_duplicates():
    class Tiny(Encoder):
        def __init__(self, in_channels: int = 3, dim: int = 4) -> None:
            super().__init__()
            self.conv = nn.Conv2d(in_channels, dim, 1)
            self.feature_dim = dim

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    try:
        register_model("tiny-test")(Tiny)
        enc = create_model("tiny-test", in_channels=1, dim=5)
        assert enc(torch.randn(2, 1, 6, 6)).shape == (2, 5)
        with pytest.raises(ValueError, match="already registered"):
            register_model("tiny-test")(Tiny)
    finally:
        MODELS.remove("tiny-test")
    assert "tiny-test" not in list_models()


@pytest.mark.parametrize("name", ["resnet19", "", "vit-b"])
def test_unknown_model_name_lists_known_models(name):
    with pytest.raises(ValueError, match="unknown model") as info:
        create_model(name)
    for known in list_models():
        assert known in str(info.value)


def test_a_misspelt_model_name_suggests_the_closest_one():
    with pytest.raises(ValueError, match="unknown model 'resnet19'; did you mean 'resnet18'"):
        create_model("resnet19")


def test_every_model_has_a_one_line_description():
    described = dict(MODELS.describe())
    assert sorted(described) == list_models()
    for name, text in described.items():  # the builder's whole first docstring line, which says what it is
        assert len(text) > 20 and text == MODELS.get(name).__doc__.strip().splitlines()[0], (name, text)


def test_non_string_model_name_is_a_value_error():
    with pytest.raises(ValueError, match="unknown model None"):
        create_model(None)  # type: ignore[arg-type]


def test_unknown_keyword_names_argument_value_and_allowed_options():
    with pytest.raises(ValueError, match=r"unknown argument widht=2.*allowed: in_channels, stem, width"):
        create_model("resnet18", widht=2)
    # small-cnn has no stem; silently ignoring it would hide a config mistake.
    with pytest.raises(ValueError, match=r"unknown argument stem='cifar'.*allowed: in_channels, width"):
        create_model("small-cnn", stem="cifar")


@pytest.mark.parametrize("stem", ["CIFAR", "imagenet1k", "", None, 3])
def test_bad_stem_is_rejected(stem):
    with pytest.raises(ValueError, match=r"stem must be one of 'cifar', 'imagenet'; got"):
        create_model("resnet18", stem=stem)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "small-cnn"])
@pytest.mark.parametrize("width", [0, -1.0, float("nan"), float("inf"), True, "2", None])
def test_bad_width_is_rejected(name, width):
    with pytest.raises(ValueError, match=r"width must be a finite number > 0; got"):
        create_model(name, width=width)


def test_width_too_small_for_one_channel_is_rejected():
    with pytest.raises(ValueError, match=r"width must be at least 0\.0078125"):
        create_model("resnet18", width=0.005)
    with pytest.raises(ValueError, match=r"width must be at least 0\.015625"):
        create_model("small-cnn", width=0.01)


@pytest.mark.parametrize("name", ["resnet18", "small-cnn"])
@pytest.mark.parametrize("in_channels", [0, -3, 2.5, True, "3", None])
def test_bad_in_channels_is_rejected(name, in_channels):
    with pytest.raises(ValueError, match=r"in_channels must be an integer >= 1.*got"):
        create_model(name, in_channels=in_channels)


def test_any_positive_integer_in_channels_is_accepted():
    for in_channels in (2, 4, np.int64(3)):
        enc = create_model("resnet18", in_channels=in_channels, width=0.125)
        assert enc(torch.randn(2, int(in_channels), 16, 16)).shape == (2, 64)


@pytest.mark.parametrize("value", ["false", 0, None])
def test_zero_init_residual_must_be_a_bool(value):
    with pytest.raises(ValueError, match="zero_init_residual must be True or False"):
        create_model("resnet18", zero_init_residual=value)


def test_resnet_rejects_a_layout_without_four_stages():
    with pytest.raises(ValueError, match="4 stages"):
        ResNet(BasicBlock, (2, 2, 2))
    with pytest.raises(ValueError, match="each entry of layers must be an integer >= 1"):
        ResNet(BasicBlock, (2, 0, 2, 2))


# ---------------------------------------------------------------------------------------------------
# Shapes


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize(
    ("name", "stem", "width"),
    [
        ("small-cnn", None, 0.5),
        ("resnet18", "cifar", 0.25),
        ("resnet18", "imagenet", 0.25),
        ("resnet34", "cifar", 0.125),
        ("resnet34", "imagenet", 0.125),
        ("resnet50", "cifar", 0.125),
        ("resnet50", "imagenet", 0.125),
        ("resnet101", "cifar", 0.0625),
        ("resnet101", "imagenet", 0.0625),
    ],
)
def test_output_shapes_at_28_32_64_pixels(name, stem, width, in_channels):
    kw = {} if stem is None else {"stem": stem}
    enc = create_model(name, in_channels=in_channels, width=width, **kw).eval()
    for size in (28, 32, 64):
        x = torch.randn(2, in_channels, size, size)
        with torch.no_grad():
            maps = enc.forward_features(x)
            feats = enc(x)
        side = expected_map_size(name, stem, size)
        assert maps.shape == (2, enc.feature_dim, side, side), (size, maps.shape)
        assert feats.shape == (2, enc.feature_dim)
        torch.testing.assert_close(feats, maps.mean(dim=(-2, -1)))
        assert torch.isfinite(feats).all()


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("resnet18", {"stem": "imagenet"}),  # full width: the standard ImageNet network
        ("resnet18", {"stem": "cifar", "width": 0.125}),  # a 224x224 map at stage 1: keep it narrow
        ("small-cnn", {}),
    ],
)
def test_output_shapes_at_224_pixels(name, kw, in_channels):
    enc = create_model(name, in_channels=in_channels, **kw).eval()
    x = torch.randn(2, in_channels, 224, 224)
    with torch.no_grad():
        maps = enc.forward_features(x)
        feats = enc(x)
    side = expected_map_size(name, kw.get("stem"), 224)
    assert side == {"imagenet": 7, "cifar": 28, None: 28}[kw.get("stem")]
    assert maps.shape == (2, enc.feature_dim, side, side)
    assert feats.shape == (2, enc.feature_dim)


@pytest.mark.parametrize(
    ("name", "width", "expected"),
    [
        ("resnet18", 0.5, 256),
        ("resnet18", 2, 1024),
        ("resnet34", 0.25, 128),
        ("resnet50", 0.25, 512),
        ("resnet101", 0.0625, 128),
        ("small-cnn", 0.5, 128),
        ("small-cnn", 2.0, 512),
        ("resnet18", 0.3, 8 * 19),  # round(64 * 0.3) = 19 planes in stage 1, doubled three times
    ],
)
def test_feature_dim_follows_width_and_matches_output(name, width, expected):
    enc = create_model(name, width=width).eval()
    assert enc.feature_dim == expected
    with torch.no_grad():
        assert enc(torch.randn(2, 3, 16, 16)).shape == (2, expected)


# ---------------------------------------------------------------------------------------------------
# Parameter counts


@pytest.mark.parametrize("name", RESNETS)
def test_imagenet_stem_parameter_count_equals_the_standard_architecture_without_fc(name):
    feature_dim = 2048 if LAYOUTS[name][1] else 512
    standard_without_fc = PUBLISHED_WITH_FC[name] - (feature_dim * 1000 + 1000)
    assert resnet_params_by_formula(name) == standard_without_fc
    assert n_params(create_model(name, stem="imagenet")) == standard_without_fc


def test_the_two_counts_named_in_the_issue():
    assert n_params(create_model("resnet18", stem="imagenet")) == 11_176_512
    assert n_params(create_model("resnet50", stem="imagenet")) == 23_508_032


@pytest.mark.parametrize(("name", "expected"), [("resnet18", 11_168_832), ("resnet50", 23_500_352)])
def test_cifar_stem_replaces_the_7x7_conv_by_a_3x3(name, expected):
    # Only the first conv differs: (7*7 - 3*3) * 3 * 64 = 7,680 weights fewer.
    assert expected == resnet_params_by_formula(name) - (7 * 7 - 3 * 3) * 3 * 64
    assert resnet_params_by_formula(name, stem_kernel=3) == expected
    assert n_params(create_model(name, stem="cifar")) == expected


def test_one_input_channel_changes_only_the_first_conv():
    three = n_params(create_model("resnet18"))
    one = n_params(create_model("resnet18", in_channels=1))
    assert three - one == 3 * 3 * 2 * 64


@pytest.mark.parametrize(("name", "width", "base"), [("resnet18", 0.5, 32), ("resnet50", 0.25, 16)])
def test_width_multiplier_scales_every_stage(name, width, base):
    enc = create_model(name, width=width, stem="imagenet")
    assert n_params(enc) == resnet_params_by_formula(name, base=base)
    # conv weights dominate and scale with width**2
    ratio = n_params(enc) / n_params(create_model(name, stem="imagenet"))
    assert abs(ratio - width**2) < 0.01


@pytest.mark.parametrize(("in_channels", "width", "base"), [(1, 1.0, 32), (3, 1.0, 32), (3, 0.5, 16)])
def test_small_cnn_parameter_count(in_channels, width, base):
    enc = create_model("small-cnn", in_channels=in_channels, width=width)
    assert n_params(enc) == small_cnn_params_by_formula(in_channels, base)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [base, 2 * base, 4 * base, 8 * base]
    assert sum(isinstance(m, nn.MaxPool2d) for m in enc.modules()) == 3  # between the four blocks


# ---------------------------------------------------------------------------------------------------
# Initialisation


def test_convs_use_kaiming_fan_out_and_batchnorm_starts_at_identity():
    torch.manual_seed(0)
    enc = create_model("resnet50", width=0.5)
    # 128 -> 512 1x1: fan_out (512) differs from fan_in (128), so the test tells the two modes apart.
    conv = enc.layer3[0].conv3
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (128, 512, (1, 1))
    expected_std = math.sqrt(2.0 / conv.out_channels)
    assert abs(conv.weight.std().item() / expected_std - 1) < 0.02
    assert abs(conv.weight.mean().item()) < 0.05 * expected_std
    for m in enc.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_zero_init_residual_makes_blocks_start_as_identity(name):
    x = torch.relu(torch.randn(2, 16 * (4 if name == "resnet50" else 1), 8, 8))
    on = create_model(name, width=0.25, zero_init_residual=True)
    off = create_model(name, width=0.25)
    blocks_on = [m for m in on.modules() if isinstance(m, (BasicBlock, Bottleneck))]
    assert len(blocks_on) == sum(LAYOUTS[name][0])
    assert all(torch.count_nonzero(b.last_bn.weight) == 0 for b in blocks_on)
    # layer1's last block has an identity shortcut: with a zeroed branch it returns relu(x) = x.
    with torch.no_grad():
        torch.testing.assert_close(on.layer1[-1](x), x, rtol=0, atol=0)
        assert not torch.allclose(off.layer1[-1](x), x)


# ---------------------------------------------------------------------------------------------------
# BatchNorm modes


@pytest.mark.parametrize(("name", "kw"), [("small-cnn", {"width": 0.25}), ("resnet18", {"width": 0.125})])
def test_train_mode_uses_batch_statistics_and_eval_mode_does_not(name, kw):
    torch.manual_seed(0)
    enc = create_model(name, **kw)
    x = torch.randn(6, 3, 16, 16)
    bn = next(m for m in enc.modules() if isinstance(m, nn.BatchNorm2d))

    enc.eval()
    before = bn.running_mean.clone()
    with torch.no_grad():
        # eval: each sample's features are independent of the rest of the batch
        torch.testing.assert_close(enc(x)[:2], enc(x[:2]), rtol=1e-5, atol=1e-6)
    assert torch.equal(bn.running_mean, before)

    enc.train()
    with torch.no_grad():
        full, part = enc(x)[:2], enc(x[:2])
    assert (full - part).abs().max() > 1e-3  # train: normalised with the batch's statistics
    assert not torch.equal(bn.running_mean, before)  # and the running statistics moved


# ---------------------------------------------------------------------------------------------------
# channels_last and bf16 autocast


@pytest.mark.parametrize(
    ("name", "kw"),
    [("small-cnn", {}), ("resnet18", {"width": 0.25}), ("resnet50", {"width": 0.125, "stem": "imagenet"})],
)
def test_channels_last_bf16_autocast_forward_backward(name, kw):
    torch.manual_seed(0)
    model = ContrastiveModel(create_model(name, in_channels=3, **kw), out_dim=32)
    x = torch.randn(4, 2, 3, 32, 32)  # [B, V, C, H, W] views

    model.eval()
    with torch.no_grad():
        reference = model(x).features
    model = model.to(memory_format=torch.channels_last)
    flat_cl = x.flatten(0, 1).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        # same numbers in channels_last (fp32): the layout must not scramble anything
        torch.testing.assert_close(model(flat_cl).features, reference.flatten(0, 1), rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(flat_cl).features
    assert low.dtype == torch.bfloat16
    relative = (low.float() - reference.flatten(0, 1)).norm() / reference.norm()
    assert relative < 0.05

    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(flat_cl)
        loss = out.projections.float().pow(2).mean()
    loss.backward()
    assert torch.isfinite(out.features.float()).all() and torch.isfinite(out.projections.float()).all()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    first_conv = next(m for m in model.encoder.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.weight.grad.abs().sum() > 0  # the gradient reached the input layer


# ---------------------------------------------------------------------------------------------------
# Projection head


def test_projection_head_is_the_papers_mlp_with_hidden_defaulting_to_in_dim():
    head = ProjectionHead(64)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 64), (64, 128)]
    assert any(isinstance(m, nn.ReLU) for m in head.modules())
    assert not any(isinstance(m, nn.BatchNorm1d) for m in head.modules())
    assert n_params(head) == 64 * 64 + 64 + 64 * 128 + 128
    assert head(torch.randn(5, 64)).shape == (5, 128)


def test_projection_head_output_is_not_normalised():
    torch.manual_seed(0)
    z = ProjectionHead(32, hidden_dim=16, out_dim=8)(torch.randn(10, 32) * 10)
    assert z.shape == (10, 8)
    assert (z.norm(dim=1) - 1).abs().max() > 0.1


def test_projection_head_batch_norm_option():
    torch.manual_seed(0)
    head = ProjectionHead(32, hidden_dim=24, out_dim=16, batch_norm=True)
    assert isinstance(head.net[1], nn.BatchNorm1d) and head.net[1].num_features == 24
    assert head.net[0].bias is None  # BatchNorm's shift replaces it
    # In train mode the hidden BatchNorm removes any shift shared by the whole batch; without it, no.
    x, shift = torch.randn(8, 32), torch.randn(32)
    torch.testing.assert_close(head(x + shift), head(x), rtol=1e-4, atol=1e-4)
    plain = ProjectionHead(32, hidden_dim=24, out_dim=16)
    assert (plain(x + shift) - plain(x)).abs().max() > 1e-2


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"in_dim": 0}, "in_dim must be an integer >= 1; got 0"),
        (
            {"in_dim": 8, "hidden_dim": -1},
            "hidden_dim must be an integer >= 1 .or None for in_dim.; got -1",
        ),
        ({"in_dim": 8, "out_dim": 0}, "out_dim must be an integer >= 1; got 0"),
        ({"in_dim": 8, "out_dim": 2.0}, "out_dim must be an integer >= 1; got 2.0"),
        ({"in_dim": 8, "batch_norm": "yes"}, "batch_norm must be True or False; got 'yes'"),
    ],
)
def test_projection_head_rejects_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        ProjectionHead(**kw)


# ---------------------------------------------------------------------------------------------------
# Wrappers


def test_contrastive_model_keeps_the_view_dimension_and_matches_a_flat_batch():
    torch.manual_seed(0)
    model = ContrastiveModel(create_model("small-cnn", in_channels=1, width=0.25), out_dim=16).eval()
    views = torch.randn(3, 2, 1, 28, 28)
    with torch.no_grad():
        out = model(views)
        flat = model(views.reshape(6, 1, 28, 28))
    assert isinstance(out, ContrastiveOutput)
    assert out.features.shape == (3, 2, 64) and out.projections.shape == (3, 2, 16)
    # view v of image b is row b * V + v of the flat batch
    torch.testing.assert_close(out.features.reshape(6, 64), flat.features)
    torch.testing.assert_close(out.projections[1, 0], flat.projections[2])
    torch.testing.assert_close(out.projections, model.head(out.features))


def test_contrastive_model_accepts_a_custom_head_and_rejects_bad_inputs():
    enc = create_model("small-cnn", width=0.25)
    head = ProjectionHead(enc.feature_dim, hidden_dim=8, out_dim=4, batch_norm=True)
    model = ContrastiveModel(enc, head)
    assert model.head is head and model.feature_dim == 64
    assert model(torch.randn(3, 3, 16, 16)).projections.shape == (3, 4)
    with pytest.raises(ValueError, match=r"of shape \(3, 16, 16\)"):
        model(torch.randn(3, 16, 16))
    with pytest.raises(ValueError, match=r"encoder.feature_dim must be an integer >= 1 .the encoder must expose its feature size.; got None"):
        ContrastiveModel(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="out_dim must be an integer >= 1; got 0"):
        ContrastiveModel(enc, out_dim=0)


def test_linear_classifier_trains_end_to_end_by_default():
    model = LinearClassifier(create_model("small-cnn", width=0.25), num_classes=10)
    logits = model(torch.randn(4, 3, 16, 16))
    assert logits.shape == (4, 10)
    nn.functional.cross_entropy(logits, torch.arange(4)).backward()
    assert model.encoder.blocks[0][0].weight.grad is not None
    assert model.fc.weight.grad is not None


def test_linear_classifier_with_frozen_encoder_is_a_linear_probe():
    model = LinearClassifier(create_model("small-cnn", width=0.25), num_classes=5, freeze_encoder=True)
    model.train()
    assert model.training and model.fc.training and not model.encoder.training
    bn = model.encoder.blocks[0][1]
    before = bn.running_mean.clone()
    logits = model(torch.randn(4, 3, 16, 16))
    nn.functional.cross_entropy(logits, torch.arange(4)).backward()
    assert torch.equal(bn.running_mean, before)  # BatchNorm statistics frozen too
    assert all(p.grad is None and not p.requires_grad for p in model.encoder.parameters())
    assert model.fc.weight.grad is not None
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1; got 0"):
        LinearClassifier(create_model("small-cnn", width=0.25), num_classes=0)


# ---------------------------------------------------------------------------------------------------
# Layering


def test_models_package_imports_only_torch_and_the_standard_library():
    allowed_roots = {"torch", "__future__", "collections", "copy", "inspect", "math", "numbers", "typing"}
    package_dir = pathlib.Path(models_pkg.__file__).parent
    sources = sorted(package_dir.glob("*.py"))
    assert len(sources) >= 5
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for module in names:
                # tunedcl.registry and tunedcl._checks are the shared, torch-only registry and argument checks.
                shared = module in ("tunedcl.registry", "tunedcl._checks")
                ok = module.split(".")[0] in allowed_roots or module.startswith("tunedcl.models") or shared
                assert ok, f"{path.name} imports {module}"
