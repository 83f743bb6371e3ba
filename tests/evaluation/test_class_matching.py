"""Evaluation matches the model's classes to the dataset's by name, and refuses when they differ."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from torchdet.evaluation.evaluate import label_to_category_id


def _dataset(names, ids):
    return SimpleNamespace(categories=["__background__"] + names,
                           label_to_category_id={k + 1: i for k, i in enumerate(ids)})


def test_same_names_in_another_order_map_by_name():
    assert label_to_category_id(["__background__", "dog", "cat"], _dataset(["cat", "dog"], [7, 9])) == {1: 9, 2: 7}


def test_a_model_with_more_classes_scores_only_the_dataset_s():
    model = ["__background__", "N/A", "cat", "car", "dog"]
    assert label_to_category_id(model, _dataset(["cat", "dog"], [7, 9])) == {2: 7, 4: 9}


def test_different_names_are_refused_with_the_way_out():
    with pytest.raises(ValueError, match=r"\['bird'\] are not among the model's classes.*--match-classes-by-position"):
        label_to_category_id(["__background__", "cat", "dog"], _dataset(["dog", "bird"], [1, 2]))


def test_by_position_is_the_deliberate_case():
    with pytest.warns(UserWarning, match="by position, as asked"):
        mapping = label_to_category_id(["__background__", "chat", "chien"], _dataset(["cat", "dog"], [7, 9]),
                                       by_position=True)
    assert mapping == {1: 7, 2: 9}
    with pytest.raises(ValueError, match="by position"):
        label_to_category_id(["__background__", "a"], _dataset(["cat", "dog"], [7, 9]), by_position=True)
