"""The experiment report: the headline figures (and their change against a base revision),
every metric and param folded below them, learning curves and the evaluate stage's overlay
pictures, as one Markdown file with its images.

    python -m scripts.make_report --out reports/cml [--base origin/main]
    make report BASE=main

CI posts the result to the pull request (`cml comment create reports/cml/report.md`);
locally it is a page to read. Metrics and params come from DVC itself (`dvc metrics
show/diff --md`, `dvc params diff --md`), so the numbers are the ones `dvc exp show`
gives; curves are drawn from DVCLive's TSV files, the base revision's dashed beside them.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: CI runners and this machine have no display
import matplotlib.pyplot as plt  # after use(): the backend is chosen first
from matplotlib.ticker import MaxNLocator

CURVES_DIR = Path("dvclive/plots/metrics")
OVERLAYS_DIR = Path("reports/evaluate/overlays")
ERROR_SHEET = Path("reports/evaluate/errors.jpg")
CURVES_FILE = "learning_curves.png"
DEFAULT_OUT = Path("reports/cml")
MAX_OVERLAYS = 12
EVALUATION = "reports/evaluate/metrics.json"
EXPORT = "reports/export.json"
# What a reviewer decides on, in this order: (label, metrics file, keys into its JSON).
HEADLINE = (
    ("Dice, defect tiles (pooled)", EVALUATION, ("dice_defect",)),
    ("recall at the decision threshold", EVALUATION, ("detection", "recall")),
    ("defect-free tiles flagged", EVALUATION, ("detection", "free_flagged_rate")),
    ("recall at max_free_flagged, best test threshold (ROC)", EVALUATION, ("roc", "recall")),
    ("image AUROC", EVALUATION, ("detection", "auroc")),
    ("six-class mIoU", EVALUATION, ("classes", "miou")),
    ("tile class right, defect tiles", EVALUATION, ("classes", "tile_accuracy_defect")),
    ("in-process time per test tile, ms", EXPORT, ("latency_ms_median",)),
)


@dataclass(frozen=True)
class Curve:
    """One DVCLive series, e.g. name 'train/loss' from dvclive/plots/metrics/train/loss.tsv."""

    name: str
    steps: list[float]
    values: list[float]

    @property
    def metric(self) -> str:
        """The quantity plotted, shared by series drawn on one panel ('loss' for train/loss)."""
        return self.name.rsplit("/", 1)[-1]


def parse_tsv(name: str, text: str) -> Curve | None:
    """A Curve from DVCLive's TSV text (columns: timestamp?, step, <metric>); None if empty."""
    rows = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
    if not rows:
        return None
    metric = name.rsplit("/", 1)[-1]
    others = [column for column in rows[0] if column not in ("step", "timestamp")]
    column = metric if metric in rows[0] else others[-1]
    steps = [float(row.get("step") or index) for index, row in enumerate(rows)]
    return Curve(name, steps, [float(row[column]) for row in rows])


def read_curves(repo: Path) -> list[Curve]:
    """Every series under dvclive/plots/metrics in the working tree, sorted by name."""
    folder = repo / CURVES_DIR
    curves = []
    for path in sorted(folder.rglob("*.tsv")):
        name = path.relative_to(folder).with_suffix("").as_posix()
        curve = parse_tsv(name, path.read_text())
        if curve:
            curves.append(curve)
    return curves


def read_base_curves(repo: Path, base: str) -> list[Curve]:
    """The same series as committed at `base` (DVCLive's plots are kept in git)."""
    listing = _git(repo, "ls-tree", "-r", "--name-only", base, "--", CURVES_DIR.as_posix())
    curves = []
    for path in sorted(line for line in listing.splitlines() if line.endswith(".tsv")):
        name = Path(path).relative_to(CURVES_DIR).with_suffix("").as_posix()
        curve = parse_tsv(name, _git(repo, "show", f"{base}:{path}"))
        if curve:
            curves.append(curve)
    return curves


