"""The action tests use the shared world of tests/conftest.py (a2i_world, operator, viewer, superuser)."""

import pytest


@pytest.fixture(autouse=True)
def _stopping_takes_a_moment(aws):
    """Loops stay Stopping for 0.2 s after StopHumanLoop, so stop-then-delete really waits."""
    aws.configure(stop_delay_seconds=0.2)
