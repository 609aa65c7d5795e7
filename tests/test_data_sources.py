"""Tests for tunedcl.data sources: every format on files the tests generate, the real data when present."""

from __future__ import annotations

import ast
import dataclasses
import gzip
import hashlib
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tunedcl.data.sources.bundled as bundled
import tunedcl.data.sources.cifar as cifar
import tunedcl.data.sources.idx as idx
import tunedcl.data.sources.image_folder as image_folder
from _data_files import (
    IDX_NAMES,
    cifar_arrays,
    idx_bytes,
    make_cifar_batches,
    make_idx_arrays,
    make_image_tree,
    write_cifar_folder,
    write_cifar_tar,
    write_idx_dataset,
)
from tunedcl.data import DATASETS, Dataset, Split, list_datasets, load_dataset

FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
SRC_DATA = Path(__file__).resolve().parents[1] / "src" / "tunedcl" / "data"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test sees the user's $TUNEDCL_DATA or writes to the real ~/.cache."""
    monkeypatch.delenv("TUNEDCL_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def no_system_fashion(monkeypatch, tmp_path):
    """Fashion-MNIST's spec without Debian's folder, so a test does not pick up the real files."""
    spec = dataclasses.replace(idx.SPECS["fashion-mnist"], system_dirs=(tmp_path / "no-system-dir",))
    monkeypatch.setitem(idx.SPECS, "fashion-mnist", spec)
    return spec


def _assert_split(split: Split, images: np.ndarray, labels: np.ndarray) -> None:
    assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
    assert split.images.is_contiguous()
    assert np.array_equal(split.images.numpy(), images)
    assert np.array_equal(split.labels.numpy(), labels.astype(np.int64))


def _idx_expected(arrays: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    images = arrays[(split, "images")]
    return images[:, None], arrays[(split, "labels")]


# ---------------------------------------------------------------- registry and arguments


def test_registry_lists_every_source_and_rejects_unknown_names():
    assert set(list_datasets()) == {
        "fashion-mnist",
        "mnist",
        "cifar10",
        "cifar100",
        "animal-mnist",
        "digits",
        "image-folder",
    }
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*cifar10, cifar100"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="unknown dataset 'fashion_mnst'; did you mean 'fashion-mnist'"):
        load_dataset("fashion_mnst")
    with pytest.raises(ValueError, match="unknown dataset None"):
        load_dataset(None)  # type: ignore[arg-type]


def test_every_dataset_has_a_one_line_description():
    described = dict(DATASETS.describe())
    assert sorted(described) == list_datasets()
    for name, text in described.items():  # the source's whole first docstring line, which says what it is
        assert len(text) > 20 and text == DATASETS.get(name).__doc__.strip().splitlines()[0], (name, text)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"fraction": 0}, r"fraction must be a finite number > 0 and <= 1, or None; got 0"),
        ({"fraction": 1.5}, r"fraction must be .*; got 1\.5"),
        ({"per_class": 0}, r"per_class must be an integer >= 1.*; got 0"),
        ({"per_class": 2.5}, r"per_class must be .*; got 2\.5"),
        ({"fraction": 0.5, "per_class": 3}, r"fraction=0\.5 and per_class=3 were both given"),
        ({"seed": -1}, r"seed must be .*; got -1"),
        ({"download": "yes"}, r"download must be True or False; got 'yes'"),
        ({"subset_test": 1}, r"subset_test must be .*; got 1"),
        ({"verify": "no"}, r"verify must be .*; got 'no'"),
        ({"colour": True}, r"unknown option\(s\) for dataset 'mnist': colour; its options are: verify"),
    ],
)
def test_bad_arguments_name_the_argument_value_and_what_is_allowed(kwargs, pattern, tmp_path):
    write_idx_dataset(tmp_path, make_idx_arrays(20, 10), gz=False)
    with pytest.raises(ValueError, match=pattern):
        load_dataset("mnist", root=tmp_path, **{"verify": False, **kwargs})


