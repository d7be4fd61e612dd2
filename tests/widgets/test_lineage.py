"""Lineage: the version DAG of a model from a real repository, across models (fine-tunes, copies),
the key metric, deleted parents, the static DAG picture."""

from __future__ import annotations

import base64
import io

import pytest
from conftest import numpy_weights

from nbmodelhub.errors import RefNotFound, UsageError
from nbmodelhub.widgets.lineage import Lineage, layered_positions


@pytest.fixture
def family(repo):
    for i in range(3):
        metrics = {"acc": 0.5 + 0.1 * i, "loss": 1 - 0.2 * i}
        repo.commit(numpy_weights(i), name="base", message=f"train {i}", metrics=metrics)
    repo.commit(numpy_weights(9), name="base", message="branch", parents=["base@1"], metrics={"loss": 0.9})
    repo.commit(numpy_weights(3), name="ft", message="fine-tune", parents=["base@2"], metrics={"acc": 0.9})
    repo.commit(numpy_weights(4), name="ft", message="more")
    repo.commit(numpy_weights(5), name="ft2", message="fine-tune of the fine-tune", parents=["ft@2"])
    repo.copy("base@3", "frozen")
    repo.commit(numpy_weights(6), name="unrelated")
    return repo


def _edges(data):
    refs = {n["id"]: n["ref"] for n in data["nodes"]}
    return {(refs[p], n["ref"]) for n in data["nodes"] for p in n["parents"]}


def test_a_models_dag_with_its_fine_tunes_and_copies(family):
    data = Lineage.of(family, "base").data
    refs = [n["ref"] for n in data["nodes"]]
    assert set(refs) == {"base@1", "base@2", "base@3", "base@4", "ft@1", "ft@2", "ft2@1", "frozen@1"}
    assert _edges(data) == {
        ("base@1", "base@2"), ("base@2", "base@3"), ("base@1", "base@4"),
        ("base@2", "ft@1"), ("ft@1", "ft@2"), ("ft@2", "ft2@1"), ("base@3", "frozen@1"),
    }
    assert data["models"][0] == "base" and set(data["models"]) == {"base", "ft", "ft2", "frozen"}
    # Oldest first, so the view and the picture place versions in the order they were made.
    assert refs.index("base@1") < refs.index("base@2") < refs.index("ft@1") < refs.index("ft2@1")


def test_a_fine_tunes_lineage_reaches_back_into_its_base(family):
    data = Lineage.of(family, "ft").data
    refs = {n["ref"] for n in data["nodes"]}
    # Its ancestors in base (not base's other branches), and its own descendants in ft2.
    assert refs == {"ft@1", "ft@2", "base@1", "base@2", "ft2@1"}
    assert ("base@2", "ft@1") in _edges(data)


def test_the_key_metric(family):
    data = Lineage.of(family, "base").data
    assert data["metric"] == "acc"  # preferred over loss
    metric = {n["ref"]: n["metric"] for n in data["nodes"]}
    assert metric["base@3"] == pytest.approx(0.7) and metric["base@4"] is None
    assert Lineage.of(family, "base", metric="loss").data["nodes"][0]["metric"] == pytest.approx(1.0)
    with pytest.raises(UsageError, match="no version in this lineage has a metric 'f1'; their metrics are acc, loss"):
        Lineage.of(family, "base", metric="f1")
    assert Lineage.of(family, "unrelated").data["metric"] is None


def test_deleted_parents_are_named_not_drawn(family):
    gone = family.get("base@1").id
    family.delete("base@1")
    data = Lineage.of(family, "base").data
    by_ref = {n["ref"]: n for n in data["nodes"]}
    assert "base@1" not in by_ref
    assert by_ref["base@2"]["parents"] == [] and by_ref["base@2"]["missing_parents"] == [gone[:12]]


def test_unknown_model(family):
    with pytest.raises(RefNotFound, match="no version 'bsae'; closest: base"):
        Lineage.of(family, "bsae")


def test_static_picture_draws_parents_above_children(family):
    lineage = Lineage.of(family, "base")
    nodes = lineage.data["nodes"]
    pos = layered_positions(nodes)
    for n in nodes:
        for p in n["parents"]:
            assert pos[p][1] > pos[n["id"]][1]
    # No two versions on the same spot.
    assert len(set(pos.values())) == len(nodes)
    png = base64.b64decode(lineage._repr_mimebundle_()[0]["image/png"])
    from matplotlib.image import imread

    image = imread(io.BytesIO(png), format="png")
    assert image.shape[0] > 300 and image.shape[1] > 300
    assert (image[..., :3] < 0.9).any(axis=-1).mean() > 0.01
