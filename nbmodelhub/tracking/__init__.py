"""Training runs: hyperparameters, per-step metrics and weight snapshots, recorded as they happen.

``mh.run(...)`` starts a :class:`Run`; ``repo.runs()`` lists runs in progress and finished ones
(from any process writing to the repository); ``repo.commit_run(ID)`` commits an interrupted one.
"""

from nbmodelhub.tracking.recovery import RunInfo, list_runs, open_run
from nbmodelhub.tracking.run import Run, start
from nbmodelhub.tracking.state import RunState

__all__ = ["Run", "RunInfo", "RunState", "list_runs", "open_run", "start"]
