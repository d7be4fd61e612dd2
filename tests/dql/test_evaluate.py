"""DQL evaluate: a 6-variant grid trained for real, losers stopped early, the top 3 committed."""

from __future__ import annotations

import pytest

from dql import trainers
from dql.models import alexnet
from nbmodelhub.dql import register_trainer
from nbmodelhub.errors import ModelHubError, UsageError

QUERY = (
    'evaluate m from "alexnet" with config = "cfg", train = "fit" '
    "vary config.lr in [0.1, 0.03, 0.001] and config.batch in [16, 32] keep top(3, m.metrics.loss, 6)"
)
NAMESPACE = {"cfg": {"lr": 0.0, "batch": 8, "optimizer": "sgd"}, "fit": trainers.fit}


def check_grid(repo, result) -> None:
    trials = result.trials
    assert [t.config["lr"] for t in trials] == [0.1, 0.1, 0.03, 0.03, 0.001, 0.001]
    assert all(t.config["optimizer"] == "sgd" for t in trials)
    committed = [t for t in trials if t.status == "committed"]
    assert len(committed) == 3 == len(result.versions)
    finished = [t for t in trials if t.stopped_at is None]
    best = sorted(finished, key=lambda t: t.metrics["loss"])[:3]
    assert {t.label for t in committed} == {t.label for t in best}
    for t in trials:
        if t.stopped_at is not None:  # a loser: at step 6 at least 3 variants had done better
            assert t.stopped_at == 6 and t.curves["loss"][-1][0] == 6
            mine = t.curves["loss"][-1][1]
            better = [o for o in trials if o is not t and len(o.curves["loss"]) >= 6 and o.curves["loss"][5][1] < mine]
            assert len(better) >= 3
        else:
            assert t.curves["loss"][-1][0] == trainers.STEPS
    for t in committed:
        v = repo.get(t.version.ref)
        assert v.params == t.config and v.metrics["loss"] == pytest.approx(t.metrics["loss"])
        assert v.parent_refs == ("alexnet@1",)
        assert len(v.curves["loss"]) == trainers.STEPS
        assert repo.graph(v).layers() == repo.graph("alexnet@1").layers()
    assert repo.load(result.versions[0])["fc.weight"].tolist() != repo.load("alexnet@1")["fc.weight"].tolist()


@pytest.mark.slow
def test_evaluate_on_the_default_process_pool(repo):
    repo.commit(alexnet(0), name="alexnet")
    result = repo.query(QUERY, NAMESPACE)
    check_grid(repo, result)
    assert any(t.status == "stopped" for t in result.trials)  # the last-run, worst variants stop at step 6


@pytest.mark.slow
def test_evaluate_on_a_two_worker_dask_local_cluster(repo):
    import cloudpickle
    from distributed import Client, LocalCluster

    cloudpickle.register_pickle_by_value(trainers)  # the workers cannot import the tests package
    repo.commit(alexnet(0), name="alexnet")
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, Client(cluster) as client:
        result = repo.query(QUERY, NAMESPACE, executor=client.get_executor())
    check_grid(repo, result)


def test_evaluate_errors(repo):
    repo.commit(alexnet(0), name="alexnet")
    before = [v.ref for v in repo.versions()]
    with pytest.raises(UsageError, match="no training function named 'nope'"):
        repo.query('evaluate m from "alexnet" with config = "cfg", train = "nope" vary config.lr in [1]', NAMESPACE)
    with pytest.raises(UsageError, match="no config dict named 'missing'"):
        repo.query('evaluate m from "alexnet" with config = "missing", train = "fit"', NAMESPACE)
    register_trainer("broken", trainers.broken)
    with pytest.raises(ModelHubError, match=r"every variant failed.*no data for lr=0\.5"):
        repo.query(
            'evaluate m from "alexnet" with config = "cfg", train = "broken" vary config.lr in [0.5]',
            NAMESPACE,
            executor=_Inline(),
        )
    assert [v.ref for v in repo.versions()] == before


class _Inline:
    """A concurrent.futures.Executor that runs each task at once, in this process."""

    def submit(self, fn, *args):
        from concurrent.futures import Future

        f: Future = Future()
        f.set_result(fn(*args))
        return f
