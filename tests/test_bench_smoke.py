"""The benchmark harness still runs end to end (its --quick mode; no figure is checked:
CI machines are too noisy for that, and docs/benchmarks.md holds the real runs)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.process import REPO


@pytest.mark.parametrize("target", ["insightreader", "insightreader-uvicorn"])
def test_fanout_quick_run_gives_a_json_line_with_its_metrics(target: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "fanout", "--quick", "--target", target],
        cwd=REPO, capture_output=True, text=True, timeout=100,
    )
    assert done.returncode == 0, done.stderr
    (line,) = [l for l in done.stdout.splitlines() if l.startswith("{")]
    result = json.loads(line)
    assert result["error"] is None, result["error"]
    assert (result["scenario"], result["target"], result["runs"]) == ("fanout", target, 1)
    metrics = result["metrics"]
    for key in ("submit_to_first_ms", "first_to_last_ms", "received_min", "lag_p99_ms"):
        assert set(metrics[key]) == {"median", "min", "max", "values"}
    assert metrics["received_min"]["median"] == metrics["streams"]["median"]
    assert {"nproc", "cpu", "kernel", "python", "packages"} <= set(result["machine"])


def test_restart_quick_run_times_the_first_dispatch_after_the_server_listens() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "restart", "--quick"],
        cwd=REPO, capture_output=True, text=True, timeout=100,
    )
    assert done.returncode == 0, done.stderr
    (line,) = [l for l in done.stdout.splitlines() if l.startswith("{")]
    result = json.loads(line)
    assert result["error"] is None, result["error"]
    metrics = {key: value["median"] for key, value in result["metrics"].items()}
    assert metrics["pending"] == 200
    assert 0 < metrics["listening_s"] < metrics["first_dispatch_s"]
    assert metrics["empty_db_listening_s"] > 0


def test_submit_closed_quick_run_also_submits_on_a_database_with_a_history() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "submit-closed", "--quick", "--target", "insightreader"],
        cwd=REPO, capture_output=True, text=True, timeout=200,
    )
    assert done.returncode == 0, done.stderr
    results = {r["variant"]: r for r in (json.loads(l) for l in done.stdout.splitlines() if l.startswith("{"))}
    assert set(results) == {"", "history"}
    for result in results.values():
        assert result["error"] is None, result["error"]
        metrics = {key: value["median"] for key, value in result["metrics"].items()}
        assert metrics["submit_rps"] > 0 and metrics["me_rps"] > 0
        assert metrics["submit_non_2xx"] == 0
    assert results["history"]["metrics"]["history"]["median"] == 1_000
