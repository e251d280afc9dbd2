"""The `churn` commands, one module per user task; pipelines/cli.py assembles them into `churn`.

data: simulate, ingest, validate, features. models: evaluate, train, promote, rollback,
train-table. operations: score, monitor, report, alerts, serve, retrain, schedule, prefect, demo.
escalations: escalations, follow-ups, policy suggest (CS works the queue and tunes its policy).
text: sentiment-train, sentiment-score. users: who may sign in to the CS workspace. Each module
lists its commands in `COMMANDS`; the console they share (JSON or human output, progress, Prefect)
is pipelines/console.py.
"""
