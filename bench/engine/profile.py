"""`--profile`: one extra step-throughput run with py-spy sampling the gateway, worker and host.

py-spy comes from PyPI through `uvx` (or a py-spy already on PATH); it is not a
project dependency. Raw stacks go to bench/results/profiles/NAME.txt, and a
summary (self and inclusive time of the top frames) to NAME-summary.txt. The
figures of this run are not reported: sampling slows the processes down.
"""

import asyncio
import collections
import re
import shutil
import signal
from pathlib import Path

from bench.engine import throughput
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


async def run(engine: Engine, runs: int, steps: int) -> list[Path]:
    FOLDER.mkdir(parents=True, exist_ok=True)
    command = py_spy()
    recorders = {}
    for name in SERVICES:
        pid = engine.cluster.processes[name].pid
        output = FOLDER / f"{name}.txt"
        recorders[name] = await asyncio.create_subprocess_exec(
            *command, "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
            "--output", str(output), "--nonblocking", "--subprocesses",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    await asyncio.sleep(2)  # uvx may need a moment to start py-spy
    try:
        await throughput.measure(engine, runs, steps)
    finally:
        for recorder in recorders.values():
            recorder.send_signal(signal.SIGINT)
        for recorder in recorders.values():
            await asyncio.wait_for(recorder.wait(), 60)
    written = []
    for name in SERVICES:
        raw = FOLDER / f"{name}.txt"
        if raw.exists():
            summary = FOLDER / f"{name}-summary.txt"
            summary.write_text(summarize(raw), encoding="utf-8")
            written.append(summary)
    return written
