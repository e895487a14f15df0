"""Starting and stopping the emulator's HTTP server in the current event loop (used by the CLI and tests)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from aiohttp import web

from ecs_emulator.app import create_app
from ecs_emulator.state import EmulatorState


@dataclass
class RunningServer:
    url: str
    runner: web.AppRunner

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_server(
    state: EmulatorState, *, host: str = "127.0.0.1", port: int = 0, access_log: bool = False
) -> RunningServer:
    """Listen on ``host:port`` (0 = a free port) and serve; the URL carries the real port."""
    log_options = {} if access_log else {"access_log": None}
    runner = web.AppRunner(create_app(state), shutdown_timeout=1.0, **log_options)
    await runner.setup()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    site = web.SockSite(runner, sock)
    await site.start()
    bound_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if family == socket.AF_INET6 else host
    return RunningServer(url=f"http://{shown_host}:{bound_port}", runner=runner)
