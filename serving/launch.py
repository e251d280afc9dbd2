"""What `churn serve` serves: the settings resolved (after `churn demo`, the demo's scores) and
checked before BentoML starts, since a worker that fails to load is restarted in a loop by BentoML
for minutes instead of the command ending with the reason."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

from core.errors import ChurnError, InputError
from core.io import write_json
from core.settings import Settings
from core.urls import absolute_url, sqlite_path

#: where `churn demo` records its outputs, under DATA_DIR: `churn serve` serves them when not told otherwise
DEMO_POINTER = "last_demo.json"

#: the project folder: the server runs from it, so BentoML imports the service from this checkout
ROOT = Path(__file__).resolve().parent.parent

#: what `bentoml serve` loads: the service configured for serving (serving/server.py); bentofile.yaml names it too
SERVICE = "serving.server:ChurnService"


def serve_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The `bentoml serve` command line (of this interpreter's environment) for the scoring API,
    run with `cwd=ROOT` by `churn serve` and by serving/process.py."""
    return [str(Path(sys.executable).with_name("bentoml")), "serve", SERVICE, "--port", str(port), "--host", host]


def record_demo(settings: Settings, out: Path, result: dict, workspace: dict | None = None) -> Path:
    """Write DATA_DIR/last_demo.json: the demo's scores, model and report, as absolute locations, and
    the workspace's address and demo sign-ins when given (then readable by its owner only: it holds
    their passwords)."""
    pointer = Path(settings.data_dir) / DEMO_POINTER
    record = {
        "scores_dir": str((out / "scores").resolve()),
        "report": str(Path(result["report"]).resolve()),
        "mlflow_tracking_uri": absolute_url(settings.mlflow_tracking_uri),
        "store_url": absolute_url(settings.store_url),
        "model": result["model"],
        "champion": result["champion"],
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_json({**record, "workspace": workspace} if workspace is not None else record, pointer)
    if workspace is not None:
        pointer.chmod(0o600)
    return pointer


def resolve(settings: Settings, say=lambda message: print(message, file=sys.stderr)) -> Settings:
    """`settings`, with the last demo's scores (DATA_DIR/last_demo.json) when CHURN_SCORES_DIR is not
    set and DATA_DIR/scores holds no snapshot: `make demo` then `make serve` needs no setting. The
    demo is served on its own clock (`demo_clock_offset`) unless CHURN_CLOCK_OFFSET_SECONDS is set."""
    record = _last_demo(settings)
    if record is None:
        return settings
    say(
        f"CHURN_SCORES_DIR not set and {Path(settings.data_dir) / 'scores'} has no snapshot: serving the last "
        f"demo's scores ({record['scores_dir']}, recorded in {Path(settings.data_dir) / DEMO_POINTER})"
    )
    update: dict = {"scores_dir": Path(record["scores_dir"])}
    offset = None if "clock_offset_seconds" in settings.model_fields_set else demo_clock_offset(record)
    if offset is not None:  # without the snapshot there is no clock to set: `check` then says which setting is wrong
        update["clock_offset_seconds"] = offset
        say(_on_demo_clock(offset))
    return settings.model_copy(update=update)


def use_clock(settings: Settings, say=lambda message: print(message, file=sys.stderr)) -> None:
    """The clock of a command that works the store (`churn escalations`, `churn follow-ups`, `churn
    alerts`): CHURN_CLOCK_OFFSET_SECONDS; unset, the last demo's clock (the one `churn serve` runs
    it on) when the store is the one the demo wrote to and the demo's scores are what would be served."""
    from core import clock

    offset = settings.clock_offset_seconds
    if "clock_offset_seconds" not in settings.model_fields_set:
        try:
            record = _last_demo(settings)
        except InputError:  # a broken demo record is `churn serve`'s to report, not a reason to refuse the store
            record = None
        mine = record is None or record.get("store_url") != absolute_url(settings.store_url)
        demo = None if mine else demo_clock_offset(record)
        if demo is not None:
            offset = demo
            say(_on_demo_clock(offset))
    clock.set_offset(offset)


def demo_clock_offset(record: dict) -> float | None:
    """How far the demo's clock runs behind the wall clock: it read the end of the demo's data when
    the demo finished (its record's `finished_at`) and runs on from there, in every process that
    reads the record (the API, its workspace and relay, the store's commands), across restarts.
    On the wall clock every escalation the demo opened read "overdue by 336 days" and the relay
    expired them all. None when the demo's snapshot is gone."""
    import pandas as pd

    snapshot = Path(record["scores_dir"]) / "features.parquet"
    if not snapshot.is_file():
        return None
    ends = pd.Timestamp(pd.read_parquet(snapshot, columns=["cutoff"])["cutoff"].max())
    try:
        behind = (pd.Timestamp(record["finished_at"]) - ends).total_seconds()
    except (KeyError, ValueError, TypeError):  # no (or no zoned) `finished_at`: the clock starts now
        behind = (pd.Timestamp.now(tz="UTC") - ends).total_seconds()
    return max(behind, 0.0)


def _on_demo_clock(offset: float) -> str:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=offset)
    return (
        f"on the last demo's clock: {now:%Y-%m-%d %H:%M} UTC, its data's end when the demo finished, running on "
        "(CHURN_CLOCK_OFFSET_SECONDS=0 for the wall clock; `churn demo` again starts it afresh)"
    )