def test_dataset_contract_rejects_inconsistent_splits():
    images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        Split(images, torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="uint8"):
        Split(images.float(), torch.zeros(4, dtype=torch.int64))
    split = Split(images, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="labels span 0..3, outside 0..2"):
        Dataset("x", split, split, ("a", "b", "c"), (0.5,), (0.5,))
    ds = Dataset("x", split, split, ["a", "b", "c", "d"], [0.5], [0.5])
    assert ds.classes == ("a", "b", "c", "d") and ds.in_channels == 1 and ds.image_size == 8
    assert "train=4" in repr(ds)


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("subfolder", ["", "mnist", "MNIST/raw"])
def test_idx_reads_gzipped_and_raw_files_in_root_or_a_subfolder(tmp_path, gz, subfolder):
    arrays = make_idx_arrays(30, 20)
    write_idx_dataset(tmp_path / subfolder, arrays, gz=gz)
    ds = load_dataset("MNIST", root=tmp_path, verify=False)  # names are case- and underscore-insensitive
    _assert_split(ds.train, *_idx_expected(arrays, "train"))
    _assert_split(ds.test, *_idx_expected(arrays, "test"))
    assert ds.name == "mnist" and ds.classes == tuple("0123456789")
    assert (ds.in_channels, ds.image_size, ds.mean, ds.std) == (1, 28, (0.1307,), (0.3081,))


def test_idx_detects_gzip_by_magic_bytes_not_by_extension(tmp_path):
    arrays = make_idx_arrays(10, 10)
    for (split, kind), name in IDX_NAMES.items():
        data = idx_bytes(arrays[(split, kind)])
        if kind == "images":  # compressed, but named without .gz
            (tmp_path / name).write_bytes(gzip.compress(data))
        else:  # plain, but named .gz
            (tmp_path / f"{name}.gz").write_bytes(data)
    ds = load_dataset("mnist", root=tmp_path, verify=False)
    _assert_split(ds.train, *_idx_expected(arrays, "train"))


def _corrupt(tmp_path: Path, name: str, data: bytes) -> Path:
    write_idx_dataset(tmp_path, make_idx_arrays(20, 10), gz=False)
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


@pytest.mark.parametrize(
    ("name", "make", "pattern"),
    [
        (
            "train-images-idx3-ubyte",
            lambda a: idx_bytes(a[("train", "labels")]),
            r"train-images-idx3-ubyte: IDX magic number 2051 .* expected, got 2049 \(an IDX label file\)",
        ),
        (
            "train-images-idx3-ubyte",
            lambda a: idx_bytes(a[("train", "images")])[:-100],
            r"train-images-idx3-ubyte: expected 20\*28\*28 = 15680 bytes after the header, "
            r"got 15580 \(truncated\)",
        ),
        (
            "t10k-labels-idx1-ubyte",
            lambda a: idx_bytes(a[("test", "labels")])[:6],
            r"t10k-labels-idx1-ubyte: file is 6 bytes, shorter than its 8-byte header",
        ),
        (
            "train-labels-idx1-ubyte",
            lambda a: gzip.compress(idx_bytes(a[("train", "labels")]))[:-8],
            r"train-labels-idx1-ubyte: corrupt or truncated gzip stream",
        ),
        (
            "train-labels-idx1-ubyte",
            lambda a: idx_bytes(np.r_[a[("train", "labels")][:-1], 12].astype(np.uint8)),
            r"train-labels-idx1-ubyte: label value 12 at index 19 is outside 0..9",
        ),
        (
            "t10k-labels-idx1-ubyte",
            lambda a: idx_bytes(a[("test", "labels")][:7]),
            r"images/labels count mismatch: 10 images but 7 labels",
        ),
    ],
)
def test_idx_corrupt_truncated_or_mislabelled_files_name_the_file_and_the_expectation(
    tmp_path, name, make, pattern
):
    arrays = make_idx_arrays(20, 10)
    write_idx_dataset(tmp_path, arrays, gz=False)
    (tmp_path / name).write_bytes(make(arrays))
    with pytest.raises(ValueError, match=pattern):
        load_dataset("mnist", root=tmp_path, verify=False)


def test_idx_verify_checks_fashion_sha256_and_mnist_structure(tmp_path, no_system_fashion):
    write_idx_dataset(tmp_path / "fashion-mnist", make_idx_arrays(20, 10), gz=True)
    expected = idx.SPECS["fashion-mnist"].files["train-images-idx3-ubyte"].sha256
    with pytest.raises(
        ValueError, match=rf"train-images-idx3-ubyte.gz: SHA256 checksum mismatch: expected {expected}, got"
    ):
        load_dataset("fashion-mnist", root=tmp_path)
    assert len(load_dataset("fashion-mnist", root=tmp_path, verify=False).train) == 20

    write_idx_dataset(tmp_path / "mnist", make_idx_arrays(20, 10), gz=True)  # MNIST's SHA-256 is unknown
    with pytest.raises(ValueError, match=r"expected train count 60000, got 20 .*verify=False skips this"):
        load_dataset("mnist", root=tmp_path)


