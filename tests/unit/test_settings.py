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
