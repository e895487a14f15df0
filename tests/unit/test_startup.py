"""The start-up LIST: retried while the API is unavailable, a clear stop when the CRD is missing."""

import pytest

from ecs_reinstall import app
from ecs_reinstall.kube import KubeUnavailable, NotFound
from ecs_reinstall.settings import Settings


class FakeKube:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    async def list_reinstalls(self, namespaces=()):
        self.calls.append(tuple(namespaces))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_a_missing_crd_stops_the_start_with_what_to_do():
    kube = FakeKube(NotFound(404, "Not Found"))
    with pytest.raises(app.MissingCRD) as raised:
        await app._list_reinstalls(kube, Settings(namespaces=("team-a",)))
    assert "ecsreinstalls.ecs.reinstall.dev/v1alpha1" in str(raised.value)
    assert "apply the CRD" in str(raised.value) and kube.calls == [("team-a",)]


async def test_an_unavailable_api_is_waited_for():
    items = [{"metadata": {"name": "a"}}]
    kube = FakeKube(KubeUnavailable(503, "Service Unavailable"), items)
    assert await app._list_reinstalls(kube, Settings()) == items
    assert len(kube.calls) == 2  # once more after the first backoff (0.5 s)
