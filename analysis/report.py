"""Write a study's charts and ``report.md``: every chart the data supports, and why not the rest
(so a half-finished study gives a correct half-report); the tables are the charts' frames."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import dse
from dse.analysis import FORMATS
from dse.analysis import frames as F
from dse.analysis import plots as P
from dse.analysis.commands import sweep_commands
from dse.analysis.fmt import integer, is_missing, number, pm_percent, to_markdown, value_text
from dse.analysis.knobs import importance_frame, importance_text, ranges_section
from dse.analysis.loading import config_of, status_order
from dse.analysis.paper_check import paper_section
from dse.analysis.style import DPI, accuracy_name
from dse.analysis.verdicts import study_verdicts, verdicts_section
from dse.errors import first_line
from dse.metrics import REGISTRY, to_mb, to_mib
from dse.outputs import staged_dir
from dse.store.record import pruned_at

LATENCY_COST = "latency_ms"  # the latency front's cost: onnxruntime, batch 1, median (dse.metrics)


@dataclass
class Chart:
    """One chart of the report: its frame, the files written, or the reason it was skipped."""

    frame: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    skipped: str | None = None


def status_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Runs per study and status (ok, diverged, failed, pruned, ...), with a total column."""
    table = pd.crosstab(df["study"].fillna("?"), df["status"]).reindex(
        columns=status_order(df["status"]), fill_value=0)
    table["total"] = table.sum(axis=1)
    table.columns.name = None
    return table.reset_index()


