"""Check results, the summary table printed at the end, and its JSON and markdown files."""

from __future__ import annotations

import json
import platform
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MAX_PROBLEMS_SHOWN = 15


@dataclass
class CheckResult:
    name: str
    passed: bool = True
    seconds: float = 0.0
    inputs: int = 0  # inputs, requests or connections tried
    statuses: Counter[str] = field(default_factory=Counter)  # answers by status (or error kind)
    rss_before_mb: float | None = None
    rss_after_mb: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)  # the check's own numbers
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the check could not run here

    @property
    def server_errors(self) -> int:
        """5xx answers other than 503, which the bounded queue sends by design."""
        return sum(n for s, n in self.statuses.items() if s.startswith("5") and s != "503")

    def fail(self, problem: str) -> None:
        self.passed = False
        self.problems.append(problem)

    def verdict(self) -> str:
        if self.skipped:
            return "skipped"
        return "pass" if self.passed else "FAIL"


def summary_markdown(results: list[CheckResult], meta: dict[str, Any]) -> str:
    """The summary table, then each check's figures and problems, as markdown."""
    lines = [
        f"# Reliability summary ({meta['mode']} mode)",
        "",
        f"Model `{meta['model']}`, {meta['started']}, {meta['machine']}, "
        f"{meta['seconds']:.0f} s in all.",
        "",
        headline(results),
        "",
        "| Check | Result | Inputs | Answers by status | 5xx but 503 | RSS before -> after (MiB) "
        "| Time (s) | Key figure |",
        "| --- | --- | ---: | --- | ---: | --- | ---: | --- |",
    ]
    for result in results:
        statuses = ", ".join(f"{status}: {n}" for status, n in sorted(result.statuses.items()))
        lines.append(
            f"| {result.name} | {result.verdict()} | {result.inputs} | {statuses or '-'} "
            f"| {result.server_errors} | {_rss(result)} | {result.seconds:.1f} "
            f"| {result.figures.get('key', result.skipped or '')} |"
        )
    for result in results:
        lines += ["", f"## {result.name}", ""]
        if result.skipped:
            lines.append(f"Skipped: {result.skipped}")
        for name, value in result.figures.items():
            if name != "key":
                lines.append(f"- {name}: {_format(value)}")
        if result.problems:
            shown = result.problems[:MAX_PROBLEMS_SHOWN]
            lines += ["", f"Problems ({len(result.problems)}):", *(f"- {p}" for p in shown)]
    return "\n".join(lines) + "\n"


def headline(results: list[CheckResult]) -> str:
    """One sentence with the figures the issue asks for, from the checks that ran."""
    by_name = {r.name: r for r in results}
    verdict = "all checks passed" if all(r.passed for r in results) else "SOME CHECKS FAILED"
    parts = [
        f"{verdict}: {sum(r.inputs for r in results)} inputs in all, "
        f"{sum(r.server_errors for r in results)} answers 5xx (503 aside)"
    ]
    if "fuzz" in by_name:
        parts.append(f"{by_name['fuzz'].inputs} fuzzed")
    if "bombs" in by_name and "slowest_refusal_ms" in by_name["bombs"].figures:
        bombs = by_name["bombs"].figures
        parts.append(
            f"bombs refused in <= {bombs['slowest_refusal_ms']} ms, "
            f"RSS +{bombs['peak_rss_jump_while_refusing_mb']} MiB"
        )
    if "soak" in by_name and "rss_growth_after_warm_up" in by_name["soak"].figures:
        parts.append(f"soak RSS {by_name['soak'].figures['rss_growth_after_warm_up']}")
    if "restart" in by_name and "ready_max_s" in by_name["restart"].figures:
        parts.append(f"ready {by_name['restart'].figures['ready_max_s']} s after kill -9")
    return "**" + "; ".join(parts) + ".**"


def write_report(results: list[CheckResult], meta: dict[str, Any], out_dir: Path) -> list[Path]:
    """`<mode>.json` and `<mode>.md` in `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{meta['mode']}.json"
    markdown_path = out_dir / f"{meta['mode']}.md"
    payload = {
        **meta,
        "passed": all(r.passed for r in results),
        "checks": [
            {
                **asdict(r),
                # asdict rebuilds a Counter from pairs, counting them: pass a plain dict.
                "statuses": dict(r.statuses),
                "verdict": r.verdict(),
                "server_errors": r.server_errors,
            }
            for r in results
        ],
    }
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    markdown_path.write_text(summary_markdown(results, meta))
    return [json_path, markdown_path]


def machine_description() -> str:
    import os

    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python " + (
        platform.python_version()
    )


def _rss(result: CheckResult) -> str:
    if result.rss_before_mb is None or result.rss_after_mb is None:
        return "-"
    return f"{result.rss_before_mb:.0f} -> {result.rss_after_mb:.0f}"


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_format(v)}" for k, v in value.items())
    return str(value)
