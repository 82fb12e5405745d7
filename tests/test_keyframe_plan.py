"""The keyframe plan: keyframes where the motion needs them, and fewer, evenly spread, on a slow CPU."""
from __future__ import annotations

import numpy as np
import pytest

from talkinghead import keyframe_plan as plan
from talkinghead import pose as P

HEAD_X, BREATHING = P.INDEX["head_x_index"], P.INDEX["breathing_index"]
R_HEAD_X, R_BREATHING = (list(range(P.NUM_PARAMS))[P.ROTATION].index(i) for i in (HEAD_X, BREATHING))


def poses(head_x=lambda t: 0.0, breathing=lambda t: 0.0):
    def pose_at(t):
        p = np.zeros(P.NUM_PARAMS, np.float32)
        p[HEAD_X], p[BREATHING] = head_x(t), breathing(t)
        return p
    return pose_at


def test_a_resting_head_gets_one_keyframe_per_interval():
    assert plan.plan_interval(poses(), 10.0, 2.0) == [(10.0, 0)]


def test_a_nod_that_is_over_by_the_middle_of_the_interval_still_gets_keyframes():
    """The head nods and comes back within the first half while the chest breathes steadily: halfway the
    pose is on the straight line between the interval's ends again, yet a quarter of the way in it is far
    off it (a blend of the two ends would show no nod)."""
    pose_at = poses(head_x=lambda t: 0.25 * np.sin(np.pi * np.clip(t - 10.0, 0, 1)),
                    breathing=lambda t: (t - 10.0) / 2.0)
    r = lambda t: pose_at(t)[P.ROTATION]  # noqa: E731
    assert plan.bend(r(10.0), r(11.0), r(12.0)) <= plan.BEND  # looking halfway only would see nothing
    times = sorted(t for t, _ in plan.plan_interval(pose_at, 10.0, 2.0))
    assert times[0] == 10.0 and any(10.0 < t < 11.0 for t in times)
    edges = times + [12.0]
    for t0, t1 in zip(edges, edges[1:]):  # between consecutive keyframes the motion stays near their line
        probes = np.linspace(t0, t1, 9)[1:-1]
        assert max(plan.bend(r(t0), r(t), r(t1)) for t in probes) <= plan.BEND + 0.05 or t1 - t0 <= 2.0 / 16


def test_blend_weight_follows_the_pose_along_the_line_and_time_when_keyframes_agree():
    r0, r1 = np.zeros(6), np.zeros(6)
    r1[R_HEAD_X] = 0.3
    r = np.zeros(6)
    r[R_HEAD_X] = 0.075
    assert plan.blend_weight(r, r0, r1, time_weight=0.9) == pytest.approx(0.25)
    assert plan.blend_weight(r, r0, r0, time_weight=0.9) == pytest.approx(0.9)
    r[R_HEAD_X] = 0.6  # beyond the right keyframe: held there
    assert plan.blend_weight(r, r0, r1, time_weight=0.5) == 1.0


def test_within_budget_drops_the_finest_splits_first_and_keeps_interval_starts():
    planned = [(0.0, 0), (0.5, 2), (1.0, 1), (1.5, 2), (2.0, 0), (2.25, 3)]
    assert plan.within_budget(planned, 10) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.25]
    assert plan.within_budget(planned, 5) == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert plan.within_budget(planned, 3) == [0.0, 1.0, 2.0]
    assert plan.within_budget(planned, 0.5) == [0.0, 2.0]