def plot_curves(curves: Sequence[Curve], path: Path, base: Sequence[Curve] = ()) -> Path:
    """One panel per metric (train and eval loss share one); base series dashed."""
    panels: dict[str, list[tuple[Curve, bool]]] = defaultdict(list)
    for curve in curves:
        panels[curve.metric].append((curve, False))
    for curve in base:
        if curve.metric in panels:  # a metric the experiment no longer logs is not news
            panels[curve.metric].append((curve, True))
    figure, axes = plt.subplots(
        1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 3.6), squeeze=False
    )
    for axis, (metric, series) in zip(axes[0], sorted(panels.items()), strict=False):
        names = sorted({curve.name for curve, _ in series})
        for curve, is_base in series:
            axis.plot(
                curve.steps,
                curve.values,
                linestyle="--" if is_base else "-",
                alpha=0.6 if is_base else 1.0,
                color=f"C{names.index(curve.name)}",  # a series and its base share a colour
                marker="" if len(curve.steps) > 30 else ".",
                label=f"{curve.name} (base)" if is_base else curve.name,
            )
        axis.set_title(metric)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    if not panels:
        axes[0][0].text(0.5, 0.5, "no DVCLive curves found", ha="center", va="center")
        axes[0][0].set_axis_off()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def copy_overlays(repo: Path, out: Path, limit: int = MAX_OVERLAYS) -> list[Path]:
    """The first `limit` overlay pictures, copied beside the report; paths relative to `out`."""
    sources = sorted((repo / OVERLAYS_DIR).glob("*.jpg"))[:limit]
    target = out / "overlays"
    if target.exists():
        shutil.rmtree(target)  # pictures of an earlier run must not pass for this one's
    copied = []
    for source in sources:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target / source.name)
        copied.append(Path("overlays") / source.name)
    return copied


