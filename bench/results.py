"""The figures a benchmark run collects: values per repetition, targets, and what is missing."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from bench.stats import Summary, summarize


@dataclass(frozen=True, slots=True)
class Key:
    """Which figure: a section of the table, the system measured, and the figure's name."""

    section: str
    system: str
    figure: str


@dataclass(frozen=True, slots=True)
class Target:
    """A goal shown beside a figure, and whether the median meets it (None: cannot be judged)."""

    text: str
    passed: bool | None


@dataclass(slots=True)
class Figure:
    key: Key
    unit: str
    values: list[float] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    @property
    def summary(self) -> Summary:
        return summarize(self.values)


@dataclass(frozen=True, slots=True)
class Missing:
    section: str
    system: str
    reason: str


@dataclass(slots=True)
class Results:
    """Everything one run of `python -m bench` measured, in the order it was first seen."""

    figures: dict[Key, Figure] = field(default_factory=dict)
    missing: list[Missing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self, section: str, system: str, values: Mapping[str, float], units: Mapping[str, str]
    ) -> None:
        """Record one repetition's values; `units` names the unit of each figure."""
        for name, value in values.items():
            key = Key(section, system, name)
            figure = self.figures.setdefault(key, Figure(key, units.get(name, "")))
            figure.values.append(value)

    def miss(self, section: str, system: str, reason: str) -> None:
        self.missing.append(Missing(section, system, reason))

    def median(self, section: str, system: str, figure: str) -> float | None:
        found = self.figures.get(Key(section, system, figure))
        return found.summary.median if found and found.values else None

    def judge(self, key: Key, text: str, passed: bool | None) -> None:
        figure = self.figures.get(key)
        if figure is not None:
            figure.targets.append(Target(text, passed))