def sweep_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The Markdown-ready table behind a sweep chart (percent, MB and MiB, seed counts)."""
    param = frame.attrs["param"]
    pm = {f"{accuracy_name(m)} %": pm_percent(frame, m) for m in frame.attrs["metrics"]}
    return pd.DataFrame({param: frame[param].map(value_text), **pm, "params": frame["params"].map(integer),
                         "MB": frame["size_mb"].map(number), "MiB": frame["size_mib"].map(number),
                         "ok seeds": frame["n"].map(integer), "not ok": frame["n_bad"].map(integer)})


def pareto_table(points: pd.DataFrame, only_front: bool = True) -> pd.DataFrame:
    """Design points (or just the Pareto set) as a Markdown-ready table."""
    sel = points[points["pareto"]] if only_front else points
    out = pd.DataFrame({
        "#": sel["label"].map(lambda v: str(int(v)) if v else ""),
        "metaparameters": sel["desc"].replace("", "(all equal)"),
        f"{accuracy_name(points.attrs.get('metric') or 'accuracy')} %": pm_percent(sel, "acc"),
        "seeds": sel["n"].map(integer), "params": sel["params"].map(integer),
        "MB": sel["size_mb"].map(number), "MiB": sel["size_mib"].map(number)})
    cost = points.attrs.get("cost", "size_bytes")
    if cost != "size_bytes":
        out[f"{cost} ({REGISTRY[cost].unit})"] = sel["cost"].map(REGISTRY[cost].show)
    if not only_front:
        out.insert(1, "front", sel["pareto"].map(lambda b: "yes" if b else ""))
    if len(points.attrs.get("settings") or []) > 1:
        out.insert(1, "data setting", sel["setting"])
    if sel["preset"].any():
        out["preset"] = sel["preset"].map(lambda b: "SqueezeNet" if b else "")
    return out


def fronts_table(fronts: pd.DataFrame) -> pd.DataFrame:
    """The points of :func:`F.fronts_frame`: their number on each front and where they win."""
    size, lat = (f"{c}_label" for c in fronts.attrs["costs"])
    metric = REGISTRY[fronts.attrs["costs"][1]]
    on_size, on_lat = fronts[size] > 0, fronts[lat] > 0
    return pd.DataFrame({
        **({"data setting": fronts["setting"]} if fronts["setting"].nunique() > 1 else {}),
        "metaparameters": fronts["desc"].replace("", "(all equal)"),
        "accuracy %": pm_percent(fronts, "acc"), "MB": fronts["size_mb"].map(number),
        f"{metric.name} ({metric.unit})": fronts[metric.name].map(metric.show),
        "size front #": fronts[size].map(lambda v: str(v) if v else ""),
        "latency front #": fronts[lat].map(lambda v: str(v) if v else ""),
        "wins on": np.select([on_size & on_lat, on_size], ["both", "size only"], "latency only")})


def render_markdown(df: pd.DataFrame, charts: dict[str, Chart], source: str = "") -> str:
    """report.md: header, runs by status, charts, findings, runs that are not ok, sweep commands."""
    settings = charts["pareto"].frame.attrs.get("settings") or [] if "pareto" in charts else []
    lines = [*_header(df, source, settings), "## Runs by status", "", to_markdown(status_counts(df)), "",
             *_stopped_lines(df),
             "## Charts", "", to_markdown(pd.DataFrame({
                 "chart": list(charts), "what": [CHARTS[n].title for n in charts],
                 "status": [("drawn: " + ", ".join(p.name for p in c.files)) if c.skipped is None
                            else f"skipped: {c.skipped}" for c in charts.values()]})), ""]
    for name, chart in charts.items():
        title = CHARTS[name].title
        lines += [f"## {title}", ""]
        if chart.skipped is not None:
            lines += [f"*Skipped:* {chart.skipped}.", ""]
            continue
        files = sorted(chart.files, key=lambda p: FORMATS.index(p.suffix[1:])
                       if p.suffix[1:] in FORMATS else 9)  # the first of png, svg, pdf is linked
        lines += [f"![{title}]({files[0].name})" if files else "", "", *CHARTS[name].text(chart.frame)]
    if not F.ok_runs(df).empty:  # the findings: good ranges, verdicts over seeds, the paper check
        verdicts = study_verdicts(df)
        lines += [*ranges_section(df), *verdicts_section(verdicts), *paper_section(verdicts)]
    return "\n".join(lines + _bad_runs_section(df) + _commands_section(df))


def _stopped_lines(df: pd.DataFrame) -> list[str]:
    """"N trials stopped at rung r" for each MOASHA rung that pruned any (a trial's seeds count once)."""
    at = df.assign(rung=[(pruned_at(e) or {}).get("rung") for e in df["error"]]).dropna(subset=["rung"])
    per = at.drop_duplicates(["study", "trial", "rung"]).groupby("rung").size()
    lines = [f"- {n} trial{'s' * (n > 1)} stopped at rung {int(r)}" for r, n in per.items()]
    return [*lines, ""] if lines else []


def _header(df: pd.DataFrame, source: str, settings: list[str]) -> list[str]:
    """Title, source and time; warnings when no run finished ok or the runs mix training semantics or
    data settings (what each section does with them, so nothing pools them silently)."""
    studies = sorted({str(s) for s in df["study"].dropna()})
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# dse report: {', '.join(studies) or 'runs'}", "", f"{P.context_title(df)}  ",
             f"source: `{source or 'DataFrame'}`, generated {now}, {len(df)} runs", ""]
    if F.ok_runs(df).empty:
        lines += ["> **No run finished ok**: every run in this store diverged, failed or was pruned, so "
                  "there is nothing to chart. See *Runs that are not design points* below.", ""]
    counts = df["training_semantics"].astype("Int64").astype(object).where(
        df["training_semantics"].notna(), "unknown").value_counts()
    if len(counts) > 1:
        shown = ", ".join(f"{k}: {n}" for k, n in counts.items())
        lines += [f"> **Mixed training semantics** (runs per semantics: {shown}; this dse trains "
                  f"{dse.TRAINING_SEMANTICS}): older rows count as done; `study.rerun=stale` "
                  "retrains them.", ""]
    if len(settings) > 1:
        lines += [f"> **{len(settings)} data settings** ({'; '.join(settings)}): accuracies compare only "
                  "within one, so the fronts and EDF curves are per setting and each sweep holds one "
                  "fixed; the importances and good ranges pool them.", ""]
    return lines


def _sweep_text(frame: pd.DataFrame) -> list[str]:
    """What a sweep held fixed, how its points were averaged and chosen, and its table."""
    attrs = frame.attrs
    fixed = P.fixed_text(attrs["fixed"], skip=[attrs["param"]])
    chosen = (f"; chosen among {attrs['groups']} groups that vary {attrs['param']} (most values, "
              "then most runs, then nearest the paper's setting)" if attrs["groups"] > 1 else "")
    return [f"Fixed: {P.context_title(attrs['fixed'])}; `{fixed}`.  ",
            f"Mean ± sample std (ddof=1) over ok seeds; {attrs['n_runs']} ok runs, {attrs['n_bad']} not ok "
            f"at these points{chosen}.", "", to_markdown(sweep_table(frame)), ""]


