import argparse

import pytest

from ecs_reinstall import settings


def parse(argv, env=None):
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    return settings.load(parser.parse_args(argv), env or {})


def test_defaults():
    s = parse([])
    assert s.qps == 10.0 and s.burst == 20 and s.log_format == "json" and s.clusterwide


def test_input_recheck_seconds_default_flag_env_and_check():
    assert parse([]).input_recheck_seconds == 5.0
    assert parse(["--input-recheck-seconds", "1"]).input_recheck_seconds == 1.0
    assert parse([], {"ECS_REINSTALL_INPUT_RECHECK_SECONDS": "2"}).input_recheck_seconds == 2.0
    with pytest.raises((ValueError, SystemExit)):
        parse(["--input-recheck-seconds", "0"])


def test_input_cache_seconds_default_flag_and_env():
    assert parse([]).input_cache_seconds == 2.0
    assert parse(["--input-cache-seconds", "0"]).input_cache_seconds == 0.0
    assert parse([], {"ECS_REINSTALL_INPUT_CACHE_SECONDS": "5"}).input_cache_seconds == 5.0


def test_flag_wins_over_environment():
    s = parse(["--region", "eu-west-101"], {"ECS_REINSTALL_REGION": "cn-north-4", "ECS_REINSTALL_QPS": "2.5"})
    assert s.region == "eu-west-101" and s.qps == 2.5


def test_watch_namespaces_from_flags_or_env():
    assert parse(["--namespace", "b", "--namespace", "a"]).namespaces == ("a", "b")
    s = parse([], {"ECS_REINSTALL_WATCH_NAMESPACES": "x, y,,"})
    assert s.namespaces == ("x", "y") and not s.clusterwide


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--qps", "fast"], {}, "--qps='fast' is not a valid float"),
        ([], {"ECS_REINSTALL_BURST": "x"}, "ECS_REINSTALL_BURST='x' is not a valid int"),
        (["--log-format", "xml"], {}, "log format 'xml' is not supported"),
        (["--endpoint", "ecs.example.com"], {}, "must start with https://"),
        (["--input-cache-seconds", "-1"], {}, "input cache seconds must be >= 0"),
        (["--namespace", "team-*"], {}, "watched namespace 'team-*' is not a namespace name"),
        ([], {"ECS_REINSTALL_WATCH_NAMESPACES": "a,Team-B"}, "'Team-B' is not a namespace name"),
    ],
)
def test_bad_values_say_what_and_where(argv, env, message):
    with pytest.raises(ValueError) as exc:
        parse(argv, env)
    assert message in str(exc.value)


def test_a_settle_time_under_twice_the_request_timeout_is_warned_about():
    assert settings.warnings(settings.Settings()) == []  # defaults: 60 s settle, 30 s timeout
    (warning,) = settings.warnings(settings.Settings(outcome_settle_seconds=4, request_timeout=5))
    assert "outcome settle time (4s)" in warning and "request timeout (5s)" in warning
    assert "--outcome-settle-seconds" in warning


def test_leader_election_defaults():
    s = parse([])
    assert s.leader_election is True
    assert (
        s.leader_election_lease_seconds,
        s.leader_election_renew_deadline_seconds,
        s.leader_election_retry_period_seconds,
    ) == (15.0, 10.0, 2.0)
    assert s.leader_election_lease_name == "ecs-reinstall-operator"
    assert s.pod_name is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("False", False),
        ("1", True),
        ("0", False),
        ("YES", True),
        ("no", False),
        (" true ", True),
    ],
)
def test_leader_election_is_a_real_boolean(text, expected):
    assert parse(["--leader-election", text]).leader_election is expected
    assert parse([], {"ECS_REINSTALL_LEADER_ELECTION": text}).leader_election is expected
    assert parse([f"--leader-election={text}"]).leader_election is expected


@pytest.mark.parametrize("text", ["maybe", "off", "2", "tru"])
def test_leader_election_refuses_what_is_not_a_boolean(text):
    with pytest.raises(ValueError) as exc:
        parse([], {"ECS_REINSTALL_LEADER_ELECTION": text})
    assert str(exc.value) == f"ECS_REINSTALL_LEADER_ELECTION={text!r} is not a valid boolean (true or false)"


def test_leader_election_settings_from_flags_and_env():
    s = parse(
        ["--leader-election-lease-seconds", "30", "--leader-election-lease-name", "ops.lease"],
        {
            "ECS_REINSTALL_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": "20",
            "ECS_REINSTALL_LEADER_ELECTION_RETRY_PERIOD_SECONDS": "4",
            "ECS_REINSTALL_POD_NAME": "ecs-reinstall-operator-7d9c5-x2x4q",
        },
    )
    assert (
        s.leader_election_lease_seconds,
        s.leader_election_renew_deadline_seconds,
        s.leader_election_retry_period_seconds,
    ) == (30.0, 20.0, 4.0)
    assert s.leader_election_lease_name == "ops.lease"
    assert s.pod_name == "ecs-reinstall-operator-7d9c5-x2x4q"
    assert parse(["--pod-name", "flag"], {"ECS_REINSTALL_POD_NAME": "env"}).pod_name == "flag"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--leader-election-renew-deadline-seconds", "15"],
            "--leader-election-renew-deadline-seconds (15) must be less than --leader-election-lease-seconds (15)",
        ),
        (
            ["--leader-election-lease-seconds", "8"],
            "--leader-election-renew-deadline-seconds (10) must be less than --leader-election-lease-seconds (8)",
        ),
        (
            ["--leader-election-retry-period-seconds", "10"],
            "--leader-election-retry-period-seconds (10) must be less than "
            "--leader-election-renew-deadline-seconds (10)",
        ),
        (["--leader-election-retry-period-seconds", "0"], "must be > 0"),
        (["--leader-election-lease-seconds", "nan"], "must be > 0"),
        (
            ["--leader-election-lease-seconds", "x"],
            "--leader-election-lease-seconds='x' is not a valid float",
        ),
        (["--leader-election-lease-name", "Ops_Lease"], "lease name 'Ops_Lease' is not an object name"),
    ],
)
def test_leader_election_settings_are_checked(argv, message):
    with pytest.raises(ValueError) as exc:
        parse(argv)
    assert message in str(exc.value)


def test_leader_election_flag_is_in_help():
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    text = parser.format_help()
    for flag in (
        "--leader-election ",
        "--leader-election-lease-seconds",
        "--leader-election-renew-deadline-seconds",
        "--leader-election-retry-period-seconds",
        "--leader-election-lease-name",
        "--pod-name",
    ):
        assert flag in text
    assert "ECS_REINSTALL_LEADER_ELECTION]" in text and "ECS_REINSTALL_POD_NAME]" in text
