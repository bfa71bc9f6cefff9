"""The benchmark code keeps working: each piece runs at a tiny size and returns figures.
No figure is compared with a time here; benchmarks never fail CI on speed."""
import math

import pytest

from bench import cold_start, cost, drain, listing, sqlite_limit, submit, validation, waiting
from bench.run import markdown, table


def test_small_runs_return_figures():
    assert sqlite_limit.commits_per_second("NORMAL", rows=20) > 0
    assert submit.in_process(20, "NORMAL") > 0
    assert submit.in_process(16, "FULL", threads=4) > 0  # raises if a submit went missing
    assert drain.embedded(20, 5, 2) > 0
    figures = listing.measure(300, runs=3)
    assert set(figures) == {"all", "status_failed", "status_completed", "seed_all", "seed_status_failed"}
    assert all(value["p99_ms"] >= value["p50_ms"] > 0 for value in figures.values())


def test_the_waiting_reads_benchmark_returns_figures():
    figures = waiting.drain_with_waiters(20, 5, max_waiters=3)
    assert figures["tasks_per_s"] > 0 and figures["refused"] == 2


def test_the_validator_benchmark_returns_figures():
    checks = validation.per_submit(calls=50)
    assert set(checks) == {"sum", "uppercase", "undeclared"} and all(value > 0 for value in checks.values())
    cold = validation.cold(runs=1)
    assert cold["import_app_ms"] > 0 and cold["first_checks_ms"] > 0


def test_the_cloud_configuration_runs_in_the_cost_and_cold_start_benchmarks():
    assert cost.measure(3, write_units_per_task=5.0)["cost_per_million_tasks_usd"]["total"] > 0
    first_use = ("import app; from chalicelib import factory; "
                 "factory.store(factory.current_settings()); factory.aws_client('sqs', 'request')")
    figure = cold_start._time_import(first_use, cold_start.CLOUD, 1)
    assert figure["median_ms"] > 0 and figure["boto3_loaded"] and not figure["sqlite3_loaded"]


def test_cost_is_computed_from_measured_figures():
    measured = {"api_handler_ms": 10.0, "worker_batch_ms": 50.0, "worker_batch_size": 5,
                "api_calls_per_task": {"sqs:SendMessage": 1.0, "dynamodb:PutItem": 1.0}}
    result = cost.per_million(measured, 14)["cost_per_million_tasks_usd"]
    assert result["api_gateway"] == 3.5
    assert result["dynamodb"] == 8.75  # 14 write units a task at $0.625 a million
    assert math.isclose(result["total"], sum(v for k, v in result.items() if k != "total"), abs_tol=0.02)


def test_the_capacity_probe_bills_writes_and_reads_from_the_calls_it_records():
    from bench import capacity
    from bench.common import ROOT

    figures = capacity._probe(ROOT, 20, [1000])
    # Every task writes its item three times (submit, claim, outcome) and its time and action entries once.
    assert figures["write_units_per_task_by_place"]["by_time"] == 1.0
    assert figures["write_units_per_task_by_place"]["by_action"] == 1.0
    assert figures["write_units_per_task_by_place"]["table"] >= 3.0
    assert figures["counts"] == {"completed": 20}
    assert figures["stats_read_units"] == figures["stats_read_units_at_1000"] > 0
    assert 0 < capacity.ceiling(figures)["worst_share"] <= 1


def test_item_sizes_follow_dynamodbs_rules():
    from bench.capacity_probe import item_size

    assert item_size({"id": {"S": "abc"}}) == 5
    assert item_size({"n": {"N": "12345"}}) == 1 + 4
    assert item_size({"m": {"M": {"a": {"S": "xy"}}}}) == 1 + 3 + 1 + 2 + 1


