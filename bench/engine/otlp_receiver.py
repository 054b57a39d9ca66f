"""The `traces` section's OTLP receiver: a real OTLP/gRPC collector endpoint (the
`TraceService` of `tests.otlp`, grpc.aio, every request parsed by the generated
protobuf code) in a process of its own, so that its CPU is measured and reported
(`receiver CPU/step`) instead of hiding in the bench's own process beside the load
generator, and so that it does not keep every span it is sent (it counts them: the
bench needs no more, and a growing heap of spans would slow the bench process's
garbage collection from one repetition to the next).

Run as `python -m bench.engine.otlp_receiver`: it prints its endpoint, then answers
each line on stdin with the number of spans received so far.
"""

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from bench import usage
from tests.otlp import Receiver, grpc_receiver

ROOT = Path(__file__).resolve().parents[2]


class _Counting(Receiver):
    """Counts the spans of each request instead of keeping them."""

    count: int = 0

    def take(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        self.requests += 1
        self.count += sum(
            len(scope.spans)
            for resource in request.resource_spans
            for scope in resource.scope_spans
        )


async def _serve() -> None:
    async with grpc_receiver(_Counting("grpc")) as counting:
        assert isinstance(counting, _Counting)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        print(counting.endpoint, flush=True)
        while await reader.readline():
            print(counting.count, flush=True)


@dataclass
class ReceiverProcess:
    endpoint: str
    pid: int
    _process: asyncio.subprocess.Process

    async def spans(self) -> int:
        """The spans received so far."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(b"count\n")
        await self._process.stdin.drain()
        return int(await self._process.stdout.readline())

    def cpu_seconds(self) -> float:
        return usage.cpu_seconds([self.pid])


@contextlib.asynccontextmanager
async def receiver_process() -> AsyncIterator[ReceiverProcess]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.engine.otlp_receiver",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        endpoint = (await asyncio.wait_for(process.stdout.readline(), 60)).decode().strip()
        if not endpoint:
            raise RuntimeError("the OTLP receiver process did not start")
        yield ReceiverProcess(endpoint, process.pid, process)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


if __name__ == "__main__":
    asyncio.run(_serve())
