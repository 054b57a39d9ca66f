"""Writing the run's figures as JSON beside the printed table (bench/results/latest.json)."""

import dataclasses
from pathlib import Path
from typing import Any

import orjson

from bench.config import Sizes
from bench.results import Results
from bench.table import verdict

RESULTS = Path(__file__).resolve().parent / "results"


def document(
    results: Results,
    machine: dict[str, Any],
    mode: str,
    sizes: Sizes,
    started_at: str,
    seconds: float,
) -> dict[str, Any]:
    figures = []
    for figure in results.figures.values():
        if not figure.values:
            continue
        summary = figure.summary
        figures.append(
            {
                "section": figure.key.section,
                "system": figure.key.system,
                "figure": figure.key.figure,
                "unit": figure.unit,
                "median": summary.median,
                "min": summary.minimum,
                "max": summary.maximum,
                "repetitions": summary.repetitions,
                "values": figure.values,
                "targets": [dataclasses.asdict(target) for target in figure.targets],
                "verdict": verdict(figure),
            }
        )
    return {
        "started_at": started_at,
        "seconds": round(seconds, 1),
        "mode": mode,
        "sizes": dataclasses.asdict(sizes),
        "machine": machine,
        "figures": figures,
        "missing": [dataclasses.asdict(missing) for missing in results.missing],
        "notes": results.notes,
    }


def write(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(content, option=orjson.OPT_INDENT_2) + b"\n")