def test_idx_not_found_lists_every_place_and_every_way_to_get_it(tmp_path, monkeypatch, no_system_fashion):
    monkeypatch.setenv("TUNEDCL_DATA", str(tmp_path / "env"))
    partial = tmp_path / "root"
    write_idx_dataset(partial, make_idx_arrays(5, 5), gz=True)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("fashion-mnist", root=partial)
    msg = str(info.value)
    for place in (
        f"{partial} (root argument",
        f"{tmp_path / 'env'} ($TUNEDCL_DATA, does not exist)",
        f"{tmp_path / 'xdg-cache' / 'tunedcl'} (cache",
        f"{tmp_path / 'no-system-dir'} (system",
    ):
        assert place in msg
    assert "lacks t10k-labels-idx1-ubyte" in msg
    for way in ("apt-get install dataset-fashion-mnist", "download=True", "$TUNEDCL_DATA"):
        assert way in msg


def test_idx_search_order_root_then_env_then_cache(tmp_path, monkeypatch):
    first, second, third = (make_idx_arrays(10, 10, seed=s) for s in (1, 2, 3))
    write_idx_dataset(tmp_path / "root", first, gz=True)
    write_idx_dataset(tmp_path / "env" / "mnist", second, gz=True)
    write_idx_dataset(tmp_path / "xdg-cache" / "tunedcl" / "mnist", third, gz=False)
    monkeypatch.setenv("TUNEDCL_DATA", str(tmp_path / "env"))
    _assert_split(
        load_dataset("mnist", root=tmp_path / "root", verify=False).test, *_idx_expected(first, "test")
    )
    _assert_split(load_dataset("mnist", verify=False).test, *_idx_expected(second, "test"))
    monkeypatch.delenv("TUNEDCL_DATA")
    _assert_split(load_dataset("mnist", verify=False).test, *_idx_expected(third, "test"))


def _serve(tmp_path: Path, arrays: dict) -> tuple[Path, dict]:
    """Gzipped files in a folder to be served as file:// URLs, and a spec verifying exactly them."""
    served = write_idx_dataset(tmp_path / "served", arrays, gz=True)
    info = {
        fname: idx.IdxFile(
            hashlib.sha256(gzip.decompress(p.read_bytes())).hexdigest(),
            hashlib.md5(p.read_bytes()).hexdigest(),
        )
        for fname, p in served.items()
    }
    return tmp_path / "served", info


def test_download_fetches_from_the_first_working_mirror_verifies_and_leaves_no_partial_files(
    tmp_path, monkeypatch, no_system_fashion
):
    arrays = make_idx_arrays(30, 10)
    served, info = _serve(tmp_path, arrays)
    spec = dataclasses.replace(
        no_system_fashion,
        files=info,
        n_train=30,
        n_test=10,
        mirrors=(f"file://{tmp_path}/missing-mirror/", f"file://{served}/"),
    )
    monkeypatch.setitem(idx.SPECS, "fashion-mnist", spec)
    with pytest.raises(FileNotFoundError):
        load_dataset("fashion-mnist")  # download=False never fetches
    ds = load_dataset("fashion-mnist", download=True)  # verify=True: SHA-256 of the decompressed bytes
    _assert_split(ds.train, *_idx_expected(arrays, "train"))
    target = tmp_path / "xdg-cache" / "tunedcl" / "fashion-mnist"
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{n}.gz" for n in info)
    assert ds.source == str(target)


def test_download_with_a_bad_checksum_keeps_nothing(tmp_path, monkeypatch):
    arrays = make_idx_arrays(10, 10)
    served, info = _serve(tmp_path, arrays)
    bad = {n: idx.IdxFile(None, "0" * 32) for n in info}
    spec = dataclasses.replace(idx.SPECS["mnist"], files=bad, mirrors=(f"file://{served}/",))
    monkeypatch.setitem(idx.SPECS, "mnist", spec)
    root = tmp_path / "root"
    with pytest.raises(
        OSError, match=r"could not download train-images-idx3-ubyte.gz:\n.*MD5 checksum mismatch"
    ):
        load_dataset("mnist", root=root, download=True)
    assert list((root / "mnist").iterdir()) == []  # neither the file nor its .part


