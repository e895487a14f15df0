"""Running the emulator inside tests: in the current event loop, or in a background thread.

    async with running_kube_emulator(tmp_path, crds=["crds/"]) as kube:
        os.environ["KUBECONFIG"] = str(kube.kubeconfig)   # kubectl, kopf, the kubernetes client
        kube.faults.add(FaultRule(verbs={"patch"}, error_code=409, times=1))

    with kube_emulator_in_thread(tmp_path) as kube:       # for synchronous clients in the test's thread
        kubernetes.config.load_kube_config(str(kube.kubeconfig))

Both listen on 127.0.0.1 on a free port, write a kubeconfig (`<dir>/kubeconfig` when given a directory) and stop
when the block ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from .app import KubeEmulator, ServerOptions
from .cluster import Cluster
from .faults import FaultInjector
from .kubeconfig import write_kubeconfig
from .manifests import install_crds
from .requestlog import RequestLog

T = TypeVar("T")


@dataclass
class KubeEmulatorHandle:
    """A running emulator: where it listens, its kubeconfig, and its state, faults and counters."""

    url: str
    kubeconfig: Path
    token: str | None
    emulator: KubeEmulator
    _loop: asyncio.AbstractEventLoop = field(repr=False)

    @property
    def cluster(self) -> Cluster:
        """The objects and verbs (use from the emulator's loop; in a thread, through `call`)."""
        return self.emulator.cluster

    @property
    def faults(self) -> FaultInjector:
        return self.emulator.faults

    @property
    def requests(self) -> RequestLog:
        return self.emulator.requests

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function(*args)` on the emulator's loop and return its result (thread-safe)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            return function(*args)

        async def run() -> T:
            return function(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()


def _kubeconfig_path(where: str | Path) -> Path:
    path = Path(where)
    return path / "kubeconfig" if path.is_dir() else path


@asynccontextmanager
async def running_kube_emulator(
    where: str | Path,
    crds: Iterable[str | Path] | None = None,
    *,
    options: ServerOptions | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[KubeEmulatorHandle]:
    """Serve an emulator in the running loop for the duration of the block."""
    options = dataclasses.replace(options) if options else ServerOptions()
    if options.token is None:
        options.token = secrets.token_urlsafe(24)
    emulator = KubeEmulator(options)
    if crds:
        install_crds(emulator.cluster, crds)
    runner = web.AppRunner(emulator.make_app(), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        bound = runner.addresses[0]
        url = f"http://{host}:{bound[1]}"
        emulator.server_address = f"{host}:{bound[1]}"
        kubeconfig = write_kubeconfig(_kubeconfig_path(where), url, options.token)
        yield KubeEmulatorHandle(url, kubeconfig, options.token, emulator, asyncio.get_running_loop())
    finally:
        await runner.cleanup()


@contextmanager
def kube_emulator_in_thread(
    where: str | Path,
    crds: Iterable[str | Path] | None = None,
    *,
    options: ServerOptions | None = None,
) -> Iterator[KubeEmulatorHandle]:
    """Serve an emulator from its own loop in a daemon thread, so that blocking clients can run here."""
    ready: Future[KubeEmulatorHandle] = Future()
    stop: asyncio.Event | None = None
    loop_holder: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        loop_holder.append(asyncio.get_running_loop())
        try:
            async with running_kube_emulator(where, crds, options=options) as handle:
                ready.set_result(handle)
                await stop.wait()
        except BaseException as error:
            if not ready.done():
                ready.set_exception(error)
            raise

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="kube-emulator", daemon=True)
    thread.start()
    handle = ready.result(timeout=30)
    try:
        yield handle
    finally:
        loop_holder[0].call_soon_threadsafe(stop.set)  # type: ignore[union-attr]
        thread.join(timeout=30)
