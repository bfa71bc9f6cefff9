"""What an operation may spend, in counts that do not depend on how busy the machine
is: SQLite statements, commits and flushes; DynamoDB capacity units; dollars per
million tasks worked out from those counts; the deployment package's bytes; the
modules a cold start imports. tests/test_budgets.py measures each (tests/metering.py)
and fails when a figure differs from its budget.

Each is today's figure. A change that spends more raises the figure here, in the
same commit, and says why in the commit message; one that spends less lowers it,
so that the saving is kept. (The package's bytes are a ceiling with a little room:
every edit of the code changes them.)
"""

# -- SQLite, at the seed's settings (batch 5), through the app as `chalice local` runs it

# A POST /tasks: BEGIN IMMEDIATE, the task's INSERT, its message's INSERT, COMMIT;
# one commit, shared with the other requests arriving at the same moment.
SUBMIT_STATEMENTS = 4
SUBMIT_COMMITS = 1
# Log flushes a POST /tasks asks for: one at FULL (it answers once the task is on
# disk; concurrent requests share it), none at NORMAL.
SUBMIT_FLUSHES = {"FULL": 1, "NORMAL": 0}

# A batch of 5 drained tasks: the receive (BEGIN, the previous batch's DELETE, SELECT,
# UPDATE ... RETURNING, COMMIT: 5), the claims (BEGIN, 5 UPDATEs, COMMIT: 7) and the
# outcomes (BEGIN, 5 UPDATEs, the minute's SELECT and INSERT, COMMIT: 9). Per task:
DRAIN_STATEMENTS_PER_TASK = 21 / 5
DRAIN_COMMITS_PER_TASK = 3 / 5
# Log flushes per batch: the outcomes' commit at FULL (receive and claims do not wait
# for the disk: losing them only repeats work); none at NORMAL.
DRAIN_FLUSHES_PER_BATCH = {"FULL": 1, "NORMAL": 0}

# -- DynamoDB, billed from the calls made under moto (bench/capacity_probe.py's rules)

# Write units for a task from submit to completed, batches of 5: in the table 4.6
# (the item three times, the submit's counter item, and per batch of 5 the claims'
# counter item, the outcomes' and the minute's record), and its time and action
# index entries once each.
DYNAMODB_WRITE_UNITS_PER_TASK = 6.6
# GET /stats: the counts' roll-up item and today's 16 counter items, however many
# tasks there are (once the scheduled function has folded the days before).
DYNAMODB_STATS_READ_UNITS = 9
# GET /tasks, one page of 100 newest first: a Query on each of the 32 shards of the
# time index and the items' BatchGetItem (ids from a fixed seed: their spread over
# the shards changes the figure by a unit or two).
DYNAMODB_LIST_PAGE_READ_UNITS = 69
# GET /stats/series?minutes=60: 60 minutes x 4 items read, whatever the number of tasks.
DYNAMODB_SERIES_READ_UNITS = 120

# Dollars per million tasks on AWS at bench/cost.py's prices, from the counts above
# and the seed's 100 ms of work per task (API Gateway 3.50, the API's Lambda 0.20, the
# worker 0.25, SQS 0.56, DynamoDB writes 4.12), without the handler time the
# benchmark measures, which is not a count.
COST_PER_MILLION_TASKS_USD = 8.63

# -- What a cold start carries

# The Lambda zip of `python3 dev.py package`: 148,663 bytes today, app.py, chalicelib,
# chalice's runtime part and fastjsonschema (26 KB of it). A ceiling a little above
# today's size, so that each small edit does not move it and a new module or
# dependency does.
# Raised from 150,000 to 165,000 with the dead-letter consumer (dead_letters.py), the
# waiters' registry (waiting.py), ASCII number parsing (numbers.py), the same-origin
# check (same_origin.py) and the DynamoDB lost-answer check (dynamo_retried.py).
PACKAGE_BYTES = 165_000
PACKAGE_TOP_LEVEL = {"app.py", "chalice", "chalicelib", "fastjsonschema"}

# Modules `import app` adds (local configuration): app and chalicelib's modules,
# chalice and chalice.app, and no boto3, botocore or sqlite3, which the backends
# import on first use.
# Raised from 28 to 32: app.py's handlers now use dead_letters, numbers (through
# validation), same_origin and waiting (through the service), each small.
IMPORT_APP_PROJECT_MODULES = 32
IMPORT_APP_THIRD_PARTY_MODULES = {"chalice", "chalice.app"}
# The standard library's modules among them, on the Python they were counted on
# (another Python's imports differ, so there the figure is not checked).
IMPORT_APP_STDLIB_MODULES = 66
IMPORT_APP_STDLIB_PYTHON = (3, 11)
