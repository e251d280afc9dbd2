"""Build the snapshot panel from a data folder and write it (the I/O around features/).

The two big tables (usage_daily, ticket_messages) are read, validated and turned into features one
block of accounts at a time, so memory is bounded by the block, not the customer base; the other
tables are small and read whole. Every block's contract violations are collected and reported
together, and nothing is written unless every block passed.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from core.contracts import CONTRACTS, TableFiles, coerce_column, validate_tables
from core.errors import ContractError, InputError, Violation, format_keys
from core.io import atomic_dir, write_json
from features.context import FeatureParams
from features.panel import LABELS, TIME_COLUMNS, build_features, data_range_of, make_cutoffs, make_labels, parse_every, snapshot_keys
from features.registry import feature_dictionary
from features.text.cache import TextCache
from features.text.sentiment import SentimentModel, score_texts
from features.text.outcomes import predict_outcomes, ticket_outcome_inputs
from features.text.signals import SignalParams, message_signals

SMALL = ("accounts", "churn", "surveys", "account_events", "tickets", "ticket_events")
BIG = ("usage_daily", "ticket_messages")


def load_feature_params(config_dir: Path) -> FeatureParams:
    """FeatureParams from `config_dir/features.yaml` (defaults when the file is absent)."""
    path = Path(config_dir) / "features.yaml"
    if not path.is_file():
        return FeatureParams()
    try:
        return FeatureParams(**(yaml.safe_load(path.read_text()) or {}))
    except ValidationError as exc:
        problems = "; ".join(f"key '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())
        raise InputError(f"{path}: {problems}") from None


def read_snapshots(features_dir: Path) -> pd.DataFrame:
    """The panel written by `churn features`, sorted by (cutoff, account_id)."""
    folder = Path(features_dir) / "snapshots"
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise InputError(f"--features {features_dir}: no snapshots/*.parquet; expected the output of `churn features`")
    panel = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return panel.sort_values(["cutoff", "account_id"], kind="stable").reset_index(drop=True)


class _Violations:
    """Violations gathered over blocks, merged per (table, column, rule)."""

    def __init__(self) -> None:
        self.found: dict[tuple[str, str, str], Violation] = {}

    def add(self, violations: list[Violation]) -> None:
        for v in violations:
            key = (v.table, v.column, v.rule)
            old = self.found.get(key)
            self.found[key] = v if old is None else Violation(v.table, v.column, v.rule, v.expected, (old.keys + v.keys)[:5], old.count + v.count)

    def raise_if_any(self) -> None:
        if self.found:
            raise ContractError(list(self.found.values()))


def _load_small(files: TableFiles) -> tuple[dict[str, pd.DataFrame], list[str]]:
    raw, notes = {}, []
    for name in SMALL:
        frame = files.read(name)
        if frame is None:
            if CONTRACTS[name].required:
                raise InputError(f"required table '{name}' not found in {files.data_dir}; expected {name}.parquet or {name}.csv")
            notes.append(f"table '{name}' not found in {files.data_dir}; treated as empty")
            continue
        raw[name] = frame
    return validate_tables(raw, tables=SMALL), notes


def _time_column(files: TableFiles, table: str) -> pd.Series:
    column = TIME_COLUMNS[table]
    frame = files.read(table, columns=[column])
    if frame is None or column not in frame.columns:
        return pd.Series(dtype="datetime64[us, UTC]")
    return coerce_column(table, column, frame[column])


def _global_checks(files: TableFiles, small: dict[str, pd.DataFrame], seen: dict[str, int], message_hashes: list[np.ndarray], found: _Violations) -> None:
    """What a block cannot see: rows pointing at no known account or ticket, ids repeated across blocks."""
    for table, column, parent in (("usage_daily", "account_id", "accounts"), ("ticket_messages", "ticket_id", "tickets")):
        if files.count(table) != seen.get(table, 0):
            ids = files.read(table, columns=[column])[column].astype("str")
            orphans = ids[~ids.isin(small[parent][column])]
            if len(orphans):
                found.add([Violation(table, column, "references", f"every {column} to exist in {parent}.{column}", format_keys(orphans), len(orphans))])
    if message_hashes:
        hashes = np.concatenate(message_hashes)
        if len(np.unique(hashes)) != len(hashes):
            ids = files.read("ticket_messages", columns=["message_id"])["message_id"].astype("str")
            dup = ids[ids.duplicated(keep=False)]
            found.add([Violation("ticket_messages", "message_id", "unique_key", "each key at most once", format_keys(dup.unique()), len(dup))])


def add_message_signals(
    tables: dict[str, pd.DataFrame], model: SentimentModel, cache: TextCache | None, params: SignalParams | None = None
) -> dict[str, pd.DataFrame]:
    """The tables plus `message_signals` and `ticket_outcomes` (predicted CSAT/CES), for tables held in memory."""
    signals = _signals(tables, model, cache, params)
    inputs = ticket_outcome_inputs(tables["tickets"], tables["ticket_events"], signals)
    return tables | {"message_signals": signals, "ticket_outcomes": predict_outcomes(inputs)}


def _signals(tables: dict[str, pd.DataFrame], model: SentimentModel, cache: TextCache | None, params: SignalParams | None = None) -> pd.DataFrame:
    """Signals of every message; only customer messages go through the model (no feature reads an
    agent's tone, and agents write half the messages)."""
    messages = tables["ticket_messages"].reset_index(drop=True)
    customer = (messages["author"] == "customer").to_numpy()
    scored, emb = score_texts(messages.loc[customer, "body"].tolist(), model, cache)
    scores = pd.DataFrame({"label": pd.Series("neutral", index=messages.index, dtype="str"), "score": np.nan})
    scores.loc[customer, "label"] = scored["label"].to_numpy()
    scores.loc[customer, "score"] = scored["score"].to_numpy()
    embeddings = np.zeros((len(messages), emb.shape[1] if emb.size else 384), dtype=np.float32)
    embeddings[customer] = emb
    return message_signals(messages, tables["tickets"], scores, embeddings, params)


def run_features(
    data: Path,
    out: Path,
    *,
    start: str | None = None,
    end: str | None = None,
    every: str = "30d",
    params: FeatureParams | None = None,
    text: tuple[SentimentModel, TextCache | None] | None = None,
    progress: Callable[[str, float], None] | None = None,
    as_of: str | None = None,
) -> dict:
    """Validate `data`, build the panel block by block, write snapshots/ and feature_dictionary.json.
    `as_of`: one cutoff only, that date ("latest": the end of the data), for scoring."""
    started = time.perf_counter()
    params = params or FeatureParams()
    parse_every(every)  # a bad flag fails before any data is read
    files = TableFiles(data)
    if files.path("usage_daily") is None:
        raise InputError(f"required table 'usage_daily' not found in {data}; expected usage_daily.parquet or usage_daily.csv")
    small, notes = _load_small(files)
    if files.path("ticket_messages") is None:
        notes.append(f"table 'ticket_messages' not found in {data}; treated as empty")
    times = {t: small[t][TIME_COLUMNS[t]] for t in SMALL if t in TIME_COLUMNS}
    times.update({t: _time_column(files, t) for t in BIG})
    data_start, data_end = data_range_of(times)
    if as_of is not None:
        day = data_end.date() if as_of == "latest" else as_of
        cutoffs = make_cutoffs(data_start, data_end, start=day, end=day, every=every)
    else:
        cutoffs = make_cutoffs(data_start, data_end, start=start, end=end, every=every)
    keys = snapshot_keys(small, cutoffs)
    if progress:
        progress("load", time.perf_counter() - started)

    ids = np.sort(small["accounts"]["account_id"].to_numpy(dtype=object))
    blocks = [ids[lo : lo + params.account_block] for lo in range(0, len(ids), params.account_block)]
    tickets_all, events_all = small["tickets"], small["ticket_events"]
    found, seen, hashes = _Violations(), {}, []
    label_sums = {name: [0, 0] for name in LABELS}
    n_rows = 0

    def block_tables(block: np.ndarray, big: tuple[str, ...]) -> dict[str, pd.DataFrame] | None:
        """The block's tables with `big` read and validated (violations are collected; None when it has any)."""
        accounts = small["accounts"][small["accounts"]["account_id"].isin(block)]
        tickets = tickets_all[tickets_all["account_id"].isin(block)]
        where = {"usage_daily": ("account_id", block), "ticket_messages": ("ticket_id", tickets["ticket_id"].to_numpy(dtype=object))}
        raw = {}
        for name in big:
            frame = files.read_where(name, *where[name])
            if frame is not None:
                raw[name] = frame
                seen[name] = seen.get(name, 0) + len(frame)
        try:
            clean = validate_tables(raw, tables=big, context={"accounts": accounts, "tickets": tickets, "churn": small["churn"]})
        except ContractError as exc:
            found.add(exc.violations)
            return None
        if "ticket_messages" in clean:
            hashes.append(pd.util.hash_array(clean["ticket_messages"]["message_id"].to_numpy(dtype=object)))
        return small | clean | {"tickets": tickets, "ticket_events": events_all[events_all["ticket_id"].isin(tickets["ticket_id"])]}

    with tempfile.TemporaryDirectory(prefix=".text-", dir=Path(out).parent if Path(out).parent.exists() else None) as scratch, \
            atomic_dir(Path(out) / "snapshots") as tmp:
        outcomes = None
        if text is not None:
            # pass 1: text signals per block, then predicted CSAT/CES fitted across every account
            inputs = []
            for b, block in enumerate(blocks):
                t0 = time.perf_counter()
                tables = block_tables(block, ("ticket_messages",))
                if tables is None or found.found:
                    continue
                signals = _signals(tables, *text)
                signals.to_parquet(Path(scratch) / f"signals-{b:05d}.parquet", index=False)
                # pass 2 takes the validated messages from here (without bodies: no family reads them)
                tables["ticket_messages"].drop(columns="body").to_parquet(Path(scratch) / f"messages-{b:05d}.parquet", index=False)
                inputs.append(ticket_outcome_inputs(tables["tickets"], tables["ticket_events"], signals))
                if progress:
                    progress(f"text {b + 1}/{len(blocks)}", time.perf_counter() - t0)
            if not found.found:
                t0 = time.perf_counter()
                if inputs:
                    outcomes = predict_outcomes(pd.concat(inputs, ignore_index=True))
                else:
                    outcomes = pd.DataFrame(columns=["ticket_id", "account_id", "at", "predicted_csat", "predicted_ces"])
                if progress:
                    progress("CSAT/CES", time.perf_counter() - t0)
        for b, block in enumerate(blocks):
            t0 = time.perf_counter()
            tables = block_tables(block, BIG if text is None else ("usage_daily",))
            if tables is None or found.found:
                continue  # keep validating the remaining blocks, build nothing more
            if text is not None:
                tables = tables | {"ticket_messages": pd.read_parquet(Path(scratch) / f"messages-{b:05d}.parquet"),
                                   "message_signals": pd.read_parquet(Path(scratch) / f"signals-{b:05d}.parquet"),
                                   "ticket_outcomes": outcomes[outcomes["account_id"].isin(block)]}
            block_keys = keys[keys["account_id"].isin(block)].reset_index(drop=True)
            panel = build_features(tables, block_keys, params)
            panel = pd.concat([panel, make_labels(block_keys, small["churn"], data_end)], axis=1)
            panel.to_parquet(tmp / f"part-{b:05d}.parquet", index=False)
            n_rows += len(panel)
            for name in LABELS:
                label_sums[name][0] += int(panel[name].sum())
                label_sums[name][1] += int(panel[name].notna().sum())
            if progress:
                progress(f"block {b + 1}/{len(blocks)}", time.perf_counter() - t0)
        _global_checks(files, small, seen, hashes, found)  # each big table was read and counted in every block, even after a violation
        found.raise_if_any()  # inside atomic_dir: the temporary folder goes, nothing is written
    write_json(feature_dictionary(), Path(out) / "feature_dictionary.json")
    summary = {
        "data": str(Path(data).resolve()),  # absolute: `churn evaluate` finds churn times and truth/ from here
        "out": str(out),
        "data_start": data_start.isoformat(),
        "data_end": data_end.isoformat(),
        "cutoffs": [c.date().isoformat() for c in cutoffs],
        "snapshots": n_rows,
        "accounts": int(keys["account_id"].nunique()),
        "features": len(feature_dictionary()),
        "label_rates": {k: (round(s / n, 4) if n else None) for k, (s, n) in label_sums.items()},
        "labelled": {k: n for k, (_, n) in label_sums.items()},
        "notes": notes + ([] if text is not None else ["text signals not computed (--no-text): text features are null"]),
        "text_model": text[0].key if text is not None else None,
        "params": params.model_dump(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json(summary, Path(out) / "panel_summary.json")
    return summary
