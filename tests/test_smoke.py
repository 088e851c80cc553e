from tests.support.client import Api


async def test_submit_completes(api: Api) -> None:
    r = await api.submit("echo", {"x": 1})
    assert r.status_code == 202, r.text
    task = await api.wait_status(r.json()["task_id"], "completed")
    assert task["result"] == {"echo": {"x": 1}, "attempt": 1}
