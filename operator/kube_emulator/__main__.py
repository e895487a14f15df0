"""`kube-emulator`: serve an in-memory Kubernetes API until SIGTERM/SIGINT.

    kube-emulator --port 0 --kubeconfig /tmp/kube/config --crds crds/

The first line on stdout is the server URL; the kubeconfig written to --kubeconfig works with kubectl, kopf and
the kubernetes client as is.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from .app import ServerOptions
from .manifests import ManifestError
from .testing import running_kube_emulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kube-emulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default 0: a free port)")
    parser.add_argument("--kubeconfig", type=Path, required=True, help="where to write the kubeconfig")
    parser.add_argument(
        "--crds",
        action="append",
        default=[],
        type=Path,
        help="a CRD manifest file or a directory of them (repeatable)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="bearer token for the kubeconfig; a client presenting another one gets 401 (default: random)",
    )
    parser.add_argument(
        "--history-limit",
        type=int,
        default=10_000,
        help="changes kept per resource for resumed watches (older resourceVersions get 410)",
    )
    parser.add_argument(
        "--bookmark-interval",
        type=float,
        default=60.0,
        help="seconds between BOOKMARK events on watches that allow them",
    )
    parser.add_argument("--log-level", default="WARNING", help="Python logging level (default WARNING)")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    options = ServerOptions(
        token=args.token, history_limit=args.history_limit, bookmark_interval=args.bookmark_interval
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running_kube_emulator(
        args.kubeconfig, args.crds, options=options, host=args.host, port=args.port
    ) as kube:
        print(kube.url, flush=True)
        print(f"kubeconfig: {kube.kubeconfig}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(serve(args))
    except ManifestError as error:
        print(f"kube-emulator: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
