"""The peer: the same reinstalls scripted the way a user would without the operator, on the official SDK.

    BENCH_AK=... BENCH_SK=... python bench/sdk_peer.py --endpoint URL --project-id P --servers FILE \
        --threads 32 --poll-interval 10 --output FILE

`huaweicloudsdkecs` `EcsClient` (BasicCredentials, the endpoint overridden to the emulator), one client shared by
a thread pool: POST every reinstall, then every `--poll-interval` seconds GET every unfinished job, until all
have ended. A 429 is waited out (Retry-After, else 1 s) and retried, as anyone scripting against a throttled API
ends up doing. Run as its own process so that its CPU and memory are measured like the operator's.
Writes one JSON file: per server the POST's send and return times and the job ID, per job when the script saw
it end and how, and the number of calls made.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException, ServerResponseException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkecs.v2 import (
    EcsClient,
    ReinstallServerWithCloudInitOption,
    ReinstallServerWithCloudInitRequest,
    ReinstallServerWithCloudInitRequestBody,
    ShowJobRequest,
)

TERMINAL = ("SUCCESS", "FAIL")


class Peer:
    def __init__(self, client: EcsClient, password: str):
        self.client = client
        self.password = password
        self.calls: Counter = Counter()
        self._lock = threading.Lock()

    def _count(self, what: str) -> None:
        with self._lock:
            self.calls[what] += 1

    def _with_retry(self, what: str, call):
        while True:
            try:
                answer = call()
                self._count(f"{what}:ok")
                return answer
            except ClientRequestException as exc:
                if exc.status_code != 429:
                    raise
                self._count(f"{what}:429")
                time.sleep(1.0)
            except ServerResponseException:
                self._count(f"{what}:5xx")
                time.sleep(1.0)

    def submit(self, server_id: str) -> dict:
        option = ReinstallServerWithCloudInitOption(adminpass=self.password, mode="withStopServer")
        request = ReinstallServerWithCloudInitRequest(
            server_id=server_id, body=ReinstallServerWithCloudInitRequestBody(os_reinstall=option)
        )
        sent = time.time()
        job_id = self._with_retry(
            "reinstall", lambda: self.client.reinstall_server_with_cloud_init(request)
        ).job_id
        return {"server_id": server_id, "job_id": job_id, "sent": sent, "accepted": time.time()}

    def job_status(self, job_id: str) -> tuple[str, str, float]:
        job = self._with_retry("get_job", lambda: self.client.show_job(ShowJobRequest(job_id=job_id)))
        return job_id, job.status, time.time()


def main() -> int:
    parser = argparse.ArgumentParser(
        description="reinstall servers with the official SDK, then poll the jobs"
    )
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--project-id", required=True)
    parser.add_argument("--servers", type=Path, required=True, help="a file with one server ID per line")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--poll-interval", type=float, default=10.0)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    credentials = BasicCredentials(os.environ["BENCH_AK"], os.environ["BENCH_SK"], args.project_id)
    config = HttpConfig.get_default_config()
    config.timeout = (10, 60)
    client = (
        EcsClient.new_builder()
        .with_http_config(config)
        .with_credentials(credentials)
        .with_endpoints([args.endpoint])
        .build()
    )
    peer = Peer(client, os.environ["BENCH_PASSWORD"])
    servers = [line.strip() for line in args.servers.read_text().splitlines() if line.strip()]

    started = time.time()
    with ThreadPoolExecutor(args.threads) as pool:
        submits = list(pool.map(peer.submit, servers))
        all_submitted = time.time()
        pending = {s["job_id"] for s in submits}
        finished: dict[str, dict] = {}
        rounds = 0
        next_round = all_submitted + args.poll_interval
        while pending:
            time.sleep(max(0.0, next_round - time.time()))
            next_round += args.poll_interval
            rounds += 1
            for job_id, status, seen in pool.map(peer.job_status, sorted(pending)):
                if status in TERMINAL:
                    finished[job_id] = {"status": status, "seen": seen}
                    pending.discard(job_id)
    output = {
        "started": started,
        "all_submitted": all_submitted,
        "all_done": time.time(),
        "threads": args.threads,
        "poll_interval": args.poll_interval,
        "poll_rounds": rounds,
        "submits": submits,
        "finished": finished,
        "calls": dict(peer.calls),
    }
    args.output.write_text(json.dumps(output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