# ---------------------------------------------------------------- subsets


def test_per_class_and_fraction_subsets_are_stratified_deterministic_and_nested(tmp_path):
    arrays = make_idx_arrays(200, 50)
    write_idx_dataset(tmp_path, arrays, gz=False)
    full = load_dataset("mnist", root=tmp_path, verify=False)

    def pick(**kw):
        return load_dataset("mnist", root=tmp_path, verify=False, **kw)

    small, large = pick(per_class=3, seed=7), pick(per_class=6, seed=7)
    assert torch.bincount(small.train.labels).tolist() == [3] * 10
    assert torch.equal(small.train.images, pick(per_class=3, seed=7).train.images)
    assert not torch.equal(small.train.images, pick(per_class=3, seed=8).train.images)
    as_rows = {bytes(x) for x in large.train.images.numpy()}
    assert all(bytes(x) in as_rows for x in small.train.images.numpy())  # nested
    assert torch.equal(small.test.images, full.test.images)  # the test split stays whole by default
    assert torch.bincount(pick(per_class=3, subset_test=True).test.labels).tolist() == [3] * 10
    assert torch.bincount(pick(fraction=0.25).train.labels).tolist() == [5] * 10  # 20 per class * 0.25
    assert len(pick(per_class=1000).train) == 200  # a class with fewer keeps all of them
    kept = pick(fraction=0.5).train
    order = [next(i for i, x in enumerate(full.train.images) if torch.equal(x, y)) for y in kept.images[:10]]
    assert order == sorted(order)  # original order kept


# ---------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("layout", ["folder-py2", "folder-protocol4", "nested-folder", "tar.gz"])
def test_cifar10_reads_python2_batches_from_a_folder_or_the_archive(tmp_path, layout):
    batches = make_cifar_batches("cifar10", per_batch=20)
    if layout == "folder-py2":
        write_cifar_folder(tmp_path, batches)
    elif layout == "folder-protocol4":
        write_cifar_folder(tmp_path / "cifar-10-batches-py", batches, protocol="4")
    elif layout == "nested-folder":
        write_cifar_folder(tmp_path / "cifar10" / "cifar-10-batches-py", batches)
    else:
        write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", batches)
    ds = load_dataset("cifar10", root=tmp_path, verify=False)
    _assert_split(ds.train, *cifar_arrays(batches, [f"data_batch_{i}" for i in range(1, 6)], b"labels"))
    _assert_split(ds.test, *cifar_arrays(batches, ["test_batch"], b"labels"))
    assert (
        ds.classes[:3] == ("airplane", "automobile", "bird") and ds.image_size == 32 and ds.in_channels == 3
    )
    assert ds.mean == (0.4914, 0.4822, 0.4465) and ds.std == (0.2023, 0.1994, 0.2010)


@pytest.mark.parametrize(
    ("label_type", "key", "n"), [("fine", b"fine_labels", 100), ("coarse", b"coarse_labels", 20)]
)
def test_cifar100_fine_and_coarse_labels_from_the_archive(tmp_path, label_type, key, n):
    batches = make_cifar_batches("cifar100", per_batch=20)
    write_cifar_tar(tmp_path / "cifar-100-python.tar.gz", "cifar-100-python", batches)
    ds = load_dataset("cifar100", root=tmp_path, verify=False, label_type=label_type)
    _assert_split(ds.train, *cifar_arrays(batches, ["train"], key))
    _assert_split(ds.test, *cifar_arrays(batches, ["test"], key))
    assert len(ds.classes) == n and ds.classes[1] == f"{label_type}1"
    assert ds.mean == (0.5071, 0.4867, 0.4408) and ds.std == (0.2675, 0.2565, 0.2761)
    with pytest.raises(ValueError, match=r"label_type must be one of 'fine', 'coarse'; got 'medium'"):
        load_dataset("cifar100", root=tmp_path, label_type="medium")
    with pytest.raises(ValueError, match=r"unknown option\(s\) for dataset 'cifar10': label_type"):
        load_dataset("cifar10", root=tmp_path, label_type="fine")


