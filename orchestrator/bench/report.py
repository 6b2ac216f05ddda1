"""What a scenario measured, as a Rich table and as JSON."""

from __future__ import annotations

import datetime as dt
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table


@dataclass
class Measure:
    """One number, with the baseline it is set against (same run) and its target."""

    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""  # as QUALITY.md states it, e.g. "P5: >= 25% of raw"
    met: bool | None = None  # None: no target applies to this row
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


@dataclass
class ScenarioResult:
    name: str
    quick: bool
    params: dict[str, Any] = field(default_factory=dict)
    measures: list[Measure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def add(self, measure: Measure) -> Measure:
        self.measures.append(measure)
        return measure

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "quick": self.quick, "params": self.params,
                "measures": [m.as_dict() for m in self.measures], "details": self.details,
                "seconds": round(self.seconds, 2), "error": self.error}


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
    return f"{text} {unit}".rstrip()


def table(result: ScenarioResult) -> Table:
    title = f"{result.name}{' (quick)' if result.quick else ''}: {result.seconds:.0f} s"
    params = ", ".join(f"{k}={v}" for k, v in result.params.items())
    out = Table(title=title, caption=params or None, title_justify="left")
    for column, justify in (("measure", "left"), ("value", "right"), ("baseline", "right"),
                            ("ratio", "right"), ("target", "left"), ("met", "center")):
        out.add_column(column, justify=justify)  # type: ignore[arg-type]
    if result.error:
        out.add_row("[red]did not run[/]", result.error, "", "", "", "")
    for m in result.measures:
        baseline = _number(m.baseline, m.unit)
        if m.baseline_name and m.baseline is not None:
            baseline = f"{baseline} ({m.baseline_name})"
        ratio = "-" if m.ratio is None else f"{m.ratio:.2f}×"
        met = {None: "", True: "[green]yes[/]", False: "[red]no[/]"}[m.met]
        name = f"{m.name}\n[dim]{m.note}[/]" if m.note else m.name
        out.add_row(name, _number(m.value, m.unit), baseline, ratio, m.target, met)
    return out


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "memory_gb": memory_gb,
            "python": platform.python_version(), "platform": platform.platform()}


def document(results: list[ScenarioResult], command: str) -> dict[str, Any]:
    return {"version": 1, "command": command,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(), "scenarios": [r.as_dict() for r in results]}
