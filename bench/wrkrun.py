"""Run wrk with bench/zipf.lua (or another of bench's scripts) and read the figures its done() prints."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

WRK = "/usr/bin/wrk"
ZIPF_LUA = Path(__file__).resolve().parent / "zipf.lua"
MARKER = "BENCH_JSON "


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]  # connect, read, write, timeout, and status (responses >= 400)
    statuses: dict[str, int]  # filled only when zipf.lua is asked to count

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def socket_errors(self) -> int:
        return sum(n for kind, n in self.errors.items() if kind != "status")


def run_wrk(
    url: str,
    codes: Path,
    *,
    duration_s: int,
    log: Path,
    connections: int = 64,
    threads: int = 2,
    zipf_s: float = 1.0,
) -> WrkResult:
    return run_script(
        url,
        ZIPF_LUA,
        [str(codes), str(zipf_s)],
        duration_s=duration_s,
        log=log,
        connections=connections,
        threads=threads,
    )


def run_script(
    url: str,
    script: Path,
    script_args: list[str],
    *,
    duration_s: int,
    log: Path,
    connections: int,
    threads: int,
) -> WrkResult:
    """wrk with any of bench's Lua scripts that print a BENCH_JSON line from done()."""
    cmd = [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency"]
    cmd += ["--timeout", "2s", "-s", str(script), url, "--", *script_args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60, check=False)
    log.write_text(" ".join(cmd) + "\n" + done.stdout + done.stderr)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}); see {log}:\n{done.stderr[-1000:]}")
    return parse(lines[-1].removeprefix(MARKER))


def parse(text: str) -> WrkResult:
    raw = json.loads(text)
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=raw["errors"],
        statuses=raw["statuses"],
    )