def test_cifar_archive_md5_is_checked_and_passes_when_it_matches(tmp_path, monkeypatch):
    batches = make_cifar_batches("cifar10", per_batch=20)
    archive = write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", batches)
    with pytest.raises(
        ValueError,
        match=r"cifar-10-python.tar.gz: MD5 checksum mismatch: "
        r"expected c58f30108f718f92721af3b95e74349a, got [0-9a-f]{32}",
    ):
        load_dataset("cifar10", root=tmp_path)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(cifar.SPECS, "cifar10", dataclasses.replace(cifar.SPECS["cifar10"], md5=md5))
    with pytest.raises(ValueError, match=r"expected image count 50000, got 100"):
        load_dataset("cifar10", root=tmp_path)  # verify also checks the published counts
    monkeypatch.setitem(
        cifar.SPECS, "cifar10", dataclasses.replace(cifar.SPECS["cifar10"], md5=md5, n_train=100, n_test=20)
    )
    assert len(load_dataset("cifar10", root=tmp_path).train) == 100


def test_cifar_download_reads_the_fetched_archive(tmp_path, monkeypatch):
    batches = make_cifar_batches("cifar100", per_batch=4)
    archive = write_cifar_tar(tmp_path / "served" / "cifar-100-python.tar.gz", "cifar-100-python", batches)
    spec = dataclasses.replace(
        cifar.SPECS["cifar100"],
        url=archive.as_uri(),
        md5=hashlib.md5(archive.read_bytes()).hexdigest(),
        n_train=20,
        n_test=4,
    )
    monkeypatch.setitem(cifar.SPECS, "cifar100", spec)
    monkeypatch.setenv("TUNEDCL_DATA", str(tmp_path / "data"))
    ds = load_dataset("cifar100", download=True)
    assert ds.source == str(tmp_path / "data" / "cifar100" / "cifar-100-python.tar.gz")
    _assert_split(ds.test, *cifar_arrays(batches, ["test"], b"fine_labels"))


def test_cifar_refuses_pickles_that_would_run_code(tmp_path):
    marker = tmp_path / "pwned"
    batches = make_cifar_batches("cifar10", per_batch=4)
    write_cifar_folder(tmp_path, batches)
    (tmp_path / "data_batch_3").write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(
        ValueError, match=r"data_batch_3: not a valid dataset pickle .*refusing to unpickle os.system"
    ):
        load_dataset("cifar10", root=tmp_path, verify=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (
            lambda b: b[b"data_batch_2"].update({b"data": b[b"data_batch_2"][b"data"][:, :3000]}),
            r"data_batch_2: 'data' must be a uint8 array \[n, 3072\].*got uint8 \(4, 3000\)",
        ),
        (
            lambda b: b[b"test_batch"].update({b"labels": [10, 0, 1, 2]}),
            r"test_batch: label value 10 at index 0 is outside 0..9",
        ),
        (
            lambda b: b[b"data_batch_1"].update({b"labels": [0, 1, 2]}),
            r"data_batch_1: images/labels count mismatch: 4 images but 3 labels",
        ),
        (lambda b: b[b"data_batch_5"].pop(b"labels"), r"data_batch_5: batch has no 'labels' entry"),
        (
            lambda b: b[b"batches.meta"].update({b"label_names": [b"cat"]}),
            r"batches.meta: expected 'label_names' with 10 class names, got 1 names",
        ),
    ],
)
def test_cifar_malformed_batches_name_the_file_and_the_expectation(tmp_path, edit, pattern):
    batches = make_cifar_batches("cifar10", per_batch=4)
    keyed = {k.encode(): v for k, v in batches.items()}
    edit(keyed)
    write_cifar_tar(
        tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", {k.decode(): v for k, v in keyed.items()}
    )
    with pytest.raises(ValueError, match=pattern):
        load_dataset("cifar10", root=tmp_path, verify=False)


def test_cifar_truncated_archive_and_missing_member(tmp_path):
    batches = make_cifar_batches("cifar10", per_batch=4)
    archive = write_cifar_tar(tmp_path / "a" / "cifar-10-python.tar.gz", "cifar-10-batches-py", batches)
    archive.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(ValueError, match=r"cifar-10-python.tar.gz: corrupt or truncated archive"):
        load_dataset("cifar10", root=tmp_path / "a", verify=False)
    del batches["test_batch"]
    write_cifar_tar(tmp_path / "b" / "cifar-10-python.tar.gz", "cifar-10-batches-py", batches)
    with pytest.raises(ValueError, match=r"expected one archive member named 'test_batch', found no member"):
        load_dataset("cifar10", root=tmp_path / "b", verify=False)


