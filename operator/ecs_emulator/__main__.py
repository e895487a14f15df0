"""``ecs-emulator`` / ``python -m ecs_emulator``: serve the ECS API emulator until SIGTERM or SIGINT.

The first line on stdout is the base URL (e.g. ``http://127.0.0.1:38211``), flushed, so a parent process can
start it with ``--port 0`` and read where it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from ecs_emulator.server import start_server
from ecs_emulator.state import Credential, EmulatorConfig, EmulatorState, apply_config

log = logging.getLogger("ecs_emulator")


def _credential(text: str) -> Credential:
    access_key, sep, secret_key = text.partition(":")
    if not sep or not access_key or not secret_key:
        raise argparse.ArgumentTypeError("a credential is AK:SK (both non-empty)")
    return Credential(access_key, secret_key)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecs-emulator", description="A local Huawei Cloud ECS API emulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free port)")
    parser.add_argument("--access-key", help="access key of the main credential (with --secret-key)")
    parser.add_argument("--secret-key", help="secret key of the main credential")
    parser.add_argument(
        "--credential", action="append", type=_credential, default=[], metavar="AK:SK",
        help="an extra accepted credential (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--project-id", default="0123456789abcdef0123456789abcdef", help="the default project"
    )
    parser.add_argument(
        "--security-token-ok", action="store_true",
        help="accept any X-Security-Token with a permanent AK (temporary AKs still need their own token)",
    )  # fmt: skip
    parser.add_argument(
        "--auto-create-servers", action="store_true", help="unknown server IDs exist (ACTIVE)"
    )
    parser.add_argument("--job-seconds", type=float, help="how long a reinstall job runs (RUNNING phase)")
    parser.add_argument("--init-seconds", type=float, help="how long a reinstall job stays INIT")
    parser.add_argument(
        "--config", type=json.loads, help="more configuration as JSON (as PUT /_emulator/config)"
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (method, path, status)")
    return parser


def state_from_args(args: argparse.Namespace) -> EmulatorState:
    credentials = list(args.credential)
    if (args.access_key is None) != (args.secret_key is None):
        raise SystemExit("ecs-emulator: --access-key and --secret-key go together")
    if args.access_key:
        credentials.insert(0, Credential(args.access_key, args.secret_key))
    if not credentials:
        raise SystemExit("ecs-emulator: give --access-key/--secret-key or at least one --credential AK:SK")
    config: dict = dict(args.config or {})
    if args.auto_create_servers:
        config["auto_create_servers"] = True
    if args.security_token_ok:
        config["accept_any_security_token"] = True
    if args.job_seconds is not None:
        config["job_seconds"] = args.job_seconds
    if args.init_seconds is not None:
        config["init_seconds"] = args.init_seconds
    try:
        startup_config = apply_config(EmulatorConfig(), config)
    except ValueError as error:
        raise SystemExit(f"ecs-emulator: bad configuration: {error}") from None
    return EmulatorState(project_id=args.project_id, credentials=credentials, config=startup_config)


async def serve(args: argparse.Namespace) -> None:
    state = state_from_args(args)
    server = await start_server(state, host=args.host, port=args.port, access_log=args.access_log)
    sys.stdout.write(server.url + "\n")
    sys.stdout.flush()
    log.info("ECS emulator listening on %s (project %s)", server.url, state.default_project_id)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
