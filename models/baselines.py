"""Baselines that sit in the same backtest table as the model.

- rules: the warning signs (docs/escalation-practice.md) counted per snapshot (critical moments, detractor NPS, silence,
  usage collapse, risk events, repeated contacts, a near renewal); the count is turned into a
  probability by the churn rate each count had in the training rows.
- logistic: logistic regression per horizon on the same features (median imputation with missing
  indicators, scaling, one-hot categories); the curve is made monotone by a running maximum.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from core.vocabulary import CATEGORICAL, LABELS

TRIGGERS: dict[str, str] = {
    "critical moment in 90 days": "critical_moments_90d >= 1",
    "NPS detractor": "nps_detractor == 1",
    "no activity for 7+ days": "zero_usage_streak_days >= 7",
    "logins down 50%+": "logins_change_30d <= -0.5",
    "billing dispute, legal threat or security incident in 180 days": (
        "billing_dispute_180d + legal_threat_180d + security_incident_180d >= 1"
    ),
    "executive sponsor left": "sponsor_left_180d >= 1",
    "3 contacts on one issue": "same_issue_contacts_max_30d >= 3",
    "failed payment": "payment_failed_180d >= 1",
    "renewal within 60 days": "days_to_renewal <= 60",
}


def rule_count(panel: pd.DataFrame) -> np.ndarray:
    """How many triggers fire per snapshot (a missing value, or a feature the panel lacks, never fires)."""
    count = np.zeros(len(panel))
    for expression in TRIGGERS.values():
        names = set(re.findall(r"[a-z_][a-z0-9_]*", expression))
        if names <= set(panel.columns):
            count += panel.eval(expression).fillna(False).to_numpy(dtype=float)
    return count


class RulesBaseline:
    def fit(self, panel: pd.DataFrame) -> RulesBaseline:
        count = rule_count(panel)
        self.rates_ = {}
        for label in LABELS:
            y = panel[label].to_numpy(dtype="float64", na_value=np.nan)
            known = ~np.isnan(y)
            frame = pd.DataFrame({"c": np.minimum(count[known], 5), "y": y[known]})
            self.rates_[label] = frame.groupby("c")["y"].mean()
            self.rates_[label]["base"] = frame["y"].mean()
        return self

    def predict_curve(self, panel: pd.DataFrame) -> np.ndarray:
        count = np.minimum(rule_count(panel), 5)
        cols = [
            pd.Series(count).map(self.rates_[label].drop("base")).fillna(self.rates_[label]["base"]).to_numpy()
            for label in LABELS
        ]
        return np.maximum.accumulate(np.column_stack(cols), axis=1)


class LogisticBaseline:
    def __init__(self, features: list[str], c: float = 0.1):
        self.features = features
        self.c = c

    def _pipeline(self):
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        cats = [f for f in self.features if f in CATEGORICAL]
        nums = [f for f in self.features if f not in CATEGORICAL]
        prep = ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), nums),
                ("cat", OneHotEncoder(handle_unknown="ignore"), cats),
            ]
        )
        # Newton steps with a Cholesky solve: the same penalised likelihood as lbfgs, found in a few
        # iterations where rows far outnumber columns (a backtest fold: tens of thousands of rows, about 150 columns)
        return make_pipeline(prep, LogisticRegression(C=self.c, max_iter=2000, solver="newton-cholesky"))

    def _x(self, panel: pd.DataFrame) -> pd.DataFrame:
        X = panel[self.features].copy()
        for col in self.features:
            if col in CATEGORICAL:
                X[col] = X[col].astype("str")
            else:
                # heavy tails (counts, ARR) would dominate a linear model: compress them
                X[col] = np.sign(X[col].astype("float64")) * np.log1p(np.abs(X[col].astype("float64")))
        return X

    def fit(self, panel: pd.DataFrame) -> LogisticBaseline:
        """One regression per horizon; a horizon whose known outcomes are all one class predicts
        that rate, and one without any known outcome (a short training history) predicts NaN."""
        X = self._x(panel)
        self.models_ = []
        for label in LABELS:
            y = panel[label].to_numpy(dtype="float64", na_value=np.nan)
            known = ~np.isnan(y)
            if 0 < y[known].sum() < known.sum():
                self.models_.append(self._pipeline().fit(X[known], y[known].astype(int)))
            else:  # nothing to regress on: the one class's rate, or NaN without any known outcome
                self.models_.append(float(np.mean(y[known])) if known.any() else np.nan)
        return self

    def predict_curve(self, panel: pd.DataFrame) -> np.ndarray:
        X = self._x(panel)
        cols = [m.predict_proba(X)[:, 1] if hasattr(m, "predict_proba") else np.full(len(X), m) for m in self.models_]
        return np.maximum.accumulate(np.column_stack(cols), axis=1)
