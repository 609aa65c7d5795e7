"""data.train_label_groups: training sees groups of classes as labels (positives far apart), evaluation the
classes. Checked on the labels the method receives, on the classifier's size, and on the one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tunedcl.train.loop as loop
from tunedcl.train.assemble import training_labels
from tunedcl.train.config import ConfigError, load_config
from tunedcl.train.run import evaluate_run, run_training

pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn (pip install 'tunedcl[dev]')")

TINY = ["data.dataset=digits", "data.per_class=null", "model.width=0.25", "train.batch_size=64", "train.max_steps=3",
        "train.threads=1", "eval.linear_probe=fast", "eval.probe_epochs=5", "eval.knn_k=5"]
GROUPS = "data.train_label_groups=[[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]"


def test_training_labels_map_each_class_to_its_group() -> None:
    labels = torch.tensor([0, 1, 2, 3, 3, 0])
    assert training_labels(labels, None, 4) is labels
    assert training_labels(labels, [[3, 0], [1, 2]], 4).tolist() == [0, 1, 1, 0, 0, 0]
    for groups in ([[0, 1], [2]], [[0, 1], [2, 3, 4]]):  # a class missing; a class the dataset lacks
        with pytest.raises(ConfigError, match=r"data.train_label_groups must hold every class 0..3 of the dataset "
                                              r"once; got"):
            training_labels(labels, groups, 4)


@pytest.mark.parametrize("value", ["[[0, 1], [1, 2]]", "[]", "[[0], []]", "[[-1, 0]]", "[[0.5]]", "3"])
def test_bad_groups_are_one_line_config_errors(value: str) -> None:
    with pytest.raises(ConfigError, match=r"data.train_label_groups"):
        load_config("quick", [f"data.train_label_groups={value}"])


@pytest.mark.parametrize("method", ["tcl", "ce"])
def test_training_sees_groups_and_evaluation_the_classes(
    method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[torch.Tensor] = []
    real_batch = loop.Batch

    def spy(views: torch.Tensor, labels: torch.Tensor, *args, **kwargs):  # noqa: ANN002, ANN003
        seen.append(labels.clone())
        return real_batch(views, labels, *args, **kwargs)

    monkeypatch.setattr(loop, "Batch", spy)
    config = load_config("quick", [*TINY, GROUPS, f"loss.method={method}"])
    results = run_training(config, tmp_path / "run", quiet=True)
    assert len(seen) == 3 and all(set(labels.tolist()) == {0, 1} for labels in seen)
    assert results["linear_top1"] > 30  # the probe scores the 10 classes (chance: 10%), not the 2 groups
    if method == "ce":
        assert "ce_top1" not in results  # a 2-way head cannot score 10 classes
    again = evaluate_run(tmp_path / "run")  # tunedcl eval builds the method as training did (a 2-way head)
    assert again["linear_top1"] == results["linear_top1"]
    assert "train_label_groups:" in (tmp_path / "run" / "config.yaml").read_text()
