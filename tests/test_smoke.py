import subprocess
import sys

from tests.support.client import Api


async def test_submit_completes(api: Api) -> None:
    r = await api.submit("echo", {"x": 1})
    assert r.status_code == 202, r.text
    task = await api.wait_status(r.json()["task_id"], "completed")
    assert task["result"] == {"echo": {"x": 1}, "attempt": 1}


def test_the_server_defers_its_heaviest_imports() -> None:
    """``openai`` (~0.4 s to import) loads on a worker thread once the server listens
    (insightreader/llm/sdk.py), trafilatura (~0.1 s and more) on the first page
    extraction, httpx and httpcore (~0.05 s, twice that where httpx finds rich for its
    command line) on the first page fetch or webhook: a start of the server, its task
    types included, imports none of them at the top."""
    probe = (
        "import sys, insightreader.server, insightreader.cli, insightreader.tasktypes;"
        " print(sorted({'openai', 'trafilatura', 'httpx', 'httpcore'} & set(sys.modules)))"
    )
    answer = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert answer.stdout.strip() == "[]"
