"""``python -m bench``: run the benchmarks of docs/benchmarks.md (by hand, never in CI).

    python -m bench setup                       # bench/.venv-baseline for the original design
    python -m bench machine                     # what the JSON lines record about the machine
    python -m bench profile restart --out FILE.svg   # a flame graph of a start (py-spy)
    python -m bench run SCENARIO|all [--target insightreader|original|ceiling ...]
                        [--runs 3] [--quick] [--out results.jsonl]
                        [--postgres ADMIN_URL [--processes N]]

Scenarios: submit-closed, submit-paced, end-to-end, fanout, idle-streams, restart.
Each run starts its own fake upstream and server; the targets of one scenario run
interleaved (run 1 of each, then run 2 of each…), so their ratios come from one
session. One JSON line per result on stdout (and appended to ``--out``), then a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import machine  # noqa: E402
from bench.procs import (  # noqa: E402
    OPTIONS,
    POSTGRES,
    PROCESSES,
    TARGETS,
    ensure_baseline_venv,
    prepare_harness,
    server_count,
)
from bench.profile import restart as profile_restart  # noqa: E402
from bench.scenarios import SCENARIOS, Scenario  # noqa: E402


def aggregate(runs: list[dict[str, float]]) -> dict[str, dict[str, Any]]:
    keys = [k for k in runs[0] if all(isinstance(r.get(k), (int, float)) for r in runs)]
    return {
        k: {"median": statistics.median(r[k] for r in runs), "min": min(r[k] for r in runs),
            "max": max(r[k] for r in runs), "values": [r[k] for r in runs]}
        for k in keys
    }


def run_scenario(scenario: Scenario, targets: list[str], runs: int, quick: bool, out: Path | None) -> list[dict[str, Any]]:
    chosen = [t for t in targets if t in scenario.targets]
    per_target: dict[str, list[dict[str, float]]] = {t: [] for t in chosen}
    errors: dict[str, str] = {}
    for n in range(runs):
        for target in chosen:
            if target in errors:
                continue
            print(f"# {scenario.label} · {target} · run {n + 1}/{runs}", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
                try:
                    per_target[target].append(scenario.run(target, quick, Path(tmp)))
                except Exception as exc:  # one broken target must not hide the others' figures
                    errors[target] = f"{type(exc).__name__}: {exc}"
                    print(f"#   failed: {errors[target]}", file=sys.stderr, flush=True)
    results = []
    for target in chosen:
        result: dict[str, Any] = {
            "scenario": scenario.name, "variant": scenario.variant, "target": target, "quick": quick,
            "runs": len(per_target[target]),
            "processes": server_count(target) if scenario.spread else 1,
            "metrics": aggregate(per_target[target]) if per_target[target] else {},
            "error": errors.get(target),
            "options": dict(OPTIONS),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine.info(),
        }
        line = json.dumps(result, ensure_ascii=False)
        print(line, flush=True)
        if out is not None:
            with out.open("a") as f:
                f.write(line + "\n")
        results.append(result)
    return results


def _cell(metric: dict[str, Any] | None) -> str:
    if metric is None:
        return "—"
    def fmt(v: float) -> str:
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    if metric["min"] == metric["max"]:
        return fmt(metric["median"])
    return f"{fmt(metric['median'])} [{fmt(metric['min'])}–{fmt(metric['max'])}]"


def table(results: list[dict[str, Any]]) -> str:
    """Per scenario: one row per target, the headline metrics as median [min–max];
    then InsightReader ÷ original for the first headline metric."""
    lines = []
    by_label: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_label.setdefault(f"{r['scenario']} {r['variant']}".strip(), []).append(r)
    for label, rows in by_label.items():
        scenario = next(s for s in SCENARIOS[rows[0]["scenario"]] if s.variant == rows[0]["variant"])
        head = scenario.headline
        lines.append(f"\n{label}")
        lines.append("| target | runs | processes | " + " | ".join(head) + " |")
        lines.append("|---|---:|---:|" + "---:|" * len(head))
        for r in rows:
            cells = [_cell(r["metrics"].get(k)) for k in head] if not r["error"] else [r["error"][:60]] + [""] * (len(head) - 1)
            lines.append(f"| {r['target']} | {r['runs']} | {r['processes']} | " + " | ".join(cells) + " |")
        medians = {r["target"]: r["metrics"].get(head[0], {}).get("median") for r in rows}
        ours, theirs = medians.get("insightreader"), medians.get("original")
        if ours is not None and theirs:
            lines.append(f"insightreader ÷ original ({head[0]}, medians): {ours / theirs:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="create bench/.venv-baseline (the original design's dependencies)")
    commands.add_parser("machine", help="print the machine description the JSON lines carry")
    profile = commands.add_parser("profile", help="a flame graph (py-spy) of what no running server shows")
    profile.add_argument("what", choices=["restart"], help="restart: a start with 10,000 pending tasks")
    profile.add_argument("--out", type=Path, required=True, help="the SVG to write")
    run = commands.add_parser("run", help="run a scenario, or all")
    run.add_argument("scenario", choices=[*SCENARIOS, "all"])
    run.add_argument("--target", action="append", choices=TARGETS, help="repeatable; default: every target that applies")
    run.add_argument("--runs", type=int, default=None, help="runs per target (default 3, 1 with --quick)")
    run.add_argument("--quick", action="store_true", help="a tiny smoke run (seconds): proves the harness, measures nothing")
    run.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL",
                     help="InsightReader's database.synchronous (default FULL, the shipped default)")
    run.add_argument("--postgres", metavar="ADMIN_URL", default=None,
                     help="run InsightReader on PostgreSQL: a new database on this server for each start"
                          " (postgresql://user@host/postgres; the user may create databases)")
    run.add_argument("--processes", type=int, default=1, metavar="N",
                     help="with --postgres: N InsightReader servers on each start's one database in the submit and"
                          " end-to-end scenarios, the load spread over them round-robin (default 1)")
    run.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    args = parser.parse_args()
    if args.command == "run" and args.processes < 1:
        run.error("--processes must be at least 1")
    if args.command == "run" and args.processes != 1 and not args.postgres:
        run.error("--processes needs --postgres: only PostgreSQL lets several servers share one database")
    if args.command == "setup":
        ensure_baseline_venv()
        return
    if args.command == "machine":
        print(json.dumps(machine.info(), indent=2))
        return
    prepare_harness()
    if args.command == "profile":
        seconds = profile_restart(args.out)
        print(f"{args.out}: first dispatch {seconds:.3f} s after py-spy started", file=sys.stderr)
        return
    OPTIONS["synchronous"] = args.synchronous
    if args.postgres:
        OPTIONS["database"] = "postgresql"
        POSTGRES["admin_url"] = args.postgres
        PROCESSES["count"] = args.processes
    targets = args.target or list(TARGETS)
    runs = args.runs or (1 if args.quick else 3)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    if "original" in targets:
        ensure_baseline_venv()
    started = time.monotonic()
    results = []
    for name in names:
        for scenario in SCENARIOS[name]:
            results += run_scenario(scenario, targets, runs, args.quick, args.out)
    print(table(results))
    print(f"\n({time.monotonic() - started:.0f} s; {'QUICK: smoke only, not figures' if args.quick else f'{runs} runs per target'})")


if __name__ == "__main__":
    main()
