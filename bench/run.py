"""Run every benchmark and print one table; the same figures go to
bench/results/latest.json and docs/benchmarks.md.

    python3 dev.py bench            # full sizes (GET /tasks up to 1M tasks)
    python3 dev.py bench --quick    # smaller sizes, for a quick look
    python3 dev.py bench --compare REV   # before (git revision REV) and after, in one run

Figures are measured in one run on one machine; ratios next to absolute numbers
are what to compare, since shared machines are noisy. Nothing here fails on a time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone

from bench.common import ROOT, machine

RESULTS = ROOT / "bench" / "results" / "latest.json"
REPORT = ROOT / "docs" / "benchmarks.md"


def collect(quick: bool) -> dict:
    from bench import (capacity, cold_start, cost, drain, latency, listing, sqlite_limit, submit, validation,
                       waiting)

    n = 300 if quick else 2000
    figures: dict = {"machine": machine(), "quick": quick,
                     "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}

    def step(name, call):
        started = time.perf_counter()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        value = call()
        print(f"bench: {name} done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        return value

    figures["sqlite_commits_per_s"] = step("sqlite limit", lambda: {
        sync: sqlite_limit.commits_per_second(sync, n) for sync in ("FULL", "NORMAL")})
    figures["submit_in_process_per_s"] = step("submit in process", lambda: {
        f"{sync}{'' if threads == 1 else f'_{threads}_threads'}": submit.in_process(n, sync, threads)
        for sync in ("FULL", "NORMAL") for threads in (1, 8)})
    figures["validation"] = step("data checks", validation.measure)
    figures["submit_http_per_s"] = step("submit over HTTP", lambda: submit.over_http(200 if quick else 1000))
    drain_tasks = 500 if quick else 3000
    figures["drain_per_s"] = step("drain", lambda: {
        "seed_b5_c2_full": drain.embedded(drain_tasks, 5, 2, "FULL"),
        "huey_2_workers_fsync": drain.huey(drain_tasks, 2, fsync=True),
        "b10_c2_full": drain.embedded(drain_tasks, 10, 2, "FULL"),
        "seed_b5_c2_normal": drain.embedded(drain_tasks, 5, 2, "NORMAL"),
        "huey_2_workers_no_fsync": drain.huey(drain_tasks, 2, fsync=False),
        "b10_c2_normal": drain.embedded(drain_tasks, 10, 2, "NORMAL"),
    })
    figures["drain_with_waiting_reads"] = step("drain with parked ?wait reads", lambda: waiting.measure(
        100 if quick else 200))
    figures["latency_post_to_completed"] = step("end-to-end latency", lambda: latency.post_to_completed(
        20 if quick else 50, 5 if quick else 10))
    sizes = (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000)
    figures["get_tasks_latency"] = step("GET /tasks", lambda: {
        str(size): listing.measure(size, runs=100 if quick else 200) for size in sizes})
    figures["cold_start"] = step("cold start", lambda: cold_start.measure(5 if quick else 9))
    figures["capacity"] = step("DynamoDB capacity, before and after", lambda: capacity.measure(
        300 if quick else 10_000))
    units = {side: figures["capacity"][side]["write_units_per_task"] for side in ("before", "after")}
    figures["cost"] = step("cost", lambda: cost.measure(50 if quick else 200, units["after"]))
    figures["cost_before"] = cost.per_million(figures["cost"], units["before"])
    return figures


def _fmt(value, unit="") -> str:
    if isinstance(value, float):
        text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text}{unit}"


def table(f: dict) -> list:
    """Rows: (measure, figure, compared with, target / verdict)."""
    rows = []
    limit = f["sqlite_commits_per_s"]
    rows.append(("SQLite single-row commits/s (FULL / NORMAL)",
                 f"{_fmt(limit['FULL'])} / {_fmt(limit['NORMAL'])}", "the ceiling", ""))
    sub = f["submit_in_process_per_s"]
    for sync in ("FULL", "NORMAL"):
        for suffix, label in (("", "1 thread"), ("_8_threads", "8 threads")):
            value = sub[f"{sync}{suffix}"]
            rows.append((f"Submit in process, {label}, {sync}, tasks/s", _fmt(value),
                         f"{value / limit[sync]:.2f}x commit limit", _verdict(value >= 3000, "≥ 3,000")))
    if "validation" in f:
        rows += validation_rows(f)
    http = f["submit_http_per_s"]
    for clients, who in (("", "1 client"), ("_8_clients", "8 clients")):
        for mode, label in (("keepalive", "keep-alive"), ("new_connection", "new connection each")):
            ceiling = http[f"empty_route_{mode}{clients}"]
            for sync, key in (("FULL", f"post_tasks_{mode}{clients}"), ("NORMAL", f"post_tasks_normal_{mode}{clients}")):
                ours = http[key]
                rows.append((f"POST /tasks via chalice local, {who}, {label}, {sync}, req/s", _fmt(ours),
                             f"empty route {_fmt(ceiling)}: {ours / ceiling:.0%}",
                             _verdict(ours / ceiling >= 0.8, "≥ 80%")))
    d = f["drain_per_s"]
    huey = d["huey_2_workers_fsync"]
    for key, label in (("seed_b5_c2_full", "seed settings (batch 5, 2 workers)"), ("b10_c2_full", "batch 10, 2 workers")):
        rows.append((f"Drain, {label}, FULL, tasks/s", _fmt(d[key]),
                     f"Huey, 2 workers, fsync (FULL) {_fmt(huey)}: {d[key] / huey:.2f}x",
                     _verdict(d[key] / huey >= 1.5, "≥ 1.5x")))
    loose = d["huey_2_workers_no_fsync"]
    for key, label in (("seed_b5_c2_normal", "seed settings"), ("b10_c2_normal", "batch 10, 2 workers")):
        rows.append((f"Drain, {label}, NORMAL, tasks/s", _fmt(d[key]),
                     f"Huey without fsync (synchronous OFF, less durable) {_fmt(loose)}: {d[key] / loose:.2f}x",
                     "not the same durability"))
    rows += waiting_rows(f)
    lat = f["latency_post_to_completed"]
    rows.append((f"POST → completed at {lat['rate_per_second']:.0f}/s, p50 / p95 / p99",
                 f"{_fmt(lat['p50_ms'])} / {_fmt(lat['p95_ms'])} / {_fmt(lat['p99_ms'])} ms",
                 f"{lat['tasks']} tasks", ""))
    sizes = list(f["get_tasks_latency"])
    for size in sizes:
        g = f["get_tasks_latency"][size]
        rows.append((f"GET /tasks at {int(size):,} tasks, p50 / p99",
                     f"{_fmt(g['all']['p50_ms'])} / {_fmt(g['all']['p99_ms'])} ms",
                     f"seed schema {_fmt(g['seed_all']['p50_ms'])} / {_fmt(g['seed_all']['p99_ms'])} ms",
                     _verdict(g["all"]["p99_ms"] <= 10, "p99 ≤ 10 ms")))
        rows.append((f"GET /tasks?status=failed at {int(size):,}, p50 / p99",
                     f"{_fmt(g['status_failed']['p50_ms'])} / {_fmt(g['status_failed']['p99_ms'])} ms",
                     f"seed schema {_fmt(g['seed_status_failed']['p50_ms'])} / "
                     f"{_fmt(g['seed_status_failed']['p99_ms'])} ms",
                     _verdict(g["status_failed"]["p99_ms"] <= 10, "p99 ≤ 10 ms")))
    first, last = f["get_tasks_latency"][sizes[0]]["all"]["p99_ms"], f["get_tasks_latency"][sizes[-1]]["all"]["p99_ms"]
    rows.append((f"GET /tasks p99 growth {int(sizes[0]):,} → {int(sizes[-1]):,}", f"{last / first:.2f}x", "",
                 _verdict(last / first <= 1.5, "flat (≤ 1.5x)")))
    c = f["cold_start"]
    rows.append(("Import app.py, local / cloud configuration",
                 f"{_fmt(c['import_app_local']['median_ms'])} / {_fmt(c['import_app_cloud']['median_ms'])} ms",
                 f"chalice {_fmt(c['import_chalice']['median_ms'])} ms, boto3 {_fmt(c['import_boto3']['median_ms'])} ms",
                 _verdict(not c["import_app_local"]["boto3_loaded"], "no boto3 imported")))
    rows.append(("First use of the backends, local / cloud (imports + clients)",
                 f"{_fmt(c['first_use_local']['median_ms'])} / {_fmt(c['first_use_cloud']['median_ms'])} ms",
                 "cloud loads boto3, local does not" if not c["first_use_local"]["boto3_loaded"] else "", ""))
    rows.append(("Deployment package", f"{c['package_bytes'] / 1024:.0f} KiB",
                 f"fastjsonschema {c['package_validator_bytes'] / 1024:.0f} KiB of it"
                 if "package_validator_bytes" in c else "", ""))
    rows += capacity_rows(f)
    cost = f["cost"]
    total = cost["cost_per_million_tasks_usd"]["total"]
    before = f.get("cost_before", {}).get("cost_per_million_tasks_usd", {}).get("total")
    rows.append(("Cost per million tasks on AWS", f"${total:.2f}",
                 ", ".join(f"{k} ${v:.2f}" for k, v in cost["cost_per_million_tasks_usd"].items() if k != "total")
                 + (f"; before ${before:.2f}" if before is not None else "") + f" ({cost['prices']['date']})",
                 _verdict(total <= 8.50, "≤ $8.50")))
    return rows


def validation_rows(f: dict) -> list:
    v = f["validation"]
    check = v["check_us"]
    per_task_us = 1e6 / f["submit_in_process_per_s"]["FULL"]
    cold = v["cold"]
    return [
        ("Data check at submit (fastjsonschema), sum / uppercase / undeclared action, µs",
         f"{check['sum']:.1f} / {check['uppercase']:.1f} / {check['undeclared']:.2f}",
         f"a submit in process (FULL, 1 thread) takes {per_task_us:,.0f} µs: "
         f"{check['sum'] / per_task_us:.1%} of it for sum", ""),
        ("Cold start: the first checks of sum and uppercase (import fastjsonschema, compile both schemas), ms",
         _fmt(cold["first_checks_ms"]),
         f"importing app.py {_fmt(cold['import_app_ms'])} ms: "
         f"+{cold['first_checks_ms'] / cold['import_app_ms']:.0%}", ""),
    ]


def waiting_rows(f: dict) -> list:
    if "drain_with_waiting_reads" not in f:
        return []
    w = f["drain_with_waiting_reads"]
    none, fifty, many, parked = (w[key]["tasks_per_s"] for key in ("0", "50", "200", "200_all_parked"))
    return [("Drain with 0 / 50 / 200 parked GET ?wait=20 reads, seed settings, tasks/s",
             f"{_fmt(none)} / {_fmt(fifty)} / {_fmt(many)} ({w['200']['refused']} of the 200 refused: "
             "TASKS_MAX_WAITERS)",
             f"200 all parked (TASKS_MAX_WAITERS=200): {_fmt(parked)}, {parked / none:.2f}x none",
             _verdict(min(fifty, many, parked) / none >= 0.5, "flat (≥ 0.5x none)"))]


def capacity_rows(f: dict) -> list:
    if "capacity" not in f:
        return []
    c = f["capacity"]
    after, before, big = c["after"], c["before"], c["big"]
    n = f"{after['tasks']:,}"
    stats_big = f"stats_read_units_at_{big}"
    places = lambda side: ", ".join(f"{k} {v:.2f}" for k, v in side["write_units_per_task_by_place"].items())
    shares = lambda side: ", ".join(f"{k} {v['hottest_share']:.3f}" for k, v in side["partitions"].items())
    return [
        ("DynamoDB write units per task, submit to completed, seed payload",
         f"{after['write_units_per_task']:.2f} ({places(after)})",
         f"before {before['write_units_per_task']:.2f} ({places(before)})",
         _verdict(after["write_units_per_task"] <= 6, "≤ 6")),
        (f"Hottest partition key's share of writes at {n} tasks, per table and index",
         f"{after['ceiling']['worst_share']:.3f} ({shares(after)})",
         f"before {before['ceiling']['worst_share']:.3f} ({shares(before)})",
         _verdict(after["ceiling"]["worst_share"] <= 1 / 16, "≤ 1/16 (0.0625)")),
        ("Throughput ceiling that share implies, at 1,000 WCU/s a partition, tasks/s",
         f"{after['ceiling']['tasks_per_s']:,.0f} (hottest: {after['ceiling']['where']})",
         f"before {before['ceiling']['tasks_per_s']:,.0f} (hottest: {before['ceiling']['where']})",
         _verdict(after["ceiling"]["tasks_per_s"] >= 10_000, "≥ 10,000")),
        (f"/stats read units at {n} / {big:,} tasks",
         f"{after['stats_read_units']:g} / {after[stats_big]:g}",
         f"before {before['stats_read_units']:g} / {before[stats_big]:,.0f} (1M: scaled from {n}, the Query "
         "reads every task's entry)",
         _verdict(after["stats_read_units"] == after[stats_big] and after[stats_big] <= 10, "the same, ≤ 10")),
        ("GET /tasks read units, one page of 100: all / status=completed / status=failed",
         f"{after['list_read_units']:g} / {after['list_completed_read_units']:g} / "
         f"{after['list_failed_read_units']:g}",
         f"before {before['list_read_units']:g} / {before['list_completed_read_units']:g} / "
         f"{before['list_failed_read_units']:g}", "what the sharding costs readers"),
    ] + ([("GET /tasks?action=uppercase read units, one page of 100", f"{after['list_action_read_units']:g}",
           "its own index: as a page of all tasks", "")] if "list_action_read_units" in after else []) + (
        [("GET /stats/series?minutes=60 read units", f"{after['series_read_units']:g}",
           "60 minutes x 4 items, whatever the number of tasks", "")] if "series_read_units" in after else [])


def _verdict(ok: bool, target: str) -> str:
    return f"{target}: {'met' if ok else 'NOT met'}"


def markdown(f: dict, rows: list) -> str:
    m = f["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {f['date']} with `python3 dev.py bench`{' --quick' if f['quick'] else ''}, all in one run on "
        f"one machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
        f"SQLite {m['sqlite']}. The machine is shared, so compare the ratios. Raw figures: "
        "`bench/results/latest.json`.",
        "",
        "| Measure | Figure | Compared with | Target |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += ["", "How each is measured: `bench/README.md`.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--compare", metavar="REV",
                        help="instead: submit, drain and POST figures of git revision REV next to this tree's")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs for --compare")
    args = parser.parse_args()
    if args.compare:
        from bench import compare
        return compare.main(args.compare, args.runs)
    figures = collect(args.quick)
    rows = table(figures)
    width = [max(len(row[i]) for row in rows) for i in range(4)]
    print()
    for row in rows:
        print("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)).rstrip())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2))
    if not args.no_report:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(markdown(figures, rows))
    print(f"\nfigures: {RESULTS}" + ("" if args.no_report else f", table: {REPORT}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
