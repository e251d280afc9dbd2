"""The CS workspace over real HTTP (serving/workspace): sign-in, sessions, CSRF on every form, roles,
the queue's actions writing what the API writes, the report, `churn users`, the users table added
to an old store, and the workspace mounted in a real `bentoml serve` next to the bearer-token API.

The workspace runs in uvicorn on a thread (as in the service: a Starlette application under /app),
answering from a ServingRuntime of a small champion base (tests/conftest.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import html as htmllib
import io
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from escalation.store import Store
from tests.integration.test_store_alerts import HOUR, PACKAGE, make_decision, make_policy

pytestmark = pytest.mark.slow

PASSWORDS = {"laura": "laura-secret-1", "lead": "lead-secret-1", "vic": "viewer-secret-1", "admin": "admin-secret-1"}
PEOPLE = {
    "laura": ("Laura Chen", "csm"),
    "lead": ("Lee Okafor", "cs_lead"),
    "vic": ("Vic Viewer", "viewer"),
    "admin": ("Ada Admin", "admin"),
}


# ------------------------------------------------------------------------------------ helpers


@contextlib.contextmanager
def serving(app, *, timeout: float = 120) -> Iterator[str]:
    """`app` in uvicorn on a free port of 127.0.0.1 (a thread of this process), its lifespan run; the base URL."""
    import uvicorn

    from serving.process import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"workspace-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the workspace did not start on port {port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def flash_error(html: str) -> str:
    found = re.search(r'class="flash flash-error"[^>]*>([^<]*)<', html)
    return htmllib.unescape(found.group(1)) if found else ""


def token_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


class Visitor:
    """One browser: its own cookies, no redirects followed (the tests look at each answer)."""

    def __init__(self, base: str):
        self.client = httpx.Client(base_url=base, follow_redirects=False, timeout=30)

    def get(self, path: str, **kw) -> httpx.Response:
        return self.client.get(path, **kw)

    def post(self, path: str, data: dict | None = None) -> httpx.Response:
        return self.client.post(path, data=data or {})

    def token(self, path: str = "/app/") -> str:
        page = self.get(path)
        assert page.status_code == 200, (path, page.status_code, page.text[:300])
        return token_of(page.text)

    def sign_in(self, username: str, password: str | None = None, next_: str | None = None) -> httpx.Response:
        token = token_of(self.get("/app/login").text)
        form = {
            "username": username,
            "password": PASSWORDS[username] if password is None else password,
            "csrf_token": token,
        }
        if next_ is not None:
            form["next"] = next_
        return self.post("/app/login", form)

    def act(self, path: str, **form) -> httpx.Response:
        """POST a queue form with this session's token, as the page would."""
        return self.post(path, {"csrf_token": self.token(), "next": "/app/", **form})

    def close(self) -> None:
        self.client.close()


def record(url: str, account: str, *, window: int = 240, ago: dt.timedelta = HOUR, owner: str = "Laura Chen") -> int:
    """An escalation of `account` owned by `owner`, opened `ago`, with a response window of `window` minutes."""
    now = dt.datetime.now(dt.UTC)
    decision = dataclasses.replace(make_decision(account, at=now - ago), response_window_minutes=window, owner=owner)
    with Store(url, make_policy()) as store:
        return store.record(decision, PACKAGE, now - ago).escalation_id


def comparable(detail: dict) -> dict:
    """An escalation's state without what differs between two twins: ids, times, the account."""
    varying = {"id", "account_id", "dedupe_key", "opened_at", "updated_at", "respond_by", "last_decision_id"}
    return {
        **{k: v for k, v in detail.items() if k not in varying | {"history", "follow_ups"}},
        "history": [
            {k: v for k, v in change.items() if k not in {"id", "escalation_id", "at"}} for change in detail["history"]
        ],
        "follow_ups": [{"done": f["done_at"] is not None, "done_by": f["done_by"]} for f in detail["follow_ups"]],
    }


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    from tests.conftest import champion_environment

    with champion_environment(tmp_path_factory.mktemp("workspace")) as env:
        yield env


@pytest.fixture(scope="module")
def store_url(environment) -> str:
    return environment["env"]["CHURN_STORE_URL"]


