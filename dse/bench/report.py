"""The bench JSON as a Markdown report: one table per section, numbers a planner can act on."""

from __future__ import annotations

from typing import Any

from dse.text import table

# the row label of each torch.compile variant dse.bench.step.measure_compile measures
COMPILE_NAMES = {"project": "project + torch.compile", "plain": "plain + torch.compile",
                 "plain_reduce_overhead": "plain + compile(reduce-overhead, CUDA graphs)"}


def _f(v: Any, digits: int = 1, suffix: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{suffix}"
    return f"{v}{suffix}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100.0 * v:.2f}%"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return table(header, rows, markdown=True, pad=False).split("\n")


def _variant(name: str, r: dict[str, Any] | None) -> list[str]:
    if not r:
        return [name, "–", "–", "–", "–", "–"]
    if "error" in r:
        return [name, "failed: " + r["error"][:80], "–", "–", "–", "–"]
    comp = _f(r.get("compile_s"), 2)
    if r.get("compile_s_warm") is not None:
        comp += f" / {_f(r['compile_s_warm'], 2)}"
    return [name, _f(r.get("images_per_s")), _f(r.get("step_ms"), 2), _f(r.get("cpu_ms_per_step"), 2),
            _f(r.get("warmup_s"), 2), comp]


def _header(doc: dict[str, Any]) -> list[str]:
    """Title, machine, config and overrides: what a reader needs to judge whether two reports compare."""
    m, c = doc["machine"], doc["config"]
    lines = [
        f"# dse-bench {doc['date']}",
        "",
        f"- device: {m['device']} ({m['accelerator']}, {m['precision']}, "
        f"channels_last={m['channels_last']}); {m['cpu_count']} CPUs, torch {m['torch_version']}, "
        f"lightning {m.get('lightning_version', '?')}, load avg {_f(m.get('load_avg_1m'), 2)}",
        f"- config: model={c['model']} data={c['data']} trainer={c['trainer']} "
        f"batch={c['batch_size']} max_epochs={c['max_epochs']} subset={c['subset']} "
        f"augment={c['augment']}",
        f"- overrides: `{' '.join(doc['options']['overrides']) or '(none)'}`",
        "",
    ]
    load, cpus = m.get("load_avg_1m"), m.get("cpu_count")
    if load is not None and cpus and load > cpus:
        lines += [f"> **Note:** load average {load:.1f} on {cpus} CPUs: this machine was shared while "
                  "measuring, so wall-clock numbers are noisy; compare within this report only.", ""]
    return lines


def _step(s: dict[str, Any], comp: dict[str, Any]) -> list[str]:
    """The step table: project and plain side by side (and their compiled variants), then the ratio."""
    lines = [f"## Training step ({s['warmup']} warm-up + {s['steps']} timed steps, best of "
             f"{s['repeats']})", ""]
    rows = [_variant("project (Lightning, dse-train path)", s["project"]),
            _variant("plain PyTorch loop", s["plain"])]
    rows += [_variant(COMPILE_NAMES[k], v) for k, v in comp.items()]
    lines += _table(["path", "images/s", "ms/step", "CPU ms/step", "warm-up s",
                     "compile s (cold / warm cache)"], rows)
    return lines + ["", f"**project / plain = {_f(s.get('ratio'), 3)}** (images/s; 1.0 = no framework "
                    f"overhead); by process CPU time {_f(s.get('cpu_ratio'), 3)}", ""]


def _epochs(e: dict[str, Any]) -> list[str]:
    """Epochs and time to the target accuracy, as a metric/value table."""
    title = (f"Epochs and time to {_pct(e['target'])} validation top-1" if e["target"] is not None
             else f"Epochs (all {e['max_epochs']}, no target)")
    rows = [["epochs run", _f(e["epochs"])],
            ["first epoch (s)", _f(e["first_epoch_s"], 3)],
            ["epoch, steady (s, median)", _f(e["epoch_s"], 3)],
            ["training images/s", _f(e["images_per_s"])],
            ["target reached", "yes" if e["reached"] else "no"],
            ["epochs to target", _f(e["epochs_to_target"])],
            ["time to target, training only (s)", _f(e["time_to_target_s"], 2)],
            ["time to target, wall incl. validation (s)", _f(e["wall_to_target_s"], 2)],
            ["final val top-1", _pct(e["val_top1"])],
            ["test top-1", _pct(e["test_top1"])]]
    return [f"## {title}", "", *_table(["metric", "value"], rows), ""]


def _packing_row(r: dict[str, Any]) -> list[str]:
    if "error" in r:
        return [str(r["k"]), "failed: " + r["error"][:80], "–", "–", "–", "–"]
    return [str(r["k"]), _f(r["trials_per_hour"]), _f(r["images_per_s"]),
            _f(r.get("speedup_vs_k1"), 2, "x"), _f(r["trial_s"], 2), _f(r.get("threads_per_trial"))]


def _packing(p: dict[str, Any]) -> list[str]:
    """One row per K, then the ``n_jobs`` to use: the number a planner copies into a sweep."""
    lines = ["## Packing: K concurrent trials on one device", ""]
    lines += _table(["K", "trials/hour", "images/s (total)", "vs K=1", "s/trial", "threads/trial"],
                    [_packing_row(r) for r in p["runs"]])
    return lines + ["", f"**recommended `hydra.launcher.n_jobs={_f(p['recommended_k'])}`** (smallest K "
                    f"within {100 * p['tolerance']:.0f}% of the best trials/hour; best K={_f(p['best_k'])})",
                    ""]


def _fused_row(r: dict[str, Any]) -> list[str]:
    ways = [r[w] for w in ("fused", "sequential", "processes")]
    cells = [_f(w.get("trials_per_hour")) if "error" not in w else "failed" for w in ways]
    return [str(r["k"]), *cells, _f(r["fused"].get("images_per_s")),
            _f(r.get("fused_vs_sequential"), 2, "x"), _f(r.get("fused_vs_processes"), 2, "x"),
            _f(r.get("fused_vs_best_packing"), 2, "x")]


def _fused(p: dict[str, Any]) -> list[str]:
    """K members (an SR x seed grid) three ways, and the ratios the fused launcher is judged by."""
    lines = ["## Fused: K design points in one network vs one at a time vs K processes", ""]
    lines += _table(["K", "fused trials/h", "one-at-a-time trials/h", "K processes trials/h",
                     "fused images/s", "fused / one-at-a-time", "fused / K processes",
                     "fused / best packing"], [_fused_row(r) for r in p["runs"]])
    errors = [f"K={r['k']} {w}: {r[w]['error']}" for r in p["runs"]
              for w in ("fused", "sequential", "processes") if "error" in r[w]]
    return lines + [""] + [f"- {e}" for e in errors] + ([""] if errors else [])


def markdown(doc: dict[str, Any]) -> str:
    """Render ``doc`` (see :func:`dse.bench.run.run_bench`) as Markdown; a section not run is left out."""
    lines = _header(doc)
    if doc.get("step"):
        lines += _step(doc["step"], doc.get("compile") or {})
    if doc.get("epochs"):
        lines += _epochs(doc["epochs"])
    if doc.get("packing"):
        lines += _packing(doc["packing"])
    if doc.get("fused"):
        lines += _fused(doc["fused"])
    lines.append(f"Total bench time: {_f(doc.get('seconds'), 1)} s.")
    return "\n".join(lines) + "\n"
