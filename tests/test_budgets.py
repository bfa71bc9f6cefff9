"""Each figure in tests/budgets.py, measured as it is spent (tests/metering.py): a
change that spends more fails here until it raises the budget, and says why."""
import math
import sys

import pytest

from tests import budgets, metering


def within(name: str, measured: float, what: str, budget=None, spent_by: str = "") -> None:
    """Fail unless `measured` is budgets.<name> (or `budget`): above it, a change
    spends more; below it, the budget should come down to keep the saving."""
    budget = getattr(budgets, name) if budget is None else budget
    where = f"tests/budgets.py {name}"
    if measured > budget and not math.isclose(measured, budget):
        pytest.fail(f"{what}: {measured:g}, over its budget of {budget:g} ({where}). If the change needs "
                    f"it, raise {name} to {measured:g} in the same commit and say why in the commit "
                    f"message; if not, find what spends the difference{spent_by}.", pytrace=False)
    if measured < budget and not math.isclose(measured, budget):
        pytest.fail(f"{what}: {measured:g}, under its budget of {budget:g} ({where}): lower {name} to "
                    f"{measured:g} in this commit, so that the saving is kept.", pytrace=False)


def kinds(spent: metering.Spent) -> str:
    return f" (statements counted by kind: {spent.kinds})"


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_a_submit_spends_its_statements_commits_and_flushes(monkeypatch, synchronous):
    spent = metering.sqlite_submits(monkeypatch, synchronous)
    within("SUBMIT_STATEMENTS", spent.statements, "SQLite statements per POST /tasks", spent_by=kinds(spent))
    within("SUBMIT_COMMITS", spent.commits, "SQLite commits per POST /tasks", spent_by=kinds(spent))
    within(f"SUBMIT_FLUSHES[{synchronous!r}]", spent.flushes, f"log flushes per POST /tasks at {synchronous}",
           budget=budgets.SUBMIT_FLUSHES[synchronous])


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_a_drained_batch_spends_its_statements_commits_and_flushes(monkeypatch, synchronous):
    spent = metering.sqlite_drain(monkeypatch, synchronous)
    within("DRAIN_STATEMENTS_PER_TASK", spent.statements, "SQLite statements per drained task (batch 5)",
           spent_by=kinds(spent))
    within("DRAIN_COMMITS_PER_TASK", spent.commits, "SQLite commits per drained task (batch 5)",
           spent_by=kinds(spent))
    within(f"DRAIN_FLUSHES_PER_BATCH[{synchronous!r}]", spent.flushes, f"log flushes per drained batch of 5 at {synchronous}",
           budget=budgets.DRAIN_FLUSHES_PER_BATCH[synchronous])


@pytest.fixture(scope="module")
def capacity():
    return metering.dynamodb_capacity()


def test_a_task_spends_its_dynamodb_write_units(capacity):
    within("DYNAMODB_WRITE_UNITS_PER_TASK", capacity.write_units_per_task,
           "DynamoDB write units per task, submit to completed",
           spent_by=f" (units per task by table and index: {capacity.write_units_by_place})")


def test_the_readers_spend_their_dynamodb_read_units(capacity):
    within("DYNAMODB_STATS_READ_UNITS", capacity.stats_read_units, "DynamoDB read units of GET /stats")
    within("DYNAMODB_LIST_PAGE_READ_UNITS", capacity.list_page_read_units,
           "DynamoDB read units of a page of GET /tasks")
    within("DYNAMODB_SERIES_READ_UNITS", capacity.series_read_units,
           "DynamoDB read units of GET /stats/series?minutes=60")


def test_a_million_tasks_cost_their_budget(capacity):
    dollars = metering.cost_per_million(capacity)
    within("COST_PER_MILLION_TASKS_USD", dollars["total"], "dollars per million tasks on AWS",
           spent_by=f" (by service: {dollars})")


@pytest.mark.package
def test_the_deployment_package_stays_within_its_bytes(tmp_path):
    package = metering.deployment_package(tmp_path / "package")
    assert set(package.top_level) <= budgets.PACKAGE_TOP_LEVEL, (
        f"the package holds {sorted(set(package.top_level) - budgets.PACKAGE_TOP_LEVEL)}, which "
        f"tests/budgets.py PACKAGE_TOP_LEVEL does not list: a dependency every cold start unzips and may "
        f"import. If it must ship, add it there and to the bytes in the same commit and say why.")
    assert package.bytes <= budgets.PACKAGE_BYTES, (
        f"the deployment package is {package.bytes:,} bytes, over its budget of {budgets.PACKAGE_BYTES:,} "
        f"(tests/budgets.py PACKAGE_BYTES; compressed bytes by top-level name: {package.top_level}). "
        f"If the change needs them, raise PACKAGE_BYTES in the same commit and say why.")


def test_importing_app_loads_only_its_budgeted_modules():
    imports = metering.imports_of_app()
    extra = sorted(set(imports.third_party) - budgets.IMPORT_APP_THIRD_PARTY_MODULES)
    assert not extra, (
        f"import app loads {len(extra)} modules beyond tests/budgets.py IMPORT_APP_THIRD_PARTY_MODULES, of "
        f"{sorted({name.split('.')[0] for name in extra})}: every cold start and `chalice package` pays for "
        f"them. Import them where they are first used (as factory.py does boto3), or add them there in the "
        f"same commit and say why. All of them: {extra}")
    within("IMPORT_APP_PROJECT_MODULES", len(imports.project), "modules of app and chalicelib that import app "
           "loads", spent_by=f", or import the new ones where they are first used ({imports.project})")
    if sys.version_info[:2] == budgets.IMPORT_APP_STDLIB_PYTHON:
        within("IMPORT_APP_STDLIB_MODULES", len(imports.stdlib), "standard library modules that import app "
               "loads", spent_by=f" ({imports.stdlib})")