def _pareto_text(frame: pd.DataFrame) -> list[str]:
    """The front's definition, settings, budgets and Pareto set, then all points or who wins where."""
    a = frame.attrs
    lat = REGISTRY.get(a["cost"])
    if a["cost"] == "size_bytes":
        minimised = "fp32 size (MiB = 2^20 bytes). "
    else:
        threads = ", ".join(map(str, a.get("threads") or [])) or "?"
        minimised = (f"`{lat.name}`, the {lat.label} in {lat.unit}, measured on the CPU after "
                     f"training with {threads} thread(s) (trainer.latency=true). Latencies are "
                     "wall times: compare points measured on one machine. ")
    missing = a.get("unmeasured", 0)
    text = (f"Design points = ok runs averaged over seeds; the front maximises mean "
            f"{accuracy_name(a['metric'])} accuracy and minimises {minimised}"
            f"{int(frame['pareto'].sum())} of {len(frame)} points are on it."
            + (f" {missing} design point{'s' if missing != 1 else ''} without a measured latency "
               "(trained without trainer.latency=true) are left out." if missing > 0 else ""))
    settings, budgets = a.get("settings") or [], a.get("budgets") or []
    if len(settings) > 1:
        text += (f" Accuracies compare only within a data setting, so there is one front per "
                 f"setting ({'; '.join(settings)}), numbered setting by setting.")
    if budgets:
        text += (f" The sweep's budget{'s' if len(budgets) > 1 else ''} "
                 + ", ".join(f"`{t}`" for t, _ in budgets)
                 + (" are drawn as dashed lines." if len(budgets) > 1 else " is drawn as a dashed line."))
    lines = [text, "", "### Pareto set", "", to_markdown(pareto_table(frame)), ""]
    if a["cost"] == "size_bytes":
        return lines + ["<details><summary>All design points</summary>", "",
                        to_markdown(pareto_table(frame, only_front=False)), "", "</details>", ""]
    return lines + [
        "### Which design points win on each front", "",
        "Every design point on the size front, the latency front or both (the numbers are "
        "those on each chart); a point small on disk is not always fast, since latency also "
        "follows activations, layer count and how well each layer maps to the runtime.", "",
        to_markdown(fronts_table(a["fronts"])), ""]


def _edf_text(frame: pd.DataFrame) -> list[str]:
    """What the error is, how curves are grouped, and each curve's n / min / mean / median."""
    summary = F.edf_summary(frame)
    table = pd.DataFrame({
        "curve": summary["group"], "n": summary["n"].map(integer),
        **{f"{s} error %": (100 * summary[f"{s}_error"]).map(number) for s in ("min", "mean", "median")}})
    by = ", ".join(frame.attrs.get("by") or []) or "all runs"
    return [f"Error = 1 − {accuracy_name(frame.attrs['metric'])}, one step per ok run; curves by "
            f"{by}.", "", to_markdown(table), ""]


def _latency_frame(df: pd.DataFrame, charts: dict[str, Chart]) -> pd.DataFrame:
    """Accuracy vs measured latency; ``attrs["fronts"]``: which design points win on each front."""
    size = charts["pareto"].frame
    points = F.pareto_frame(df, size.attrs.get("metric"), cost=LATENCY_COST)
    if not points.attrs.get("skipped"):
        points.attrs.update(
            threads=sorted({int(t) for t in F.ok_runs(df)["latency_threads"].dropna()}),
            unmeasured=int(len(size) - len(points)),
            fronts=F.fronts_frame({"size_bytes": size, LATENCY_COST: points}))
    return points


def _pareto_plot(points: pd.DataFrame, df: pd.DataFrame) -> Figure:
    return P.plot_pareto(points, df, P.context_title(df), points.attrs["metric"])


@dataclass(frozen=True)
class ChartSpec:
    """One chart kind: title, frame (from the runs and earlier charts), drawing, text, fewest rows."""

    title: str
    frame: Callable[[pd.DataFrame, dict[str, Chart]], pd.DataFrame]
    draw: Callable[[pd.DataFrame, pd.DataFrame], Figure]
    text: Callable[[pd.DataFrame], list[str]]
    need: tuple[int, str] = (0, "")


def _sweep(param: str, title: str) -> ChartSpec:
    plot = P.plot_bypass if param == "bypass" else P.plot_sweep
    return ChartSpec(title, lambda df, _: F.sweep_frame(df, param),
                     lambda fr, _: plot(fr, f"{title} — {P.context_title(fr.attrs['fixed'])}"), _sweep_text)


CHARTS: dict[str, ChartSpec] = {  # file stem -> chart, in report order
    "micro_sr": _sweep("sr", "SR sweep (paper Figure 3a)"),
    "micro_pct3x3": _sweep("pct3x3", "pct3x3 sweep (paper Figure 3b)"),
    "macro_bypass": _sweep("bypass", "Bypass connections (paper Table 3)"),
    "pareto": ChartSpec("Pareto front: accuracy vs model size", lambda df, _: F.pareto_frame(df),
                        _pareto_plot, _pareto_text, (2, "design point with accuracy and size")),
    "pareto_latency": ChartSpec("Pareto front: accuracy vs latency", _latency_frame, _pareto_plot,
                                _pareto_text, (2, "design point with accuracy and latency")),
    "edf": ChartSpec("Error EDFs (pycls style)", lambda df, _: F.edf_frame(df),
                     lambda fr, df: P.plot_edf(fr, P.context_title(df)), _edf_text, (2, "ok run")),
    "importance": ChartSpec(
        "Metaparameter importances (fANOVA, PED-ANOVA)", lambda df, _: importance_frame(df),
        lambda fr, df: P.plot_importance(fr, P.context_title(df)), importance_text),
}


