"""A stand-in for a queue worker, run as a subprocess so a test can kill it outright:
it opens one Session with the host on port ARGV[1], starts ARGV[3] invocations of
function ARGV[2], prints "started" and waits to be killed."""

import asyncio
import sys
from datetime import UTC, datetime

from grpc import aio

from reverb_contracts.v1 import common_pb2, function_host_pb2, function_host_pb2_grpc


async def main(port: int, function_id: str, count: int) -> None:
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    call = function_host_pb2_grpc.FunctionHostStub(channel).Invoke()
    trigger = common_pb2.Event(id="event-1", name="test", data=b"{}")
    trigger.ts.FromDatetime(datetime.now(UTC))
    frames = [
        function_host_pb2.WorkerFrame(
            invocation_id=number,
            start=function_host_pb2.Start(
                run_id=f"run-{number}", function_id=function_id, events=[trigger]
            ),
        )
        for number in range(1, count + 1)
    ]
    await call.write(function_host_pb2.InvokeRequest(frames=frames))
    print("started", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