def test_cifar_not_found_names_places_and_ways(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar100", root=tmp_path)
    msg = str(info.value)
    assert f"{tmp_path / 'cifar-100-python.tar.gz'} (root argument, no such file)" in msg
    assert "download=True" in msg and "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in msg


# ---------------------------------------------------------------- image folders


def test_image_folder_decodes_once_into_a_memory_mapped_cache(tmp_path, monkeypatch):
    pytest.importorskip("PIL", reason="Pillow not installed (pip install 'tunedcl[images]')")
    root = tmp_path / "tree"
    make_image_tree(root, ["cat", "ant", "bee"], n_train=4, n_test=2, test_dir="test")
    cache = tmp_path / "cache"
    ds = load_dataset("image-folder", root=root, image_size=16, cache_dir=cache)
    assert ds.classes == ("ant", "bee", "cat")
    assert ds.train.images.shape == (12, 3, 16, 16) and ds.test.images.shape == (6, 3, 16, 16)
    assert ds.train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert ds.mean == (0.485, 0.456, 0.406)
    (entry,) = [p for p in cache.iterdir()]
    assert sorted(p.name for p in entry.iterdir()) == ["index.json", "test.npy", "train.npy"]
    assert isinstance(np.load(entry / "train.npy", mmap_mode="r"), np.memmap)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(image_folder, "_decode", no_decoding)
    again = load_dataset("image-folder", root=root, image_size=16, cache_dir=cache)
    assert torch.equal(again.train.images, ds.train.images) and torch.equal(again.test.labels, ds.test.labels)
    (root / "train" / "ant" / "img000.png").write_bytes((root / "train" / "bee" / "img001.png").read_bytes())
    with pytest.raises(AssertionError, match="decoded again"):  # a changed file invalidates the cache
        load_dataset("image-folder", root=root, image_size=16, cache_dir=cache)


def test_image_folder_resizes_the_shorter_side_and_crops_the_centre(tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="Pillow not installed (pip install 'tunedcl[images]')")
    wide = np.zeros((20, 40, 3), dtype=np.uint8)
    wide[:, :5] = (255, 0, 0)  # red and blue margins fall outside the central 20x20 square
    wide[:, 5:35] = (0, 255, 0)
    wide[:, 35:] = (0, 0, 255)
    for split in ("train", "val"):
        (tmp_path / split / "x").mkdir(parents=True)
        Image.fromarray(wide).save(tmp_path / split / "x" / "wide.png")
    ds = load_dataset("image-folder", root=tmp_path, image_size=10, cache_dir=tmp_path / "c")
    img = ds.train.images[0]
    assert img.shape == (3, 10, 10)
    assert img[1].min() == 255 and img[0].max() == 0 and img[2].max() == 0
    grey = load_dataset("image-folder", root=tmp_path, image_size=10, channels=1, cache_dir=tmp_path / "c")
    assert grey.train.images.shape == (1, 1, 10, 10) and grey.in_channels == 1 and len(grey.mean) == 1
    luma = np.asarray(Image.fromarray(wide[:, 10:30]).convert("L"))
    assert np.array_equal(grey.train.images[0, 0].numpy(), np.full((10, 10), luma[0, 0]))


def test_imagenet100_class_list_ships_with_the_package():
    ids = image_folder.imagenet100_classes()
    assert (
        len(ids) == len(set(ids)) == 100 and ids[:2] == ["n02869837", "n01749939"] and ids[-1] == "n02090622"
    )
    assert all(len(i) == 9 and i[0] == "n" and i[1:].isdigit() for i in ids)


def test_image_folder_class_lists_and_imagenet100(tmp_path):
    pytest.importorskip("PIL", reason="Pillow not installed (pip install 'tunedcl[images]')")
    make_image_tree(tmp_path, ["n01749939", "n02869837", "other"], n_train=1, n_test=1)
    chosen = load_dataset(
        "image-folder",
        root=tmp_path,
        image_size=8,
        classes=["n02869837", "n01749939"],
        cache_dir=tmp_path / "c",
    )
    assert chosen.classes == ("n02869837", "n01749939") and len(chosen.train) == 2
    with pytest.raises(FileNotFoundError, match=r"no folder for class\(es\) n01558993, .* and 93 more"):
        load_dataset(
            "image-folder", root=tmp_path, image_size=8, classes="imagenet100", cache_dir=tmp_path / "c"
        )
    with pytest.raises(ValueError, match=r"classes must be .*; got \['a', 'a'\]"):
        load_dataset("image-folder", root=tmp_path, classes=["a", "a"])


def test_image_folder_imagenet100_loads_exactly_the_listed_classes(tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="Pillow not installed (pip install 'tunedcl[images]')")
    wnids = image_folder.imagenet100_classes()
    extras = ["n99999901", "n99999902"]  # folders of a full ImageNet tree that are not on the CMC list
    counts = {}
    for i, wnid in enumerate(wnids + extras):
        counts[wnid] = 1 + i % 2  # one or two images per class, so that counts tell the classes apart
        for split in ("train", "val"):
            (tmp_path / split / wnid).mkdir(parents=True)
            for j in range(counts[wnid]):
                colour = (i, j * 100, 255 - i)
                Image.new("RGB", (6 + j, 5), colour).save(tmp_path / split / wnid / f"{wnid}_{j}.png")
    ds = load_dataset("image-folder", root=tmp_path, image_size=4, classes="imagenet100", cache_dir=tmp_path / "c")
    assert ds.classes == tuple(sorted(wnids)) and ds.num_classes == 100
    expected = [label for label, wnid in enumerate(sorted(wnids)) for _ in range(counts[wnid])]
    for split in (ds.train, ds.test):
        assert split.labels.tolist() == expected  # every listed class, in sorted order; no extra folder
        assert split.images.shape == (len(expected), 3, 4, 4)
    first = sorted(wnids)[0]
    assert ds.train.images[0, 0, 0, 0] == wnids.index(first)  # red channel = the class's position in the list


def test_image_folder_errors_name_the_file_and_leave_no_cache(tmp_path):
    pytest.importorskip("PIL", reason="Pillow not installed (pip install 'tunedcl[images]')")
    make_image_tree(tmp_path / "tree", ["a", "b"], n_train=2, n_test=1)
    bad = tmp_path / "tree" / "train" / "b" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"broken.jpg: cannot decode image"):
        load_dataset("image-folder", root=tmp_path / "tree", image_size=8, cache_dir=cache)
    assert list(cache.iterdir()) == []  # the half-built cache is gone
    with pytest.raises(ValueError, match=r"root must be .*; got None"):
        load_dataset("image-folder")
    with pytest.raises(ValueError, match=r"image_size must be .*; got 0"):
        load_dataset("image-folder", root=tmp_path / "tree", image_size=0)
    with pytest.raises(ValueError, match=r"channels must be one of 1, 3; got 2"):
        load_dataset("image-folder", root=tmp_path / "tree", channels=2)
    (tmp_path / "only-train" / "train" / "a").mkdir(parents=True)
    with pytest.raises(
        FileNotFoundError,
        match=r"needs train/ and val/ \(or test/\), one folder per class in each; found: train/",
    ):
        load_dataset("image-folder", root=tmp_path / "only-train")