def build_charts(df: pd.DataFrame, out_dir: Path, formats: Sequence[str] = ("png",)) -> dict[str, Chart]:
    """Compute every chart's frame, draw those the data supports, record why others are not."""
    if F.ok_runs(df).empty:
        counts = ", ".join(f"{n} {s}" for s, n in df["status"].value_counts().items())
        reason = f"no run finished ok ({counts}): nothing to chart"
        return {n: Chart(pd.DataFrame(), skipped=reason) for n in CHARTS}
    charts: dict[str, Chart] = {}
    for name, spec in CHARTS.items():
        frame = spec.frame(df, charts)
        least, what = spec.need
        skipped = frame.attrs.get("skipped") or (
            f"only {len(frame)} {what} (need >= {least})" if len(frame) < least else None)
        chart = charts[name] = Chart(frame, skipped=skipped)
        if skipped is None:
            fig = spec.draw(frame, df)
            out_dir.mkdir(parents=True, exist_ok=True)
            chart.files = [out_dir / f"{name}.{fmt}" for fmt in formats]
            for path, fmt in zip(chart.files, formats, strict=True):
                fig.savefig(path, format=fmt, dpi=DPI)
    return charts


def _bad_runs_section(df: pd.DataFrame) -> list[str]:
    """Every run that is not a design point, named as the logs name it, with its error's first line."""
    bad = df[df["status"] != "ok"]
    runs = [f"{h}-seed{value_text(s)}" if isinstance(h, str) and h else run
            for h, s, run in zip(bad["config_hash"], bad["seed"], bad["run_id"], strict=True)]
    lines = ["## Runs that are not design points", ""]
    if bad.empty:
        return lines + ["None: every run finished ok.", ""]
    table = pd.DataFrame({
        "study": bad["study"], "run": runs,
        "status": bad["status"], "seed": bad["seed"].map(integer),
        "point": bad.apply(lambda r: F.describe(r, ["model", "sr", "pct3x3", "bypass"]), axis=1),
        "MB": to_mb(bad["size_bytes"].astype(float)).map(number),
        "MiB": to_mib(bad["size_bytes"].astype(float)).map(number),
        "reason": bad["error"].map(lambda e: "-" if is_missing(e) else first_line(str(e))[:120])})
    return lines + [to_markdown(table), ""]


def _commands_section(df: pd.DataFrame) -> list[str]:
    """The sweep commands that reproduce the store, per study with its ``study.note``."""
    cmds = sweep_commands(df)
    notes: dict[str, str] = {}
    for study, text in zip(df["study"], df["config"], strict=True):
        if note := (config_of(text).get("study") or {}).get("note"):
            notes.setdefault(str(study), str(note))
    lines = ["## Sweep commands", "",
             "Reconstructed from the runs' recorded Hydra overrides; each grid command re-runs "
             "exactly the jobs in the store (dse-train skips design points and seeds it already "
             "has).", "", "```bash"]
    for study, sub in cmds.groupby("study", sort=True):
        lines.append(f"# study {study}" + (f": {notes[study]}" if study in notes else ""))
        for _, r in sub.iterrows():
            lines += [f"# {r['runs']} run{'s' if r['runs'] != 1 else ''}, {r['note']}", r["command"]]
    if cmds.empty:
        lines.append("# no run recorded its overrides")
    return lines + ["```", ""]


def write_report(df: pd.DataFrame, out_dir: str | Path, formats: Sequence[str] = ("png",),
                 source: str = "") -> dict[str, Chart]:
    """Charts and ``report.md`` into ``out_dir``, all or nothing; charts skipped now are removed."""
    out = Path(out_dir)
    with staged_dir(out, "--out") as stage:
        charts = build_charts(df, stage, formats)
        (stage / "report.md").write_text(render_markdown(df, charts, source), encoding="utf-8")
    for name, chart in charts.items():
        chart.files = [out / p.name for p in chart.files]
        for fmt in FORMATS:
            if (path := out / f"{name}.{fmt}") not in chart.files:
                path.unlink(missing_ok=True)
    return charts