def test_table_reports_targets_met_and_missed():
    pytest.importorskip("json")
    one = {"p50_ms": 1.0, "p99_ms": 2.0}
    figures = {
        "machine": {"cpu": "x", "cores": 2, "memory_gib": 1, "python": "3", "sqlite": "3"},
        "quick": True, "date": "today",
        "sqlite_commits_per_s": {"FULL": 1000.0, "NORMAL": 10000.0},
        "submit_in_process_per_s": {"FULL": 900.0, "NORMAL": 4000.0, "FULL_8_threads": 3000.0,
                                    "NORMAL_8_threads": 2999.0},
        "submit_http_per_s": {f"{name}_{mode}{clients}": 100.0 if name == "empty_route" else 80.0
                              for name in ("post_tasks", "post_tasks_normal", "empty_route")
                              for mode in ("keepalive", "new_connection") for clients in ("", "_8_clients")},
        "drain_per_s": {"seed_b5_c2_full": 300.0, "huey_2_workers_fsync": 100.0, "b10_c2_full": 100.0,
                        "seed_b5_c2_normal": 1.0, "huey_2_workers_no_fsync": 1.0, "b10_c2_normal": 1.0},
        "latency_post_to_completed": {"rate_per_second": 10, "tasks": 5, "p50_ms": 1.0, "p95_ms": 2.0,
                                      "p99_ms": 3.0},
        "get_tasks_latency": {"10": {k: one for k in ("all", "status_failed", "seed_all", "seed_status_failed")}},
        "cold_start": {"import_app_local": {"median_ms": 1.0, "boto3_loaded": False},
                       "import_app_cloud": {"median_ms": 1.0}, "import_chalice": {"median_ms": 1.0},
                       "import_boto3": {"median_ms": 1.0}, "first_use_local": {"median_ms": 1.0, "boto3_loaded": False},
                       "first_use_cloud": {"median_ms": 1.0}, "package_bytes": 2048},
        "cost": {"cost_per_million_tasks_usd": {"api_gateway": 3.5, "total": 3.5}, "prices": {"date": "d"}},
        "drain_with_waiting_reads": {"0": {"tasks_per_s": 1000.0, "refused": 0},
                                     "50": {"tasks_per_s": 900.0, "refused": 0},
                                     "200": {"tasks_per_s": 100.0, "refused": 100},
                                     "200_all_parked": {"tasks_per_s": 800.0, "refused": 0}},
        "validation": {"check_us": {"sum": 2.0, "uppercase": 1.0, "undeclared": 0.1},
                       "cold": {"first_checks_ms": 8.0, "import_app_ms": 180.0}},
    }
    rows = table(figures)
    verdicts = {row[0]: row[3] for row in rows}
    assert verdicts["Submit in process, 1 thread, FULL, tasks/s"] == "≥ 3,000: NOT met"
    assert verdicts["Submit in process, 1 thread, NORMAL, tasks/s"] == "≥ 3,000: met"
    assert verdicts["Submit in process, 8 threads, FULL, tasks/s"] == "≥ 3,000: met"
    assert verdicts["Submit in process, 8 threads, NORMAL, tasks/s"] == "≥ 3,000: NOT met"
    assert verdicts["POST /tasks via chalice local, 8 clients, keep-alive, FULL, req/s"] == "≥ 80%: met"
    assert verdicts["Drain, seed settings (batch 5, 2 workers), FULL, tasks/s"] == "≥ 1.5x: met"
    assert verdicts["Drain, batch 10, 2 workers, FULL, tasks/s"] == "≥ 1.5x: NOT met"
    assert verdicts["Drain with 0 / 50 / 200 parked GET ?wait=20 reads, seed settings, tasks/s"] == \
        "flat (≥ 0.5x none): NOT met"
    figures_of = {row[0]: row[1] for row in rows}
    assert figures_of["Data check at submit (fastjsonschema), sum / uppercase / undeclared action, µs"] == \
        "2.0 / 1.0 / 0.10"
    assert "| Measure | Figure | Compared with | Target |" in markdown(figures, rows)