@pytest.fixture(scope="module")
def people(store_url) -> None:
    """The users of PEOPLE in the store, with PASSWORDS."""
    from serving.workspace.auth import hash_password

    with Store(store_url, make_policy()) as store:
        for username, (name, role) in PEOPLE.items():
            if store.user(username) is None:
                store.add_user(username, name, role, hash_password(PASSWORDS[username]))


@pytest.fixture(scope="module")
def runtime(environment, people):
    from core.settings import load_settings
    from serving.runtime import ServingRuntime

    return ServingRuntime(load_settings(), text=False)


@pytest.fixture(scope="module")
def base(runtime) -> Iterator[str]:
    from serving.workspace.app import standalone

    with serving(standalone(runtime.settings, runtime)) as url:
        yield url


@pytest.fixture
def visitor(base) -> Iterator[Visitor]:
    v = Visitor(base)
    yield v
    v.close()


@pytest.fixture
def csm(base) -> Iterator[Visitor]:
    v = Visitor(base)
    assert v.sign_in("laura").status_code == 303
    yield v
    v.close()


@pytest.fixture
def store(store_url) -> Iterator[Store]:
    with Store(store_url, make_policy()) as opened:
        yield opened


# ------------------------------------------------------------------------------------ sign-in


def test_pages_need_a_sign_in_and_a_good_one_lands_on_the_queue(visitor):
    first = visitor.get("/app/")
    assert first.status_code == 303 and first.headers["location"] == "/app/login?next=%2Fapp%2F"
    login = visitor.get("/app/login")
    cookie = login.headers["set-cookie"]
    assert login.status_code == 200 and 'type="password"' in login.text
    assert "HttpOnly" in cookie.replace("httponly", "HttpOnly") and "samesite=lax" in cookie.lower()
    assert "path=/app" in cookie and "secure" not in cookie.lower()  # Secure only with CHURN_WORKSPACE_SECURE_COOKIES
    pre_session = visitor.client.cookies["churn_workspace"]
    signed = visitor.post(
        "/app/login",
        {"username": "laura", "password": PASSWORDS["laura"], "csrf_token": token_of(login.text), "next": "/app/"},
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/app/"
    assert visitor.client.cookies["churn_workspace"] != pre_session  # a new session at sign-in
    queue = visitor.get("/app/")
    assert queue.status_code == 200 and "Laura Chen" in queue.text and "My queue" in queue.text
    # the security headers every page carries
    assert "frame-ancestors 'none'" in queue.headers["content-security-policy"]
    assert queue.headers["x-content-type-options"] == "nosniff" and queue.headers["cache-control"] == "no-store"
    # signing out ends the session
    out = visitor.post("/app/logout", {"csrf_token": token_of(queue.text)})
    assert out.status_code == 303 and visitor.get("/app/").status_code == 303


def test_a_failed_sign_in_says_the_same_whatever_was_wrong_and_waits(visitor):
    answers = []
    for username, password in (("laura", "wrong-password"), ("nobody-here", "wrong-password"), ("laura", "")):
        started = time.perf_counter()
        answer = visitor.sign_in(username, password)
        answers.append((answer, time.perf_counter() - started))
    for answer, seconds in answers:
        assert answer.status_code == 200 and "Wrong username or password." in answer.text
        assert seconds >= 0.5  # FAILED_SIGN_IN_DELAY
        error = re.search(r'id="login-error">([^<]*)<', answer.text).group(1)
        assert error == "Wrong username or password."  # no hint whether the user exists
    assert visitor.get("/app/").status_code == 303  # still not signed in


def test_next_stays_inside_the_workspace(visitor):
    for target, landing in (
        ("/app/search?q=A0", "/app/search?q=A0"),
        ("//evil.example/x", "/app/"),
        ("https://evil.example", "/app/"),
        ("/score", "/app/"),
    ):
        answer = visitor.sign_in("laura", next_=target)
        assert answer.status_code == 303 and answer.headers["location"] == landing, target
        visitor.post("/app/logout", {"csrf_token": visitor.token("/app/")})


# ------------------------------------------------------------------------------------ CSRF and roles


def test_every_post_without_the_sessions_token_is_refused_and_writes_nothing(base, csm, store, store_url):
    from serving.workspace.app import create_app

    escalation = record(store_url, "WS-CSRF")
    before = (store.escalation_detail(escalation), store.counts(), store.feedback())
    # every POST route of the application, each without a token and with a wrong one
    app = create_app(None)  # routes only: nothing is read until it serves
    posts = [r.path for r in app.routes if "POST" in (getattr(r, "methods", None) or ())]
    assert len(posts) == 6, posts
    for path in posts:
        url = "/app" + path.replace("{escalation_id:int}", str(escalation))
        form = {"username": "laura", "password": PASSWORDS["laura"], "outcome": "saved", "rating": "5"}
        for token in (None, "forged-" + "x" * 40, ""):
            answer = csm.post(url, form if token is None else {**form, "csrf_token": token})
            assert answer.status_code == 403, (url, token, answer.status_code)
            assert "Nothing was changed" in answer.text
    # a token from another user's session is no better
    other = Visitor(base)
    other.sign_in("lead")
    stolen = other.token()
    assert csm.post(f"/app/escalations/{escalation}/acknowledge", {"csrf_token": stolen}).status_code == 403
    other.close()
    assert (store.escalation_detail(escalation), store.counts(), store.feedback()) == before
    # a sign-in without the sign-in page's token is refused too: a fresh visitor posting straight to it
    fresh = Visitor(base)
    refused = fresh.post("/app/login", {"username": "laura", "password": PASSWORDS["laura"]})
    assert refused.status_code == 403 and fresh.get("/app/").status_code == 303
    fresh.close()


def test_a_viewer_sees_the_queue_without_actions_and_cannot_act(base, store, store_url):
    escalation = record(store_url, "WS-VIEW", owner="Laura Chen")
    viewer = Visitor(base)
    assert viewer.sign_in("vic").status_code == 303
    page = viewer.get("/app/")
    assert page.status_code == 200 and "Vic Viewer" in page.text
    assert "/acknowledge" not in page.text and "/resolve" not in page.text and "/done" not in page.text
    before = (store.escalation_detail(escalation), store.counts(), store.feedback())
    for path, form in (
        (f"/app/escalations/{escalation}/acknowledge", {}),
        (f"/app/escalations/{escalation}/resolve", {"outcome": "saved"}),
        (f"/app/follow-ups/{escalation}/done", {}),
        (f"/app/escalations/{escalation}/feedback", {"rating": "4"}),
    ):
        answer = viewer.act(path, **form)
        assert answer.status_code == 403 and "Read only" in answer.text, path
    assert (store.escalation_detail(escalation), store.counts(), store.feedback()) == before
    assert viewer.get("/app/book").status_code == 403
    viewer.close()


def test_the_book_view_is_for_leads(base, csm):
    refused = csm.get("/app/book")
    assert refused.status_code == 403 and "CS leads" in refused.text
    lead = Visitor(base)
    lead.sign_in("lead")
    assert lead.get("/app/book").status_code == 200
    assert lead.get("/app/book?horizon=45").status_code == 400  # a horizon the model does not have, named
    lead.close()


# ------------------------------------------------------------------------------------ the queue


def test_the_queue_is_mine_most_urgent_first_and_a_lead_sees_everyones(base, csm, store_url):
    late = record(store_url, "WS-LATE", window=30, ago=2 * HOUR)
    soon = record(store_url, "WS-SOON", window=90, ago=HOUR)
    later = record(store_url, "WS-LATER", window=600, ago=HOUR)
    theirs = record(store_url, "WS-THEIRS", owner="Sam Ortiz")
    page = csm.get("/app/").text
    order = [int(i) for i in re.findall(r'id="escalation-(\d+)"', page)]
    assert order.index(late) < order.index(soon) < order.index(later) and theirs not in order
    card = page[page.index(f'id="escalation-{late}"') :]
    card = card[: card.index("</li>")]
    assert re.search(rf'class="card is-overdue" id="escalation-{late}"', page)  # red, and in words:
    assert re.search(r"overdue by 1 h \d+ min", card)
    assert "left to respond" in page[page.index(f'id="escalation-{later}"') :]
    lead = Visitor(base)
    lead.sign_in("lead")
    everyone = lead.get("/app/").text
    assert f'id="escalation-{theirs}"' in everyone and f'id="escalation-{late}"' in everyone
    filtered = lead.get("/app/", params={"owner": "Sam Ortiz"}).text
    assert f'id="escalation-{theirs}"' in filtered and f'id="escalation-{late}"' not in filtered
    lead.close()


def test_actions_change_the_store_as_the_api_does(csm, store, store_url):
    """Each action on one escalation through the workspace, and on its twin through the functions
    the API's endpoints call (serving/lifecycle.py, the store's add_feedback): the same result."""
    from serving import lifecycle

    ours, twin = record(store_url, "WS-ACT-1"), record(store_url, "WS-ACT-2")
    answer = csm.act(f"/app/escalations/{ours}/acknowledge", note="calling them now")
    assert answer.status_code == 303 and answer.headers["location"] == "/app/"
    assert f"Escalation {ours} acknowledged" in csm.get("/app/").text  # the flash message
    lifecycle.acknowledge(store, twin, "Laura Chen", "calling them now")
    assert comparable(store.escalation_detail(ours)) == comparable(store.escalation_detail(twin))
    assert store.escalation_detail(ours)["status"] == "acknowledged"

    assert csm.act(f"/app/follow-ups/{ours}/done").status_code == 303
    lifecycle.follow_up_done(store, twin, "Laura Chen")
    assert comparable(store.escalation_detail(ours)) == comparable(store.escalation_detail(twin))

    assert (
        csm.act(f"/app/escalations/{ours}/feedback", rating="4", comment="clear handoff", outcome="saved").status_code
        == 303
    )
    store.add_feedback(twin, 4, "clear handoff", "saved")
    mine, theirs = [f for f in store.feedback() if f["escalation_id"] in (ours, twin)]
    assert {k: v for k, v in mine.items() if k not in ("id", "escalation_id", "created_at")} == {
        k: v for k, v in theirs.items() if k not in ("id", "escalation_id", "created_at")
    }

    assert csm.act(f"/app/escalations/{ours}/resolve", outcome="saved", note="renewal signed").status_code == 303
    lifecycle.resolve(store, twin, "saved", "Laura Chen", "renewal signed")
    resolved = store.escalation_detail(ours)
    assert (resolved["status"], resolved["outcome"]) == ("resolved", "saved")
    assert comparable(resolved) == comparable(store.escalation_detail(twin))
    assert [(c["to_status"], c["actor"], c["note"]) for c in resolved["history"]][1:] == [
        ("acknowledged", "Laura Chen", "calling them now"),
        ("resolved", "Laura Chen", "renewal signed"),
    ]


def test_bad_input_is_a_message_naming_the_field_and_changes_nothing(csm, store, store_url):
    escalation = record(store_url, "WS-BAD")
    before = (store.escalation_detail(escalation), store.feedback())
    for path, form, words in (
        (f"/app/escalations/{escalation}/resolve", {"outcome": "won"}, "outcome 'won'"),
        (f"/app/escalations/{escalation}/feedback", {"rating": "9"}, "rating"),
        (f"/app/escalations/{escalation}/feedback", {"rating": "4", "outcome": "maybe"}, "outcome"),
        (f"/app/escalations/{escalation}/acknowledge", {"note": "x" * 5001}, "note"),
    ):
        answer = csm.act(path, **form)
        assert answer.status_code == 303, path
        assert words in flash_error(csm.get("/app/").text), path
    assert (store.escalation_detail(escalation), store.feedback()) == before
    # an illegal move is the store's message; an unknown escalation a 404 page
    csm.act(f"/app/escalations/{escalation}/acknowledge")
    csm.act(f"/app/escalations/{escalation}/acknowledge")
    assert "is already acknowledged" in flash_error(csm.get("/app/").text)
    assert csm.act("/app/escalations/987654/acknowledge").status_code == 404


def test_a_long_queue_comes_a_page_at_a_time(base, store_url):
    """A CSM with more escalations and follow-ups than a page holds: page 2 shows the next ones in the
    same order, the counts are the whole queue's, a form brings the browser back to its page, a page
    past the end shows the last one and says so, a bad page number is named; a lead's filter stays
    on every page's links."""
    from serving.workspace.auth import hash_password
    from serving.workspace.queue import PAGE_SIZE

    with Store(store_url, make_policy()) as opened:
        if opened.user("pia") is None:
            opened.add_user("pia", "Pia Pager", "csm", hash_password("pia-secret-1"))
    # each one's window ends 10 minutes after the one before: that is the queue's order
    ids = [record(store_url, f"WS-PAGE-{k:02d}", window=120 + 10 * k, owner="Pia Pager") for k in range(PAGE_SIZE + 5)]
    pia = Visitor(base)
    assert pia.sign_in("pia", "pia-secret-1").status_code == 303

    def shown(path: str) -> tuple[str, list[int], list[int]]:
        page = pia.get(path)
        assert page.status_code == 200, (path, page.status_code)
        cards, follow_ups = page.text.split('id="follow-ups-heading"', 1)
        listed = [int(i) for i in re.findall(r'id="escalation-(\d+)"', cards)]
        due = [int(i) for i in re.findall(r"escalation (\d+)</span></td>", follow_ups)]
        return page.text, listed, due

    first, listed, due = shown("/app/")
    assert listed == ids[:PAGE_SIZE] and due == ids[:PAGE_SIZE]
    assert f"{len(ids)} active escalations" in first and f"{len(ids)} follow-ups pending" in first
    assert "Page 1 of 2: escalations 1–25" in first and '<a rel="next" href="/app/?page=2">' in first
    assert '<a rel="next" href="/app/?follow_up_page=2">' in first and 'rel="prev"' not in first

    second, listed, due = shown("/app/?page=2")
    assert listed == ids[PAGE_SIZE:] and due == ids[:PAGE_SIZE]  # the follow-ups stay on their own first page
    assert f"{len(ids)} active escalations" in second and "Page 2 of 2: escalations 26–30" in second
    assert '<a rel="prev" href="/app/">' in second and 'rel="next"' not in second.split('id="follow-ups-heading"')[0]
    assert 'name="next" value="/app/?page=2"' in second  # a form on page 2 comes back to page 2
    answer = pia.post(
        f"/app/escalations/{ids[-1]}/acknowledge", {"csrf_token": token_of(second), "next": "/app/?page=2"}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/app/?page=2"
    assert f"Escalation {ids[-1]} acknowledged" in pia.get("/app/?page=2").text

    both, listed, due = shown("/app/?page=2&follow_up_page=2")
    assert listed == ids[PAGE_SIZE:] and due == ids[PAGE_SIZE:]
    # each list's link to its first page keeps the other list's page
    assert '<a rel="prev" href="/app/?follow_up_page=2">' in both and '<a rel="prev" href="/app/?page=2">' in both

    past, listed, _ = shown("/app/?page=9")
    assert listed == ids[PAGE_SIZE:]
    assert "There is no page 9 of escalations: there are 2 pages of 30; showing the last." in htmllib.unescape(past)
    bad, listed, _ = shown("/app/?page=two")
    assert listed == ids[:PAGE_SIZE]
    assert "page 'two': expected a page number from 1 to 2; showing page 1." in htmllib.unescape(bad)
    pia.close()

    lead = Visitor(base)
    lead.sign_in("lead")
    filtered = lead.get("/app/", params={"owner": "Pia Pager", "page": "2"}).text
    assert [int(i) for i in re.findall(r'id="escalation-(\d+)"', filtered)] == ids[PAGE_SIZE:]
    assert '<a rel="prev" href="/app/?owner=Pia+Pager">' in filtered  # back to page 1 of the same filter
    lead.close()


# ------------------------------------------------------------------------------------ the report


def test_the_report_is_served_when_there_is_one(environment, runtime, tmp_path):
    from serving.workspace.app import standalone

    report = tmp_path / "churn_report.html"
    settings = runtime.settings.model_copy(update={"report_file": report})
    with serving(standalone(settings, runtime)) as url:
        lead = Visitor(url)
        lead.sign_in("lead")
        missing = lead.get("/app/report")
        assert missing.status_code == 404 and "churn report --out" in missing.text and str(report) in missing.text
        report.write_text("<html><body><h1>Churn risk report</h1></body></html>")
        served = lead.get("/app/report")
        assert served.status_code == 200 and "Churn risk report" in served.text
        assert served.headers["content-type"].startswith("text/html")
        lead.close()


# ------------------------------------------------------------------------------------ sessions and secrets


def test_two_workers_accept_each_others_cookies_and_the_key_is_private(environment, runtime):
    """Two applications on one DATA_DIR (two workers): the key made once, mode 0600, shared."""
    from serving.workspace.app import standalone

    secret = Path(runtime.settings.data_dir) / "workspace_secret"
    with serving(standalone(runtime.settings, runtime)) as one, serving(standalone(runtime.settings, runtime)) as two:
        visitor = Visitor(one)
        assert visitor.sign_in("laura").status_code == 303
        cookie = visitor.client.cookies["churn_workspace"]
        elsewhere = httpx.get(f"{two}/app/", cookies={"churn_workspace": cookie})
        assert elsewhere.status_code == 200 and "Laura Chen" in elsewhere.text
        visitor.close()
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_text().strip()) >= 32


def test_a_readable_key_file_is_refused(tmp_path):
    from core.errors import InputError
    from serving.workspace.auth import session_secret

    made = session_secret(None, tmp_path)
    assert session_secret(None, tmp_path) == made and session_secret("x" * 40, tmp_path) == "x" * 40
    (tmp_path / "workspace_secret").chmod(0o644)
    with pytest.raises(InputError, match="mode 0644.*chmod 600"):
        session_secret(None, tmp_path)


def test_passwords_are_salted_scrypt_hashes():
    from core.errors import InputError
    from serving.workspace.auth import hash_password, parse_hash, verify_password

    one, two = hash_password("correct horse"), hash_password("correct horse")
    assert one != two and one.startswith("scrypt$16384$8$1$")  # a fresh salt each time, its cost recorded
    assert verify_password("correct horse", one) and not verify_password("correct horsE", one)
    assert not verify_password("correct horse", "not-a-hash") and not verify_password("x" * 2000, one)
    assert len(parse_hash(one)[3]) == 16 and len(parse_hash(one)[4]) == 32
    for bad in ("short", " padded password "):
        with pytest.raises(InputError, match="password"):
            hash_password(bad)


# ------------------------------------------------------------------------------------ churn users


@pytest.fixture
def churn(environment, capsys, monkeypatch):
    """`churn ...` in process: (exit code, stdout, the `error:` line); `stdin` is what it reads."""
    from pipelines.cli import main

    def run(*args: str, stdin: str | None = None):
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin or ""))
        code = main(list(args))
        out, err = capsys.readouterr()
        message = next((line for line in err.splitlines() if line.startswith("error:")), None)
        return code, out, message

    return run


