from ecs_reinstall.cloud.models import Credentials, JobStatus, Server


def test_terminal_job_statuses():
    assert {s for s in JobStatus if s.is_terminal} == {JobStatus.SUCCESS, JobStatus.FAIL}


def test_server_busy_when_rebuilding_or_any_task():
    assert Server(id="s", status="REBUILD").busy
    assert Server(id="s", status="ACTIVE", task_state="rebooting").busy
    assert not Server(id="s", status="SHUTOFF").busy


def test_credentials_repr_hides_secrets():
    text = repr(Credentials("AK123", "sk-secret", "tok-secret"))
    assert "AK123" in text
    assert "sk-secret" not in text and "tok-secret" not in text
