"""Soak: many commits into one repository stay numbered, listed, loadable and fsck-clean.

The workload is ``benchmarks/soak_bench.py``'s (which also times the listings): 2,000 small and 50
large commits with NBMH_RELIABILITY_FULL=1, fewer otherwise. No timing is asserted here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import nbmodelhub as mh

from .conftest import trials

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from soak_bench import soak

SMALL, LARGE, LARGE_MB = trials(2000, 300), trials(50, 4), trials(16, 2)


@pytest.mark.slow
def test_soak_keeps_every_version_listed_loadable_and_fsck_clean(tmp_path):
    path = tmp_path / "repo"
    listings: list[int] = []
    committed = soak(path, SMALL, LARGE, LARGE_MB, every=max(1, (SMALL + LARGE) // 6),
                     on_checkpoint=lambda done, repo: listings.append(len(repo.versions())))  # fmt: skip
    # a listing in the committing process sees every commit made so far, at each checkpoint
    every = max(1, (SMALL + LARGE) // 6)
    assert listings == [every * (i + 1) for i in range(len(listings))]

    repo = mh.open(path)
    versions = repo.versions()
    assert len(versions) == SMALL + LARGE
    by_model: dict[str, list[mh.Version]] = {}
    for v in versions:
        by_model.setdefault(v.model, []).append(v)
    assert set(by_model) == set(committed)
    for model, steps in committed.items():
        # numbers 1..n, in commit order, each with its own params and metrics
        assert [v.number for v in by_model[model]] == list(range(1, len(steps) + 1))
        for v, step in zip(by_model[model], steps, strict=True):
            assert v.params == step.params and v.metrics == step.metrics
    # another process's view (nothing cached) agrees with the committer's
    assert [(v.ref, v.id) for v in versions] == [(v.ref, v.id) for v in mh.open(path).versions()]

    report = repo.fsck()
    assert report.ok, report.problems
    assert report.versions == SMALL + LARGE
    # every large version and a spread of small ones load bit-identically
    for model, steps in committed.items():
        picks = range(len(steps)) if model == "large" else {0, len(steps) // 2, len(steps) - 1}
        for i in picks:
            got = repo.load(f"{model}@{i + 1}")
            assert set(got) == set(steps[i].weights)
            for name, w in steps[i].weights.items():
                assert np.asarray(got[name]).tobytes() == w.tobytes(), f"{model}@{i + 1}: {name}"
    # the large model's unchanged quarters were stored once: 4 + one new quarter per later commit
    large = by_model["large"]
    hashes = {t.hash for v in large for t in v.tensors.values()}
    assert len(large) == LARGE and len(hashes) == 4 + (LARGE - 1)