def test_churn_users_add_list_set_password_remove(churn, base, tmp_path, monkeypatch):
    code, out, _ = churn(
        "users",
        "add",
        "nina",
        "--name",
        "Nina Park",
        "--role",
        "csm",
        "--password-stdin",
        "--json",
        stdin="nina-pass-1\n",
    )
    assert code == 0 and json.loads(out) == {"user": {"username": "nina", "name": "Nina Park", "role": "csm"}}
    code, out, _ = churn("users", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and {"username": "nina", "name": "Nina Park", "role": "csm", "source": "store"} in listed["users"]
    assert "password" not in out and "scrypt" not in out  # never the hash

    visitor = Visitor(base)
    assert visitor.sign_in("nina", "nina-pass-1").status_code == 303 and visitor.get("/app/").status_code == 200
    assert churn("users", "set-password", "nina", "--password-stdin", stdin="nina-pass-2\n")[0] == 0
    assert visitor.get("/app/").status_code == 303  # the old password's session has ended
    assert "Wrong username" in visitor.sign_in("nina", "nina-pass-1").text
    assert visitor.sign_in("nina", "nina-pass-2").status_code == 303

    assert churn("users", "remove", "nina")[0] == 0
    assert visitor.get("/app/").status_code == 303  # removed: signed out
    assert "nina" not in {u["username"] for u in json.loads(churn("users", "list", "--json")[1])["users"]}
    visitor.close()

    # bad input: exit 2 and one line naming what was wrong
    for args, stdin, words in (
        (
            ("users", "add", "laura", "--name", "Laura", "--role", "csm", "--password-stdin"),
            "long-enough-1\n",
            "already a user",
        ),
        (
            ("users", "add", "x y", "--name", "X", "--role", "csm", "--password-stdin"),
            "long-enough-1\n",
            "username 'x y'",
        ),
        (
            ("users", "add", "zed", "--name", "Zed", "--role", "boss", "--password-stdin"),
            "long-enough-1\n",
            "--role 'boss'",
        ),
        (
            ("users", "add", "zed", "--name", "Zed", "--role", "csm", "--password-stdin"),
            "short\n",
            "password: expected 8",
        ),
        (("users", "add", "zed", "--name", "Zed", "--role", "csm", "--password-stdin"), "", "standard input was empty"),
        (("users", "add", "zed", "--name", "Zed", "--role", "csm"), "", "--password-stdin"),  # no terminal to prompt on
        (("users", "remove", "nobody"), "", "username 'nobody': no such user"),
        (("users", "set-password", "nobody", "--password-stdin"), "long-enough-1\n", "no such user"),
    ):
        code, _, message = churn(*args, stdin=stdin)
        assert code == 2 and message and words in message, (args, message)

    # users declared in a settings file: listed with their source, managed there only
    code, hashed, _ = churn("users", "hash", "--password-stdin", stdin="declared-pass-1\n")
    declared = tmp_path / "users.yaml"
    declared.write_text(
        f"users:\n  - username: dee\n    name: Dee Clared\n    role: cs_lead\n    password_hash: '{hashed.strip()}'\n"
    )
    monkeypatch.setenv("CHURN_WORKSPACE_USERS", str(declared))
    listed = json.loads(churn("users", "list", "--json")[1])["users"]
    assert {"username": "dee", "name": "Dee Clared", "role": "cs_lead", "source": str(declared)} in listed
    code, _, message = churn("users", "remove", "dee")
    assert code == 2 and "declared in CHURN_WORKSPACE_USERS" in message
    declared.write_text("users:\n  - username: dee\n    name: Dee\n    role: cs_lead\n    password_hash: hunter22\n")
    code, _, message = churn("users", "list")
    assert code == 2 and "users[0].password_hash: not a password hash" in message


def test_declared_users_sign_in(runtime, tmp_path):
    from serving.workspace.app import standalone
    from serving.workspace.auth import hash_password

    declared = tmp_path / "users.yaml"
    declared.write_text(
        f"users:\n  - username: dee\n    name: Dee Clared\n    role: admin\n    password_hash: '{hash_password('declared-pass-1')}'\n"
    )
    settings = runtime.settings.model_copy(update={"workspace_users": declared})
    with serving(standalone(settings, runtime)) as url:
        visitor = Visitor(url)
        assert visitor.sign_in("dee", "declared-pass-1").status_code == 303
        assert "Dee Clared" in visitor.get("/app/").text and visitor.get("/app/book").status_code == 200
        visitor.close()


def test_the_demo_sign_ins_work(environment, base, store_url, tmp_path):
    """What `churn demo` ends with: a CS lead and the CSM with the most open escalations, each with
    a new random password that signs in, recorded in last_demo.json readable by its owner only."""
    import pandas as pd

    from core.settings import load_settings
    from pipelines.commands.users import busiest_owner, demo_users
    from serving.launch import record_demo

    settings = load_settings()
    people = set(pd.read_parquet(environment["root"] / "scores" / "features.parquet")["csm_owner"].dropna())
    people.add("Omar Haddad")

    def owners() -> list[str]:
        with Store(store_url, make_policy()) as store:
            return [e["owner"] for e in store.list_escalations() if e["owner"] in people]

    before = owners()
    lead = max([before.count(o) for o in people if o != "Omar Haddad"], default=0)
    for i in range(lead + 1 - before.count("Omar Haddad")):  # one more than anyone else has
        record(store_url, f"WS-DEMO-{i}", owner="Omar Haddad")
    owner, owned = busiest_owner(settings, people)
    assert (owner, owned) == ("Omar Haddad", lead + 1)
    assert busiest_owner(settings, {"Nobody Here"}) == (None, 0)
    try:
        first = demo_users(settings, owner)
        again = demo_users(settings, owner)  # a second demo run: the same users, new passwords
        assert [(u["username"], u["role"]) for u in again] == [("lead", "cs_lead"), (first[1]["username"], "csm")]
        assert again[1]["name"] == owner and {u["password"] for u in first}.isdisjoint(u["password"] for u in again)
        for user in again:
            visitor = Visitor(base)
            assert visitor.sign_in(user["username"], user["password"]).status_code == 303
            assert user["name"] in visitor.get("/app/").text
            visitor.close()
    finally:  # the module's own CS lead back, for the other tests
        from serving.workspace.auth import hash_password

        with Store(store_url, make_policy()) as store:
            store.remove_user("lead")
            store.add_user("lead", *PEOPLE["lead"], hash_password(PASSWORDS["lead"]))
    settings = settings.model_copy(update={"data_dir": tmp_path})
    (tmp_path / "scores").mkdir()
    pointer = record_demo(settings, tmp_path, {"report": "r.html", "model": "m", "champion": "1"}, {"users": again})
    assert pointer.stat().st_mode & 0o777 == 0o600 and json.loads(pointer.read_text())["workspace"]["users"] == again


# ------------------------------------------------------------------------------------ an old store


def test_opening_an_old_store_adds_the_users_table_and_keeps_every_row(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with Store(url, make_policy()) as store:
        ids = [store.record(make_decision(f"OLD-{i}"), PACKAGE).escalation_id for i in range(3)]
        store.add_feedback(ids[0], 5, "good", "saved")
        counts = store.counts()
    # the database as the release before the workspace made it: no users table
    with contextlib.closing(sqlite3.connect(tmp_path / "old.db")) as connection, connection:
        connection.execute("DROP TABLE users")
    with contextlib.closing(sqlite3.connect(tmp_path / "old.db")) as connection:
        assert "users" not in {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    with Store(url, make_policy()) as store:
        assert store.counts() == counts and [e["id"] for e in store.list_escalations()] == sorted(ids)
        assert store.users() == []
        store.add_user("kim", "Kim Lee", "csm", "scrypt$16384$8$1$AAAA$BBBB")
        assert store.user("kim")["role"] == "csm"
        from core.errors import InputError

        with pytest.raises(InputError, match="role 'boss'"):
            store.add_user("bo", "Bo", "boss", "scrypt$16384$8$1$AAAA$BBBB")


# ------------------------------------------------------------------------------------ in the service


def test_the_workspace_is_mounted_in_bentoml_serve_next_to_the_api(environment, people, store, store_url):
    """`bentoml serve` (two workers): /app needs no bearer token but a sign-in, the API still needs
    its token, and an acknowledgement through the workspace equals one through the API."""
    import pandas as pd

    from serving.process import running_server

    snapshot = pd.read_parquet(environment["root"] / "scores" / "features.parquet")
    escalated = {e["account_id"] for e in store.list_escalations()}  # a new decision would merge into theirs
    fresh = snapshot.loc[~snapshot["account_id"].isin(escalated), ["account_id", "account_name"]]
    (first, name), (second, _) = fresh.tail(2).itertuples(index=False)
    ours, twin = record(store_url, first), record(store_url, second)
    token = environment["env"]["CHURN_API_TOKENS"]
    env = {**environment["env"], "BENTOML_HOME": str(environment["root"] / "bentoml")}
    with running_server(env, timeout=240) as url:
        assert httpx.post(f"{url}/model", json={}).status_code == 401  # the API: unchanged
        assert httpx.get(f"{url}/apps").status_code == 401  # only /app and below are the workspace's
        assert httpx.get(f"{url}/app/", follow_redirects=False).status_code == 303  # the workspace: its own sign-in
        style = httpx.get(f"{url}/app/static/workspace.css")
        assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
        visitor = Visitor(url)
        assert visitor.sign_in("laura").status_code == 303
        page = visitor.get("/app/")
        assert page.status_code == 200 and f'id="escalation-{ours}"' in page.text
        # the worker's runtime answers: the account's name and its risk from the served model
        card = page.text[page.text.index(f'id="escalation-{ours}"') :]
        assert htmllib.escape(name) in card[: card.index("</li>")] and "90-day risk" in card
        assert visitor.act(f"/app/escalations/{ours}/acknowledge", note="on it").status_code == 303
        api = httpx.post(
            f"{url}/acknowledge",
            json={"escalation_id": twin, "by": "Laura Chen", "note": "on it"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert api.status_code == 200, api.text
        assert comparable(store.escalation_detail(ours)) == comparable(store.escalation_detail(twin))
        # many requests: whichever worker answers accepts the cookie (one key, DATA_DIR/workspace_secret)
        assert all(visitor.get("/app/").status_code == 200 for _ in range(12))
        visitor.close()
