"""Grow the risk curve's boosters on a Dask cluster with lightgbm's Dask estimator (large panels).

LightGBM's Dask interface has no early stopping (each worker sees only its own slice of the
validation data), so the booster grows every round and the iteration early stopping would have
kept is found afterwards: the validation loss after each round is computed here on the whole
held-out slice, one tree at a time (as cheap as one prediction), and the same patience rule is
applied. The booster is then cut at that iteration, so the model that is saved, logged and served
is an ordinary LightGBM booster, as with local training.
"""

from __future__ import annotations

import numpy as np

from models.curve import early_stopping_iteration


def validation_losses(booster, X: np.ndarray, y: np.ndarray, rounds: int) -> np.ndarray:
    """Binary log loss on (X, y) after each of the first `rounds` iterations."""
    raw = np.zeros(len(y))
    losses = np.empty(rounds)
    for i in range(rounds):
        raw += booster.predict(X, raw_score=True, start_iteration=i, num_iteration=1)
        p = np.clip(1 / (1 + np.exp(-raw)), 1e-15, 1 - 1e-15)
        losses[i] = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    return losses


class DaskTrainer:
    """curve.BoosterTrainer on the cluster of `client` (a distributed.Client)."""

    name = "lightgbm.dask"

    def __init__(self, client) -> None:
        self.client = client

    def __call__(self, lgb_params, fit, valid, names, categorical, rounds, early_stopping_rounds):
        import dask.array as da
        import lightgbm as lgb
        from distributed import wait

        X, y = fit
        workers = max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))
        rows = max(1, -(-len(y) // (2 * workers)))  # two chunks per worker
        dX = da.from_array(X, chunks=(rows, X.shape[1]))
        dy = da.from_array(y, chunks=(rows,))
        dX, dy = self.client.persist([dX, dy])  # ship the data once
        wait([dX, dy])
        params = {k: v for k, v in lgb_params.items() if k not in ("num_threads", "verbose")}
        estimator = lgb.DaskLGBMClassifier(client=self.client, n_estimators=rounds, verbose=-1, **params)
        estimator.fit(dX, dy, feature_name=names, categorical_feature=categorical)
        booster = estimator.to_local().booster_
        if not early_stopping_rounds:
            return booster, rounds
        best = early_stopping_iteration(validation_losses(booster, *valid, rounds), early_stopping_rounds)
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), best