def scores_folder(settings: Settings, given: Path | None = None, say=lambda message: None) -> tuple[Path, str]:
    """The `churn score` output a command reads, and how to name it in a message: --scores
    (`given`), else CHURN_SCORES_DIR, else DATA_DIR/scores, else, as `churn serve` does, the
    last demo's scores (`make demo` then `churn report` needs no flag; said through `say`)."""
    if given is not None:
        return Path(given), "--scores"
    if settings.scores_dir is not None:
        return Path(settings.scores_dir), "CHURN_SCORES_DIR"
    default = Path(settings.data_dir) / "scores"
    try:
        record = _last_demo(settings)
    except InputError:  # a broken record: the default folder's message says what to do
        record = None
    demo = Path(record["scores_dir"]) if record is not None else None
    if demo is not None and (demo / "scores.parquet").is_file():
        say(f"reading the last demo's scores ({demo}): CHURN_SCORES_DIR is not set and {default} has no snapshot")
        return demo, "the last demo's scores"
    return default, "the default scores folder"


def _last_demo(settings: Settings) -> dict | None:
    """The last demo's record (DATA_DIR/last_demo.json) when the settings leave the scores to it:
    CHURN_SCORES_DIR unset and DATA_DIR/scores without a snapshot."""
    pointer = Path(settings.data_dir) / DEMO_POINTER
    if (
        "scores_dir" in settings.model_fields_set
        or (Path(settings.data_dir) / "scores" / "features.parquet").is_file()
        or not pointer.is_file()
    ):
        return None
    try:
        record = json.loads(pointer.read_text())
        str(record["scores_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{pointer}: not the record `churn demo` writes; delete it, or set CHURN_SCORES_DIR") from None
    return record


def check(settings: Settings) -> str:
    """What the API will load, checked before BentoML starts (its workers would fail and be
    restarted in a loop): the scores, the model, the store. Each problem is an InputError naming the
    setting and the fix; the answer describes what will be served."""
    import pandas as pd

    folder = Path(settings.scores_dir or Path(settings.data_dir) / "scores")
    if not (folder / "features.parquet").is_file():
        raise InputError(
            f"CHURN_SCORES_DIR {folder}: no features.parquet; run `churn score --out {folder}` (or `churn demo`) first, "
            "or set CHURN_SCORES_DIR to the output folder of `churn score`"
        )
    cutoffs = pd.read_parquet(folder / "features.parquet", columns=["cutoff"])["cutoff"]
    tracking = absolute_url(settings.mlflow_tracking_uri)
    database = sqlite_path(tracking) if "://" in tracking else None
    if database is not None and not database.is_file():
        raise InputError(
            f"CHURN_MLFLOW_TRACKING_URI {settings.mlflow_tracking_uri}: no such database ({tracking}); run `churn demo` "
            "(or `churn train` and `churn promote`) from this folder, or set CHURN_MLFLOW_TRACKING_URI"
        )
    from models import registry

    registry.point_at(tracking)
    uri = settings.model_uri
    try:
        registry.load_curve(uri)  # what each worker does first
        described = registry.describe(uri)
    except Exception as exc:  # noqa: BLE001  (MLflow raises several types; the operator needs the URI and the fix)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"CHURN_MODEL_URI {uri}: cannot load it from {settings.mlflow_tracking_uri} ({reason}); train and promote a model "
            "first (`churn train`, `churn promote`, or `churn demo`), or set CHURN_MODEL_URI"
        ) from None
    from escalation.policy import load_policy
    from escalation.store import Store

    try:
        Store(settings.store_url, load_policy(settings.config_dir)).close()
    except ChurnError:
        raise
    except Exception as exc:  # noqa: BLE001  (SQLAlchemy's errors: the URL and the reason are what the operator needs)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"CHURN_STORE_URL {settings.store_url}: cannot open it ({reason}); set CHURN_STORE_URL to a database this "
            "machine can reach (default sqlite:///data/store.db)"
        ) from None
    version = f" (version {described['version']})" if described else ""
    return (
        f"{uri}{version} from {settings.mlflow_tracking_uri}, scores of {len(cutoffs):,} accounts as of "
        f"{pd.Timestamp(cutoffs.max()).date() if len(cutoffs) else '-'} from {folder}, store {settings.store_url}"
    )


def absolute_locations(settings: Settings) -> dict[str, str]:
    """CHURN_* locations of `settings` as absolute paths (relative ones are read from the current folder)."""
    out = {
        "CHURN_DATA_DIR": str(Path(settings.data_dir).resolve()),
        "CHURN_CONFIG_DIR": str(Path(settings.config_dir).resolve()),
    }
    for key, value in (
        ("CHURN_SCORES_DIR", settings.scores_dir),
        ("CHURN_TEXT_CACHE", settings.text_cache),
        ("CHURN_SENTIMENT_HEAD", settings.sentiment_head),
        ("CHURN_ENCODER_CACHE", settings.encoder_cache),
        ("CHURN_WORKSPACE_USERS", settings.workspace_users),
        ("CHURN_REPORT_FILE", settings.report_file),
    ):
        if value is not None:
            out[key] = str(Path(value).expanduser().resolve())
    for key, url in (
        ("CHURN_MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri),
        ("CHURN_STORE_URL", settings.store_url),
    ):
        if (absolute := absolute_url(url)) != url:
            out[key] = absolute
    return out
