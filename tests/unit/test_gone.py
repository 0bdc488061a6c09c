"""Lost stored data is one kind of error, 410 / DATA_LOSS, refined by what was lost; a client that meets a 410 whose
type it does not know raises the base, not whichever refinement was declared first."""

from __future__ import annotations

import pytest

from service.errors import Gone, Pose3DError, StreamFramesLost, error_class
from service.jobs.store import JobInputLost, JobResultsLost


@pytest.mark.parametrize("lost", [StreamFramesLost, JobResultsLost, JobInputLost])
def test_every_lost_data_error_is_gone(lost: type[Pose3DError]) -> None:
    assert issubclass(lost, Gone)
    assert (lost.status, lost.grpc_code) == (410, "DATA_LOSS")
    assert lost.type_slug != Gone.type_slug
    assert error_class(lost.type_slug, 410) is lost


def test_an_unknown_410_is_the_base() -> None:
    assert error_class("lost-something-new", 410) is Gone
    assert error_class(None, 410) is Gone
