"""Entry points: the `churn` command line and (later) the Prefect flows that wire the pieces."""
