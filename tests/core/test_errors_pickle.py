"""Errors cross process boundaries (a process pool, Ray workers) intact."""

import pickle

from scaleout.core.errors import ScaleoutError, SpaceError, StateError, UsageError


def test_errors_round_trip_through_pickle_with_their_hint():
    for err in (
        ScaleoutError("boom", hint="do x"),
        UsageError("--gpus: must be >= 1", hint="e.g. --gpus 160"),
        StateError("sweep is locked"),
        SpaceError("space.yaml", "search.lr.rules.0.from_", "unknown key", hint="use from"),
    ):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err)
        assert str(back) == str(err)
        assert back.exit_code == err.exit_code
    back = pickle.loads(pickle.dumps(SpaceError("f.yaml", "a.b", "bad")))
    assert (back.path, back.key, back.problem) == ("f.yaml", "a.b", "bad")