def test_optional_dependencies_missing_give_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    make_dirs = tmp_path / "t"
    for split in ("train", "val"):
        (make_dirs / split / "a").mkdir(parents=True)
    with pytest.raises(ImportError, match=r"pip install 'tunedcl\[images\]'"):
        load_dataset("image-folder", root=make_dirs)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'tunedcl\[digits\]'"):
        load_dataset("digits")


# ---------------------------------------------------------------- real data, when installed


@pytest.mark.skipif(
    not FASHION_DEBIAN.is_dir(), reason=f"{FASHION_DEBIAN} missing: apt-get install dataset-fashion-mnist"
)
def test_real_fashion_mnist_from_debian_passes_checksums(tmp_path):
    ds = load_dataset("fashion-mnist")  # verify=True: SHA-256 of all four decompressed files
    assert ds.source == str(FASHION_DEBIAN)
    assert ds.train.images.shape == (60000, 1, 28, 28) and ds.test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.train.labels).tolist() == [6000] * 10
    assert torch.bincount(ds.test.labels).tolist() == [1000] * 10
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert int(ds.train.images.max()) == 255 and int(ds.train.images.min()) == 0
    quick = load_dataset("fashion-mnist", per_class=100, seed=3, verify=False)
    assert torch.bincount(quick.train.labels).tolist() == [100] * 10 and len(quick.test) == 10000