def dvc_markdown(repo: Path, *args: str) -> str:
    """The Markdown that `dvc <args> --md` prints, or a note saying why there is none."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args, "--md"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        return f"_`dvc {' '.join(args)}` failed: {detail[-1] if detail else 'no output'}_\n"
    table = result.stdout.strip()
    # A diff with nothing to show prints only the table's header and rule.
    return table + "\n" if len(table.splitlines()) > 2 else "_No changes._\n"


def metrics_table(repo: Path) -> str:
    """`dvc metrics show` as one row per metric (DVC's --md puts each metric in a column,
    too wide to read once evaluate's per-class numbers are in)."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "metrics", "show", "--json"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    try:  # DVC may print a warning after the JSON
        shown, _ = json.JSONDecoder().raw_decode(result.stdout)
    except ValueError:
        detail = (result.stderr or result.stdout).strip().splitlines()
        return f"_`dvc metrics show` failed: {detail[-1] if detail else 'no output'}_\n"
    rows = ["| Path | Metric | Value |", "|---|---|---|"]
    for revision in shown.values():
        for path, content in revision.get("data", {}).items():
            if "error" in content:
                rows.append(f"| {path} | - | missing |")
            for name, value in _flatten(content.get("data", {})):
                rows.append(f"| {path} | {name} | {_number(value)} |")
    return "\n".join(rows) + "\n" if len(rows) > 2 else "_No metrics yet._\n"


def headline_table(repo: Path, base: str | None = None) -> str:
    """The headline figures of the working tree, beside those of `base` and the change."""
    current = {path: _read_json(repo / path) for path in (EVALUATION, EXPORT)}
    before = {path: _read_json_at(repo, base, path) for path in (EVALUATION, EXPORT)}
    per_class = [
        (f"Dice, {name}", EVALUATION, ("per_class_dice", name))
        for name in sorted(current[EVALUATION].get("per_class_dice", {}))
    ]
    rows = [HEADLINE[0], *per_class, *HEADLINE[1:]]
    if base:
        lines = ["| figure | this | base | change |", "|---|---:|---:|---:|"]
    else:
        lines = ["| figure | value |", "|---|---:|"]
    for label, path, keys in rows:
        value = _lookup(current[path], keys)
        if base:
            old = _lookup(before[path], keys)
            change = (
                f"{value - old:+.4f}".rstrip("0").rstrip(".")
                if isinstance(value, float | int) and isinstance(old, float | int)
                else "-"
            )
            lines.append(f"| {label} | {_number(value)} | {_number(old)} | {change} |")
        else:
            lines.append(f"| {label} | {_number(value)} |")
    return "\n".join(lines) + "\n"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _read_json_at(repo: Path, revision: str | None, path: str) -> dict:
    if not revision:
        return {}
    try:
        return json.loads(_git(repo, "show", f"{revision}:{path}") or "{}")
    except ValueError:
        return {}


def _lookup(data: object, keys: Sequence[str]) -> object:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _flatten(data: object, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(data, dict):
        return [pair for key, value in data.items() for pair in _flatten(value, f"{prefix}{key}.")]
    return [(prefix.rstrip("."), data)]


def _number(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") or "0"
    return str(value)


def build_report(repo: Path, out: Path, base: str | None = None) -> Path:
    """Write out/report.md, out/learning_curves.png and out/overlays/; returns the .md path."""
    repo, out = repo.resolve(), out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    # A generated folder: ignored by git wherever it is put, without touching .gitignore.
    (out / ".gitignore").write_text("*\n")
    revision = _git(repo, "rev-parse", "--short", "HEAD").strip() or "uncommitted"
    lines = [f"# Experiment report: `{revision}`", ""]
    if base:
        base_label = _git(repo, "rev-parse", "--short", base).strip() or base
        lines += [f"Compared with `{base}` (`{base_label}`); `workspace` is this experiment.", ""]
    lines += ["## Headline", "", headline_table(repo, base)]
    # Every metric and param, folded: dozens of rows a reviewer opens when they need them.
    lines += ["<details><summary>Every metric and param</summary>", ""]
    if base:
        lines += [
            "## Metrics",
            "",
            dvc_markdown(repo, "metrics", "diff", base, "--precision", "4"),
            "## Params",
            "",
            dvc_markdown(repo, "params", "diff", base),
        ]
    else:
        lines += ["## Metrics", "", metrics_table(repo)]
    lines += ["</details>", ""]
    base_curves = read_base_curves(repo, base) if base else []
    plot_curves(read_curves(repo), out / CURVES_FILE, base_curves)
    caption = "Learning curves" + (f" (dashed: `{base}`)" if base_curves else "")
    lines += ["## Learning curves", "", f"![{caption}](./{CURVES_FILE})", ""]
    lines += ["## Test tiles the decision gets wrong", ""]
    if (repo / ERROR_SHEET).is_file():
        shutil.copyfile(repo / ERROR_SHEET, out / ERROR_SHEET.name)
        lines += [f"![Defect-free tiles rejected, defect tiles passed](./{ERROR_SHEET.name})", ""]
    else:
        lines += [f"_No {ERROR_SHEET}; run the evaluate stage._", ""]
    overlays = copy_overlays(repo, out)
    lines += ["## Test tiles: predicted defects over the photo", ""]
    if overlays:
        lines += [f"![{path.stem}](./{path.as_posix()})" for path in overlays]
    else:
        lines.append(f"_No overlay pictures in {OVERLAYS_DIR}; run the evaluate stage._")
    report = out / "report.md"
    report.write_text("\n".join(lines).rstrip() + "\n")
    return report


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the report")
    parser.add_argument("--base", help="git revision to diff against, e.g. origin/main")
    parser.add_argument("--repo", type=Path, default=Path("."), help="the repository root")
    args = parser.parse_args(argv)
    report = build_report(args.repo, args.out, args.base)
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
