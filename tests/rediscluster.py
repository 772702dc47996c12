"""A throwaway Redis Cluster of three masters, started from the machine's own redis-server."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NODES = 3
START_TIMEOUT_S = 20.0
NODE_OPTIONS = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
NODE_OPTIONS += ["--save", "", "--appendonly", "no"]  # nothing on disk: it lives for one run
CREATE_OPTIONS = ["--cluster-replicas", "0", "--cluster-yes"]


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports() -> list[int]:
    """Ports whose cluster-bus twins (port + 10000) are free too."""
    chosen: list[int] = []
    while len(chosen) < NODES:
        port = random.randint(21000, 29000)
        if port not in chosen and _free(port) and _free(port + 10000):
            chosen.append(port)
    return chosen


def _cli(cli: str, port: int, *args: str) -> str:
    done = subprocess.run(
        [cli, "-p", str(port), *args], capture_output=True, text=True, timeout=10, check=False
    )
    return done.stdout


def _wait(what: str, ready: object) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not callable(ready) or not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis Cluster: {what} within {START_TIMEOUT_S} s failed")
        time.sleep(0.05)


@contextmanager
def redis_cluster(workdir: Path) -> Iterator[str]:
    """Start the nodes, join them into one cluster, yield a node's URL; stop them afterwards."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise RuntimeError("redis-server and redis-cli are needed to start a Redis Cluster")
    ports = _ports()
    nodes = []
    try:
        for port in ports:
            home = workdir / str(port)
            home.mkdir(parents=True)
            nodes.append(
                subprocess.Popen(
                    [
                        server,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--dir",
                        str(home),
                        *NODE_OPTIONS,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in ports:
            _wait(f"node {port} answering", lambda p=port: _cli(cli, p, "ping").strip() == "PONG")
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), *CREATE_OPTIONS],
            capture_output=True,
            timeout=30,
            check=True,
        )
        for port in ports:
            _wait(
                f"node {port} seeing the cluster ok",
                lambda p=port: "cluster_state:ok" in _cli(cli, p, "cluster", "info"),
            )
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            try:
                node.wait(timeout=5)
            except subprocess.TimeoutExpired:
                node.kill()
