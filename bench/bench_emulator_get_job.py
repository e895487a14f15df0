"""How many signed ``GET /v1/{project_id}/jobs/{job_id}`` requests per second the ECS emulator serves.

The emulator runs as a subprocess through its CLI (as in benchmarks of the operator); a concurrent httpx client
with N connections signs every request (a fresh X-Sdk-Date and signature each time, like a real client) and
calls for a fixed time. Both share the machine, so the figure is what one emulator process gives a Python
client on this host, not a server-only maximum.

    .venv/bin/python bench/bench_emulator_get_job.py [--connections 16] [--duration 5]

Prints a summary and writes bench/results/emulator_get_job.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import ssl
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import httpx

from ecs_reinstall.cloud.signing import sign_request

ACCESS_KEY = "BENCHAK0000000000000"
SECRET_KEY = "benchSK00000000000000000000000000000000"  # noqa: S105 (a fake benchmark credential)
PROJECT_ID = "0123456789abcdef0123456789abcdef"
RESULT_FILE = Path(__file__).resolve().parent / "results" / "emulator_get_job.json"


async def start_emulator() -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ecs_emulator", "--port", "0", "--access-key", ACCESS_KEY,
        "--secret-key", SECRET_KEY, "--project-id", PROJECT_ID, "--job-seconds", "3600",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    url = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode().strip()
    if not url.startswith("http://"):
        process.kill()
        raise SystemExit(f"the emulator did not print its URL (got {url!r})")
    return process, url


async def make_job(http: httpx.AsyncClient, url: str) -> str:
    await http.post(f"{url}/_emulator/servers", json={"id": "bench-1", "status": "SHUTOFF"})
    body = json.dumps({"os-reinstall": {"adminpass": "Bench@12345pass"}}).encode()
    signed = sign_request(
        "POST", f"{url}/v2/{PROJECT_ID}/cloudservers/bench-1/reinstallos",
        headers={"Content-Type": "application/json"}, body=body,
        access_key=ACCESS_KEY, secret_key=SECRET_KEY, project_id=PROJECT_ID,
    )  # fmt: skip
    response = await http.post(signed.url, headers=signed.headers, content=body)
    response.raise_for_status()
    return response.json()["job_id"]


async def worker(
    http: httpx.AsyncClient, job_url: str, stop_at: float, latencies: list[float], statuses: Counter
) -> None:
    while time.perf_counter() < stop_at:
        signed = sign_request(
            "GET", job_url, headers={"Content-Type": "application/json"}, body=None,
            access_key=ACCESS_KEY, secret_key=SECRET_KEY, project_id=PROJECT_ID,
        )  # fmt: skip
        started = time.perf_counter()
        try:
            response = await http.get(signed.url, headers=signed.headers)
            statuses[str(response.status_code)] += 1
        except httpx.HTTPError as error:
            statuses[type(error).__name__] += 1
            continue
        latencies.append(time.perf_counter() - started)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), to tell the emulator's cost from the client's."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


async def run(connections: int, duration: float) -> dict:
    process, url = await start_emulator()
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    bare_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # plain HTTP only; skip loading the CA bundle
    try:
        async with httpx.AsyncClient(limits=limits, timeout=30.0, verify=bare_tls) as http:
            job_url = f"{url}/v1/{PROJECT_ID}/jobs/{await make_job(http, url)}"
            warm_latencies: list[float] = []
            await asyncio.gather(
                *(
                    worker(http, job_url, time.perf_counter() + 0.5, warm_latencies, Counter())
                    for _ in range(connections)
                )
            )
            latencies: list[float] = []
            statuses: Counter = Counter()
            cpu_before = process_cpu_seconds(process.pid)
            started = time.perf_counter()
            await asyncio.gather(
                *(worker(http, job_url, started + duration, latencies, statuses) for _ in range(connections))
            )
            elapsed = time.perf_counter() - started
            cpu_after = process_cpu_seconds(process.pid)
            counters = (await http.get(f"{url}/_emulator/counters")).json()
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)

    latencies.sort()
    ok = statuses.get("200", 0)
    emulator_cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    return {
        "benchmark": "emulator_get_job",
        "description": "signed GET /v1/{project_id}/jobs/{job_id} against the ECS emulator CLI subprocess",
        "connections": connections,
        "duration_s": round(elapsed, 3),
        "requests": sum(statuses.values()),
        "ok_requests": ok,
        "requests_per_second": round(ok / elapsed, 1),
        "statuses": dict(statuses),
        "latency_ms": {
            "mean": round(statistics.fmean(latencies) * 1000, 3) if latencies else None,
            "p50": round(percentile(latencies, 0.50) * 1000, 3),
            "p90": round(percentile(latencies, 0.90) * 1000, 3),
            "p99": round(percentile(latencies, 0.99) * 1000, 3),
            "max": round(latencies[-1] * 1000, 3) if latencies else None,
        },
        "emulator_total_requests": counters["total_requests"],
        "emulator_cpu_seconds": round(emulator_cpu, 3) if emulator_cpu is not None else None,
        "emulator_cpu_ms_per_request": round(emulator_cpu * 1000 / ok, 3) if emulator_cpu and ok else None,
        "emulator_capacity_estimate_rps": round(ok / emulator_cpu) if emulator_cpu else None,
        "environment": {
            "python": platform.python_version(),
            "aiohttp": aiohttp.__version__,
            "httpx": httpx.__version__,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds (default 5)")
    parser.add_argument(
        "--output", type=Path, default=RESULT_FILE, help=f"result file (default {RESULT_FILE})"
    )
    args = parser.parse_args()
    result = asyncio.run(run(args.connections, args.duration))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    latency = result["latency_ms"]
    print(
        f"emulator GET job: {result['requests_per_second']} req/s over {result['duration_s']} s with "
        f"{result['connections']} connections (p50 {latency['p50']} ms, p99 {latency['p99']} ms); "
        f"emulator CPU {result['emulator_cpu_ms_per_request']} ms/request "
        f"(~{result['emulator_capacity_estimate_rps']} req/s per core); "
        f"statuses {result['statuses']}; written to {args.output}"
    )


if __name__ == "__main__":
    main()
