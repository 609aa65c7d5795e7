"""The image-folder cache under torchrun: ranks that load the same tree at once take turns through a lock on
the cache folder; the first decodes, the others wait and map its cache (issue 15). Threads stand in for the
ranks: each opens the folder itself, so their flock locks exclude each other as separate processes' do."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

import tunedcl.data.sources.image_folder as image_folder
from _data_files import make_image_tree
from tunedcl.data import load_dataset

pytest.importorskip("PIL", reason="Pillow not installed (pip install 'tunedcl[images]')")
pytest.importorskip("fcntl", reason="no flock here (Windows): concurrent builds are not serialised")


class _Waiting:
    """Stands in for the module's logger: sets ``event`` when a loader reports that it waits for another one's
    build. (A logging.Handler would depend on the logging configuration other tests leave behind: with the
    logger disabled the message never arrives, and the test failed in the full suite only.)"""

    def __init__(self) -> None:
        self.event = threading.Event()

    def info(self, message: str, *args: object) -> None:
        if "waiting for it" in message:
            self.event.set()


def test_ranks_loading_at_once_build_the_cache_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, cache = tmp_path / "tree", tmp_path / "cache"
    make_image_tree(root, ["a", "b"], n_train=3, n_test=2)
    waiting = _Waiting()
    monkeypatch.setattr(image_folder, "log", waiting)
    builds: list[str] = []
    real_build = image_folder._build

    def slow_build(*args, **kwargs):
        builds.append(threading.current_thread().name)
        # The first builder holds on until the other rank is seen waiting at the lock (without a lock, the
        # other would build too and this would time out). The wait ends as soon as the other rank waits; the
        # long timeout only matters on a loaded machine, where reaching the lock can take the other thread
        # many seconds (a 10 s timeout failed under a concurrent training run).
        waiting.event.wait(timeout=120)
        real_build(*args, **kwargs)

    monkeypatch.setattr(image_folder, "_build", slow_build)
    loaded: dict[int, object] = {}
    errors: list[BaseException] = []

    def rank(i: int) -> None:
        try:
            loaded[i] = load_dataset("image-folder", root=root, image_size=8, cache_dir=cache)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=rank, args=(i,), name=f"rank{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert waiting.event.is_set(), "no rank waited for the other's build"
    assert len(builds) == 1, f"decoded by {builds}"
    assert torch.equal(loaded[0].train.images, loaded[1].train.images)
    assert len(list(cache.iterdir())) == 1  # the cache and nothing else: no lock file, no leftover .part


def test_a_cache_built_while_waiting_is_not_built_again(tmp_path: Path) -> None:
    folder = tmp_path / "cache" / "key"
    calls: list[Path] = []

    def build(tmp: Path) -> None:
        calls.append(tmp)
        (tmp / "index.json").write_text("{}")

    image_folder._build_once(folder, build)
    image_folder._build_once(folder, build)  # as a rank that got the lock after the first finished
    assert len(calls) == 1 and (folder / "index.json").is_file()
    assert not calls[0].exists()  # the temporary folder was renamed into place
