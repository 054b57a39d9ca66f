"""The one table `python -m bench` prints: median, min and max of every figure, with targets."""

from collections.abc import Sequence

from bench.results import Figure, Results

SECTIONS = (
    "Ingest",
    "Latency",
    "Step throughput",
    "Sleep",
    "Fan-out",
    "Flow control",
    "No-op jobs",
    "PostgreSQL floor",
    "Scaling",
)
HEADER = ("Section", "System", "Figure", "Median", "Min", "Max", "Unit", "Target", "")


def number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def verdict(figure: Figure) -> str:
    judged = [target.passed for target in figure.targets]
    if not judged:
        return ""
    if any(passed is False for passed in judged):
        return "FAIL"
    return "pass" if all(judged) else "n/a"


def _order(figure: Figure) -> int:
    section = figure.key.section
    return SECTIONS.index(section) if section in SECTIONS else len(SECTIONS)


def rows(results: Results) -> list[tuple[str, ...]]:
    figures = sorted(results.figures.values(), key=_order)  # stable: measurement order within
    found: list[tuple[str, ...]] = []
    previous = ""
    for figure in figures:
        if not figure.values:
            continue
        summary = figure.summary
        section = figure.key.section if figure.key.section != previous else ""
        previous = figure.key.section
        found.append(
            (
                section,
                figure.key.system,
                figure.key.figure,
                number(summary.median),
                number(summary.minimum),
                number(summary.maximum),
                figure.unit,
                "; ".join(target.text for target in figure.targets),
                verdict(figure),
            )
        )
    return found


def render(results: Results, title: Sequence[str]) -> str:
    body = rows(results)
    widths = [max(len(row[column]) for row in [HEADER, *body]) for column in range(len(HEADER))]
    numeric = {3, 4, 5}

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.rjust(width) if index in numeric else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "-" * len(line(HEADER))
    lines = [*title, rule, line(HEADER), rule, *(line(row) for row in body), rule]
    for missing in results.missing:
        lines.append(f"missing: {missing.section} / {missing.system}: {missing.reason}")
    lines.extend(f"note: {note}" for note in results.notes)
    return "\n".join(lines)