@pytest.mark.skipif(
    bundled.package_data_dir() is None,
    reason="animal-mnist not installed: pip install --no-deps animal-mnist",
)
def test_real_animal_mnist_split_is_stratified_fixed_and_complete():
    ds = load_dataset("animal-mnist")  # verify=True: SHA-256 of both decompressed pickles
    assert ds.train.images.shape == (8330, 1, 28, 28) and ds.test.images.shape == (1670, 1, 28, 28)
    assert torch.bincount(ds.train.labels).tolist() == [833] * 10
    assert torch.bincount(ds.test.labels).tolist() == [167] * 10
    assert ds.classes == (
        "bear",
        "bird",
        "cat",
        "cow",
        "dog",
        "elephant",
        "giraffe",
        "horse",
        "sheep",
        "zebra",
    )
    again = load_dataset("animal-mnist", seed=5)  # the subset seed does not move the split
    assert torch.equal(again.test.images, ds.test.images)
    x = ds.train.images.double() / 255
    assert x.mean().item() == pytest.approx(ds.mean[0], abs=1e-4)
    assert x.std(unbiased=False).item() == pytest.approx(ds.std[0], abs=1e-4)


@pytest.mark.skipif(
    bundled.package_data_dir() is None,
    reason="animal-mnist not installed: pip install --no-deps animal-mnist",
)
def test_animal_mnist_files_under_root_come_first_and_are_checked(tmp_path):
    folder = tmp_path / "animal-mnist"
    folder.mkdir()
    package = bundled.package_data_dir()
    for name in bundled.ANIMAL_FILES:
        (folder / name).write_bytes((package / name).read_bytes())
    assert load_dataset("animal-mnist", root=tmp_path).source == str(folder)
    labels = np.zeros(10000, dtype=np.int64)
    labels[5] = 12
    (folder / "animal_label_version_3.gz").write_bytes(gzip.compress(pickle.dumps(labels, protocol=4)))
    with pytest.raises(ValueError, match=r"animal_label_version_3.gz: SHA256 checksum mismatch"):
        load_dataset("animal-mnist", root=tmp_path)
    with pytest.raises(
        ValueError, match=r"animal_label_version_3.gz: label value 12 at index 5 is outside 0..9"
    ):
        load_dataset("animal-mnist", root=tmp_path, verify=False)


def test_animal_mnist_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(bundled, "package_data_dir", lambda: None)
    with pytest.raises(
        FileNotFoundError,
        match=r"(?s)the animal_mnist package \(not installed\).*pip install --no-deps animal-mnist",
    ):
        load_dataset("animal-mnist")


def test_real_digits_scaled_and_split():
    pytest.importorskip("sklearn", reason="scikit-learn not installed: pip install 'tunedcl[digits]'")
    ds = load_dataset("digits")
    assert ds.train.images.shape == (1498, 1, 8, 8) and ds.test.images.shape == (299, 1, 8, 8)
    assert int(ds.train.images.max()) == 255 and int(ds.train.images.min()) == 0
    counts = torch.bincount(ds.test.labels, minlength=10)
    assert counts.min() >= 29 and counts.max() <= 31
    assert set(np.unique(ds.train.images.numpy())) <= {round(v * 255 / 16) for v in range(17)}
    x = ds.train.images.double() / 255
    assert x.mean().item() == pytest.approx(ds.mean[0], abs=1e-4)
    assert x.std(unbiased=False).item() == pytest.approx(ds.std[0], abs=1e-4)


# ---------------------------------------------------------------- layering


def test_data_package_imports_no_losses_models_or_optional_dependencies():
    for path in [SRC_DATA / "__init__.py", *sorted((SRC_DATA / "sources").glob("*.py"))]:
        tree = ast.parse(path.read_text())
        top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in top_level if isinstance(n, ast.ImportFrom)]
        assert not [
            m for m in names if m.startswith(("tunedcl.losses", "tunedcl.models", "PIL", "sklearn"))
        ], path
    code = "import sys, tunedcl.data; print(sorted(m for m in ('PIL', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_pickle_allowlist_accepts_numpy_arrays_in_either_module_spelling():
    from tunedcl.data.sources.files import safe_unpickle

    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in (3, 4, 5):  # 0-2 from Python 3 need _codecs.encode, refused
        got = safe_unpickle(pickle.dumps({"a": arr, "b": [1, 2]}, protocol=protocol), "x")
        assert np.array_equal(got["a"], arr) and got["b"] == [1, 2]
