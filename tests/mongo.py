"""A MongoDB for the log sink's tests: `REVERB_TEST_MONGODB_URL` when set (a real MongoDB),
else the wire-protocol server of PyPI nx-27017, started on a free port for the session."""

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pymongo import MongoClient


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(url: str, within: float) -> None:
    """Wait until the server answers a ping (the sink's own client is the async one; this
    runs before any test's event loop, or inside one when a fixture asks for it late)."""
    client: MongoClient[dict[str, object]] = MongoClient(
        url, serverSelectionTimeoutMS=int(within * 1000)
    )
    try:
        client.admin.command("ping")
    finally:
        client.close()


@contextmanager
def server_url() -> Iterator[str]:
    given = os.environ.get("REVERB_TEST_MONGODB_URL")
    if given:
        yield given
        return
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="reverb-nx27017-") as folder:
        log = Path(folder) / "server.log"
        command = [
            str(Path(sys.executable).with_name("nx-27017")),
            "--db",
            "memory",
            "--port",
            str(port),
            "--log-file",
            str(log),
            "--pid-file",
            str(Path(folder) / "server.pid"),
        ]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        try:
            _answers(url, 20)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
