"""A short chaos run in the test suite: tens of resources, the operator SIGKILLed a few times, both APIs failing
at random; then the invariants of bench/chaos.py (terminal phase matching the cloud, exactly one accepted
reinstall per resource, no secret anywhere, no crash). Invariants only: no timing is asserted.

Like the full run (`make chaos`, 300 resources, 20 kills), it also loses job IDs on purpose (POSTs processed and
then dropped, or answered after the read timeout), failed jobs among them: the operator must then read the
outcome from the server's launch time and never report such a failure as a success.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import chaos  # noqa: E402


def test_kills_and_faults_keep_every_invariant(tmp_path: Path) -> None:
    config = replace(
        chaos.ChaosConfig(),
        n=30,
        kills=3,
        waves=2,
        job_seconds=3.0,
        run_between_kills=(0.5, 2.5),
        down_between=(0.0, 0.5),
        seed=7,
        timeout=90.0,
    )
    result = chaos.run_chaos(config, tmp_path, log=lambda _text: None)

    assert len(result["kills"]) == 3 and result["operator_starts"] == 4
    assert result["phases"] == result["expected"], result["violations"]
    assert result["violations"] == [], "\n".join(str(v) for v in result["violations"])
    assert result["accepted_reinstalls"] == {1: 30}
    assert result["secret_scan"]["metrics_pages"] > 0 and result["secret_scan"]["events"] > 0
