"""Grow the risk curve's boosters on a Dask cluster with lightgbm's Dask estimator (large panels).

LightGBM's Dask interface has no early stopping (each worker sees only its own slice of the
validation data), so the booster grows every round and the iteration early stopping would have
kept is found afterwards: the validation loss after each round is computed here on the whole
held-out slice, one tree at a time (as cheap as one prediction), and the same patience rule is
applied. The booster is then cut at that iteration, so the model that is saved, logged and served
is an ordinary LightGBM booster, as with local training.

The rows are shuffled (with the model's seed) and cut into one chunk per worker, each shipped to its
worker. Distributed LightGBM finds each feature's bin boundaries on one worker, from that worker's
rows only, and the hazard model's rows come grouped by interval (all first intervals, then all
second ones, ...) and by cutoff: cut in that order, a worker could hold only the first intervals,
so the model could not tell the later ones apart (or saw the interval's length as constant and
never split on it), and which rows a worker held changed from run to run, and the model with it.
Shuffled, every worker holds a sample of all the rows. Which worker LightGBM ranks first still
varies (lightgbm.dask orders the workers by random task keys), so a run gives one of as many
models as there are orders of the workers, differing only in where bin boundaries fall within
the sampling noise.
"""

from __future__ import annotations

import numpy as np

from models import lgb_threads
from models.curve import early_stopping_iteration


def validation_losses(booster, X: np.ndarray, y: np.ndarray, rounds: int) -> np.ndarray:
    """Binary log loss on (X, y) after each of the first `rounds` iterations."""
    raw = np.zeros(len(y))
    losses = np.empty(rounds)
    for i in range(rounds):
        raw += lgb_threads.predict(booster, X, 0, raw_score=True, start_iteration=i, num_iteration=1)
        p = np.clip(1 / (1 + np.exp(-raw)), 1e-15, 1 - 1e-15)
        losses[i] = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    return losses


class DaskTrainer:
    """curve.BoosterTrainer on the cluster of `client` (a distributed.Client)."""

    name = "lightgbm.dask"

    def __init__(self, client) -> None:
        self.client = client

    def _chunks(self, X: np.ndarray, y: np.ndarray, seed: int):
        """X and y as Dask arrays of one chunk per worker, each chunk shipped to its worker (workers in
        address order): a shuffled sample of all the rows (see the module's docstring), and the same
        rows on the same worker in every run."""
        import dask.array as da

        order = np.random.default_rng(seed).permutation(len(y))
        workers = sorted(self.client.scheduler_info(n_workers=-1)["workers"]) or [None]
        xs, ys = [], []
        for rows, worker in zip(np.array_split(order, len(workers)), workers, strict=True):
            x_part, y_part = self.client.scatter([X[rows], y[rows]], workers=None if worker is None else [worker])
            xs.append(da.from_delayed(x_part, shape=(len(rows), X.shape[1]), dtype=X.dtype))
            ys.append(da.from_delayed(y_part, shape=(len(rows),), dtype=y.dtype))
        return da.concatenate(xs), da.concatenate(ys)

    def __call__(self, lgb_params, fit, valid, names, categorical, rounds, early_stopping_rounds):
        import lightgbm as lgb

        dX, dy = self._chunks(*fit, seed=lgb_params.get("seed", 0))
        params = {k: v for k, v in lgb_params.items() if k not in ("num_threads", "verbose")}
        estimator = lgb.DaskLGBMClassifier(client=self.client, n_estimators=rounds, verbose=-1, **params)
        estimator.fit(dX, dy, feature_name=names, categorical_feature=categorical)
        booster = estimator.to_local().booster_
        if not early_stopping_rounds:
            return booster, rounds
        best = early_stopping_iteration(validation_losses(booster, *valid, rounds), early_stopping_rounds)
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), best
