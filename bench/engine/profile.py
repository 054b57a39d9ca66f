"""`--profile`: extra runs (step throughput, single-event ingest) with py-spy sampling the
gateway, worker and host.

py-spy comes from PyPI through `uvx` (or a py-spy already on PATH); it is not a
project dependency. Raw stacks go to bench/results/profiles/NAME.txt, and a
summary (self and inclusive time of the top frames) to NAME-summary.txt, in one
folder per workload. The
figures of this run are not reported: sampling slows the processes down.
"""

import asyncio
import collections
import re
import shutil
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.config import Sizes
from bench.engine import ingest, throughput
from bench.engine.cost import SERVICES
from bench.engine.session import Engine

FOLDER = Path(__file__).resolve().parents[1] / "results" / "profiles"
_LOCATION = re.compile(r" \((?:.*/)?([^/]*)\)$")


def py_spy() -> list[str]:
    if found := shutil.which("py-spy"):
        return [found]
    if uvx := shutil.which("uvx"):
        return [uvx, "py-spy"]
    raise RuntimeError("py-spy not found and no uvx to fetch it (pip install py-spy)")


def summarize(raw: Path, top: int = 30) -> str:
    """Self and inclusive shares of the most sampled frames in py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        frames = [_LOCATION.sub(r" (\1)", frame) for frame in stack.split(";")]
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"{total} samples", "", "self:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top * 2)]
    return "\n".join(lines) + "\n"


async def run(engine: Engine, sizes: Sizes) -> list[Path]:
    async def steps() -> object:
        return await throughput.measure(engine, sizes.throughput_runs, sizes.throughput_steps)

    async def events() -> object:
        return await ingest.single(engine, sizes.ingest_requests, sizes.ingest_clients)

    return [
        *await record(engine, FOLDER / "throughput", steps),
        *await record(engine, FOLDER / "ingest", events),
    ]


async def record(
    engine: Engine, folder: Path, workload: Callable[[], Awaitable[object]]
) -> list[Path]:
    _prepare(folder)
    command = py_spy()
    recorders = {}
    for name in SERVICES:
        pid = engine.cluster.processes[name].pid
        output = folder / f"{name}.txt"
        recorders[name] = await asyncio.create_subprocess_exec(
            *command, "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
            "--output", str(output), "--nonblocking", "--subprocesses",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    await asyncio.sleep(2)  # uvx may need a moment to start py-spy
    try:
        await workload()
    finally:
        for recorder in recorders.values():
            recorder.send_signal(signal.SIGINT)
        for recorder in recorders.values():
            await asyncio.wait_for(recorder.wait(), 60)
    return _summaries(folder)


def _prepare(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)


def _summaries(folder: Path) -> list[Path]:
    written = []
    for name in SERVICES:
        raw = folder / f"{name}.txt"
        if raw.exists():
            summary = folder / f"{name}-summary.txt"
            summary.write_text(summarize(raw), encoding="utf-8")
            written.append(summary)
    return written
