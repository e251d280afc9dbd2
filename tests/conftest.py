"""Shared fixtures: a tiny hand-built data set that meets every contract, and a simulated base."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

# Tests must never pick up a developer's own settings file or environment.
os.environ.setdefault("CHURN_SETTINGS_FILE", "/nonexistent/settings.yaml")


def tiny_tables() -> dict[str, pd.DataFrame]:
    """Two accounts, one ticket each, every table non-empty; valid under the contracts (as CSV text)."""
    return {
        "accounts": pd.DataFrame(
            {
                "account_id": ["A1", "A2"],
                "name": ["Acme Inc", "Globex Ltd"],
                "segment": ["smb", "enterprise"],
                "industry": ["software", "retail"],
                "region": ["emea", "north_america"],
                "plan": ["growth", "enterprise"],
                "seats": ["10", "400"],
                "arr": ["9000", "250000.5"],
                "contract_start": ["2024-01-01T00:00:00Z", "2023-06-15"],
                "billing": ["monthly", "annual"],
                "csm_owner": ["", "Laura Chen"],
                "exec_sponsor": ["no", "yes"],
            }
        ),
        "usage_daily": pd.DataFrame(
            {
                "account_id": ["A1", "A1", "A2"],
                "date": ["2024-01-02", "2024-01-03", "2024-01-02"],
                "active_users": ["3", "0", "250"],
                "logins": ["4", "0", "300"],
                "session_minutes": ["30.5", "0", "4000"],
                "key_feature_events": ["10", "0", "900"],
                "distinct_features_used": ["5", "0", "18"],
                "api_calls": ["0", "0", "12000"],
            }
        ),
        "tickets": pd.DataFrame(
            {
                "ticket_id": ["T1", "T2"],
                "account_id": ["A1", "A2"],
                "created_at": ["2024-01-05T10:00:00Z", "2024-01-06T09:30:00+01:00"],
                "priority": ["normal", "urgent"],
                "category": ["how_to", "billing"],
                "channel": ["email", "phone"],
            }
        ),
        "ticket_events": pd.DataFrame(
            {
                "ticket_id": ["T1", "T1", "T1", "T2"],
                "at": ["2024-01-05T12:00:00Z", "2024-01-06T12:00:00Z", "2024-01-07T12:00:00Z", "2024-01-06T12:00:00Z"],
                "kind": ["first_response", "resolved", "csat", "first_response"],
                "value": ["", "", "5", ""],
            }
        ),
        "ticket_messages": pd.DataFrame(
            {
                "message_id": ["M1", "M2"],
                "ticket_id": ["T1", "T2"],
                "sent_at": ["2024-01-05T10:00:00Z", "2024-01-06T08:40:00Z"],
                "author": ["customer", "customer"],
                "body": ["How do I add a user?", "We were charged twice."],
            }
        ),
        "surveys": pd.DataFrame(
            {"account_id": ["A2"], "answered_at": ["2024-02-01T10:00:00Z"], "kind": ["nps"], "score": ["4"], "comment": ["Too slow"]}
        ),
        "account_events": pd.DataFrame(
            {"account_id": ["A2"], "at": ["2024-01-06T10:00:00Z"], "kind": ["billing_dispute"], "value": [""]}
        ),
        "churn": pd.DataFrame({"account_id": ["A1"], "churned_at": ["2024-03-01T00:00:00Z"]}),
    }


def write_tables(tables: dict[str, pd.DataFrame], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


@pytest.fixture
def tiny() -> dict[str, pd.DataFrame]:
    return tiny_tables()


@pytest.fixture(scope="session")
def simulated(tmp_path_factory) -> Path:
    """A mid-sized simulated base (3,000 accounts x 730 days), shared by the integration tests."""
    from simulation.config import SimulationConfig
    from simulation.simulate import simulate

    out = tmp_path_factory.mktemp("sim") / "base"
    simulate(SimulationConfig(accounts=3000, days=730, seed=7), out)
    return out
