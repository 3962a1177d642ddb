"""The bench JSON as a Markdown report: one table per section, numbers a planner can act on."""

from __future__ import annotations

from typing import Any

from dse.text import table

# the row label of each torch.compile variant dse.bench.step.measure_compile measures
COMPILE_NAMES = {"project": "project + torch.compile", "plain": "plain + torch.compile",
                 "plain_reduce_overhead": "plain + compile(reduce-overhead, CUDA graphs)"}
DASH = "–"


def _f(v: Any, digits: int = 1, suffix: str = "") -> str:
    if v is None:
        return DASH
    return f"{v:,.{digits}f}{suffix}" if isinstance(v, float) else f"{v}{suffix}"


def _pct(v: float | None) -> str:
    return DASH if v is None else f"{100.0 * v:.2f}%"


def _section(title: str, header: list[str], rows: list[list[str]], *after: str) -> list[str]:
    return [f"## {title}", "", *table(header, rows, markdown=True, pad=False).split("\n"), "", *after]


def _failed(first: str, r: dict[str, Any], width: int) -> list[str] | None:
    """The row of a measurement that failed (its error cut to 80 characters), None otherwise."""
    return [first, "failed: " + r["error"][:80], *[DASH] * (width - 2)] if "error" in r else None


def _variant(name: str, r: dict[str, Any]) -> list[str]:
    comp = _f(r.get("compile_s"), 2)
    if r.get("compile_s_warm") is not None:
        comp += f" / {_f(r['compile_s_warm'], 2)}"
    return _failed(name, r, 6) or [name, _f(r.get("images_per_s")), _f(r.get("step_ms"), 2),
                                   _f(r.get("cpu_ms_per_step"), 2), _f(r.get("warmup_s"), 2), comp]


def _header(doc: dict[str, Any]) -> list[str]:
    """Title, machine, config and overrides: what a reader needs to judge whether two reports compare."""
    m, c = doc["machine"], doc["config"]
    lines = [
        f"# dse-bench {doc['date']}", "",
        f"- device: {m['device']} ({m['accelerator']}, {m['precision']}, "
        f"channels_last={m['channels_last']}); {m['cpu_count']} CPUs, torch {m['torch_version']}, "
        f"lightning {m.get('lightning_version', '?')}, load avg {_f(m.get('load_avg_1m'), 2)}",
        f"- config: model={c['model']} data={c['data']} trainer={c['trainer']} "
        f"batch={c['batch_size']} max_epochs={c['max_epochs']} subset={c['subset']} augment={c['augment']}",
        f"- overrides: `{' '.join(doc['options']['overrides']) or '(none)'}`", "",
    ]
    load, cpus = m.get("load_avg_1m"), m.get("cpu_count")
    if load is not None and cpus and load > cpus:
        lines += [f"> **Note:** load average {load:.1f} on {cpus} CPUs: this machine was shared while "
                  "measuring, so wall-clock numbers are noisy; compare within this report only.", ""]
    return lines


def _step(s: dict[str, Any], comp: dict[str, Any]) -> list[str]:
    """Project and plain side by side (and their compiled variants), then the ratio."""
    rows = [_variant("project (Lightning, dse-train path)", s["project"]),
            _variant("plain PyTorch loop", s["plain"]), *(_variant(COMPILE_NAMES[k], v)
                                                         for k, v in comp.items())]
    return _section(f"Training step ({s['warmup']} warm-up + {s['steps']} timed steps, best of "
                    f"{s['repeats']})", ["path", "images/s", "ms/step", "CPU ms/step", "warm-up s",
                                         "compile s (cold / warm cache)"], rows,
                    f"**project / plain = {_f(s.get('ratio'), 3)}** (images/s; 1.0 = no framework "
                    f"overhead); by process CPU time {_f(s.get('cpu_ratio'), 3)}", "")


def _precision(p: dict[str, Any]) -> list[str]:
    """fp32 and bf16 side by side, the one ``auto`` picks here marked: the figure behind its choice."""
    names = {"fp32": "fp32 (32-true, contiguous)", "bf16": "bf16-mixed + channels_last"}
    rows = [[names[k] + (" ← auto" if p["auto"] == k else ""), _f(p[k].get("images_per_s")),
             _f(p[k].get("step_ms"), 2), _f(p[k].get("cpu_ms_per_step"), 2)] for k in names]
    native = {True: "native bf16", False: "bf16 emulated", None: "GPU"}[p["native_bf16"]]
    return _section(f"Precision at batch {p['batch_size']} ({p['steps']} timed steps, best of "
                    f"{p['repeats']})", ["precision", "images/s", "ms/step", "CPU ms/step"], rows,
                    f"**bf16 / fp32 = {_f(p.get('ratio'), 3)}** (images/s); `trainer.precision=auto` "
                    f"picks {p['auto']} here ({native})", "")


def _epochs(e: dict[str, Any]) -> list[str]:
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
    return _section(title, ["metric", "value"], rows)


def _packing(p: dict[str, Any]) -> list[str]:
    """One row per K, then the ``n_jobs`` to use: the number a planner copies into a sweep."""
    rows = [_failed(str(r["k"]), r, 6) or [
        str(r["k"]), _f(r["trials_per_hour"]), _f(r["images_per_s"]), _f(r.get("speedup_vs_k1"), 2, "x"),
        _f(r["trial_s"], 2), _f(r.get("threads_per_trial"))] for r in p["runs"]]
    return _section("Packing: K concurrent trials on one device",
                    ["K", "trials/hour", "images/s (total)", "vs K=1", "s/trial", "threads/trial"], rows,
                    f"**recommended `hydra.launcher.n_jobs={_f(p['recommended_k'])}`** (smallest K "
                    f"within {100 * p['tolerance']:.0f}% of the best trials/hour; best K={_f(p['best_k'])})",
                    "")


def _fused(p: dict[str, Any]) -> list[str]:
    """K members (an SR x seed grid) three ways, and the ratios the fused launcher is judged by."""
    ways = ("fused", "sequential", "processes")
    rows = [[str(r["k"]), *(_f(r[w].get("trials_per_hour")) if "error" not in r[w] else "failed"
                            for w in ways), _f(r["fused"].get("images_per_s")),
             *(_f(r.get(f"fused_vs_{w}"), 2, "x") for w in ("sequential", "processes", "best_packing"))]
            for r in p["runs"]]
    errors = [f"- K={r['k']} {w}: {r[w]['error']}" for r in p["runs"] for w in ways if "error" in r[w]]
    return _section("Fused: K design points in one network vs one at a time vs K processes",
                    ["K", "fused trials/h", "one-at-a-time trials/h", "K processes trials/h",
                     "fused images/s", "fused / one-at-a-time", "fused / K processes",
                     "fused / best packing"], rows, *errors, *([""] if errors else []))


def markdown(doc: dict[str, Any]) -> str:
    """Render ``doc`` (see :func:`dse.bench.run.run_bench`) as Markdown; a section not run is left out."""
    lines = _header(doc)
    if doc.get("step"):
        lines += _step(doc["step"], doc.get("compile") or {})
    sections = (("precision", _precision), ("epochs", _epochs), ("packing", _packing), ("fused", _fused))
    for name, section in sections:
        if doc.get(name):
            lines += section(doc[name])
    lines.append(f"Total bench time: {_f(doc.get('seconds'), 1)} s.")
    return "\n".join(lines) + "\n"
