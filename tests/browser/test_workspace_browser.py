"""The CS workspace in real headless Chromium (Debian's `chromium`, driven by Playwright for Python;
no browser is downloaded): a CSM signs in, acknowledges an escalation from the queue, opens the
account, rates the handoff and resolves it with an outcome; the store and the CS lead's book view
show it. A viewer cannot act; a form posted from another page without the CSRF token is refused.
No page logs a console error or a script error. Screenshots of every page at a desktop's and a
phone's size go to CHURN_SCREENSHOTS_DIR when set (else a temporary folder)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from escalation.store import Store
from tests.integration.test_store_alerts import make_policy
from tests.integration.test_workspace import PASSWORDS, record, serving

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DESKTOP, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if CHROMIUM is None:
        pytest.skip("Chromium not installed (Debian: apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    from tests.conftest import champion_environment

    with champion_environment(tmp_path_factory.mktemp("workspace-browser")) as env:
        yield env


@pytest.fixture(scope="module")
def cast(environment) -> dict:
    """The people: a CSM who owns a real escalation of the scored base (with its handoff package),
    a CS lead and a viewer, in the store with PASSWORDS; and that escalation."""
    import pandas as pd

    from serving.workspace.auth import hash_password

    snapshot = pd.read_parquet(environment["root"] / "scores" / "features.parquet")
    people = set(snapshot["csm_owner"].dropna())
    with Store(environment["env"]["CHURN_STORE_URL"], make_policy()) as store:
        mine = [
            e
            for e in store.list_escalations(package=True)
            if e["owner"] in people and e["package"] and e["status"] == "open"
        ]
        assert mine, "the champion base has no open escalation owned by a CSM of the data"
        escalation = mine[0]
        for username, name, role, password in (
            ("csm", escalation["owner"], "csm", PASSWORDS["laura"]),
            ("lead", "Lee Okafor", "cs_lead", PASSWORDS["lead"]),
            ("vic", "Vic Viewer", "viewer", PASSWORDS["vic"]),
        ):
            store.add_user(username, name, role, hash_password(password))
    name = snapshot.set_index("account_id").loc[escalation["account_id"], "account_name"]
    return {"escalation": escalation, "csm": escalation["owner"], "account_name": str(name)}


@pytest.fixture(scope="module")
def base(environment, cast) -> Iterator[str]:
    from core.settings import load_settings
    from serving.runtime import ServingRuntime
    from serving.workspace.app import standalone

    settings = load_settings()
    with serving(standalone(settings, ServingRuntime(settings, text=False))) as url:
        yield url


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("CHURN_SCREENSHOTS_DIR")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


class Tab:
    """A browser page that keeps every console error, script error and failed request it meets."""

    def __init__(self, browser, base: str, viewport: dict):
        self.base = base
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on(
            "console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} {r.failure}"))
        self.page.on(
            "response", lambda r: self.problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None
        )

    def goto(self, path: str):
        return self.page.goto(self.base + path)

    def sign_in(self, username: str, password: str, *, keyboard: bool = False) -> None:
        self.goto("/app/login")
        if keyboard:  # the sign-in form by keyboard alone: the username field takes the focus itself
            from playwright.sync_api import expect

            # Chromium applies autofocus at a rendering step that may come after the load event the
            # navigation waited for: typing before it was lost once (a CI run, nothing to sign in as)
            expect(self.page.locator("#username")).to_be_focused()
            self.page.keyboard.type(username)
            self.page.keyboard.press("Tab")
            self.page.keyboard.type(password)
            self.page.keyboard.press("Enter")
        else:
            self.page.get_by_label("Username").fill(username)
            self.page.get_by_label("Password").fill(password)
            self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(re.compile(r".*/app/(\?.*)?$"))

    def shoot(self, folder: Path, name: str) -> Path:
        size = self.page.viewport_size
        path = folder / f"{name}-{size['width']}x{size['height']}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def fits(self) -> bool:
        """Nothing wider than the screen: wide tables scroll inside their own box."""
        return self.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")

    def close(self) -> None:
        self.context.close()


def flash(page) -> str:
    from playwright.sync_api import expect

    message = page.locator(".flash").first
    expect(message).to_be_visible()
    return message.inner_text()


# ------------------------------------------------------------------------------------ the journey


def test_a_csm_works_an_escalation_and_the_lead_sees_it(browser, base, cast, environment, shots):
    from playwright.sync_api import expect

    escalation_id, csm = cast["escalation"]["id"], cast["csm"]
    url = environment["env"]["CHURN_STORE_URL"]
    taken: list[Path] = []

    # the lead's book before
    lead = Tab(browser, base, DESKTOP)
    lead.sign_in("lead", PASSWORDS["lead"])
    lead.goto("/app/book")
    resolved_before = int(lead.page.locator(".funnel li").nth(3).locator(".funnel-n").inner_text())

    tab = Tab(browser, base, DESKTOP)
    tab.goto("/app/")  # not signed in: the sign-in page, which comes back here after
    expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()
    taken.append(tab.shoot(shots, "login"))
    tab.page.get_by_label("Username").fill("csm")
    tab.page.get_by_label("Password").fill(PASSWORDS["laura"])
    tab.page.get_by_role("button", name="Sign in").click()
    expect(tab.page.get_by_role("heading", name="My queue")).to_be_visible()
    card = tab.page.locator(f"#escalation-{escalation_id}")
    expect(card).to_contain_text(cast["account_name"])
    expect(card).to_contain_text("90-day risk")
    taken.append(tab.shoot(shots, "queue"))

    # acknowledge from the queue
    card.get_by_role("button", name="Acknowledge").click()
    assert f"Escalation {escalation_id} acknowledged" in flash(tab.page)
    with Store(url, make_policy()) as store:
        detail = store.escalation_detail(escalation_id)
    assert detail["status"] == "acknowledged" and detail["history"][-1]["actor"] == csm
    expect(tab.page.locator(f"#escalation-{escalation_id}")).to_contain_text("acknowledged")

    # the account: rate the handoff, then resolve with an outcome
    tab.page.locator(f"#escalation-{escalation_id}").get_by_role("link", name=cast["account_name"]).click()
    expect(tab.page.get_by_role("heading", level=1)).to_contain_text(cast["account_name"])
    taken.append(tab.shoot(shots, "account"))
    rating = tab.page.locator("form", has=tab.page.get_by_role("button", name="Send rating"))
    rating.locator("input[name=rating][value='4']").check()
    rating.get_by_label("What happened to the account").select_option("saved")
    rating.get_by_label("Comment").fill("The package had the whole story.")
    rating.get_by_role("button", name="Send rating").click()
    assert "rated 4/5" in flash(tab.page)
    resolve = tab.page.locator("form", has=tab.page.get_by_role("button", name=f"Resolve escalation {escalation_id}"))
    resolve.get_by_label("Outcome").select_option("saved")
    resolve.get_by_label("Note").fill("Renewal signed after the call.")
    resolve.get_by_role("button", name=f"Resolve escalation {escalation_id}").click()
    assert f"Escalation {escalation_id} resolved" in flash(tab.page)
    with Store(url, make_policy()) as store:
        detail = store.escalation_detail(escalation_id)
        ratings = [f for f in store.feedback() if f["escalation_id"] == escalation_id]
    assert (detail["status"], detail["outcome"]) == ("resolved", "saved")
    assert detail["history"][-1]["actor"] == csm and detail["history"][-1]["note"] == "Renewal signed after the call."
    assert [(f["rating"], f["outcome"], f["comment"]) for f in ratings] == [
        (4, "saved", "The package had the whole story.")
    ]

    # search from the header
    tab.page.get_by_label("Search accounts by name or id").fill(cast["account_name"][:5])
    tab.page.get_by_label("Search accounts by name or id").press("Enter")
    # names repeat across accounts (namesakes are listed too): the account's row is the one with its id
    found = tab.page.get_by_role("row").filter(has_text=cast["escalation"]["account_id"])
    expect(found.get_by_role("link", name=cast["account_name"])).to_be_visible()
    taken.append(tab.shoot(shots, "search"))

    # the lead's book now: one more resolved, the handoff rated under the CSM
    lead.goto("/app/book")
    resolved_after = int(lead.page.locator(".funnel li").nth(3).locator(".funnel-n").inner_text())
    assert resolved_after == resolved_before + 1
    owner_ratings = lead.page.get_by_role("region", name="Ratings by owner")
    expect(owner_ratings).to_contain_text(csm)
    taken.append(lead.shoot(shots, "book"))

    problems = tab.problems + lead.problems
    tab.close()
    lead.close()
    assert not problems, problems
    assert all(p.stat().st_size > 10_000 for p in taken), taken


def test_every_page_at_a_phone_width_by_keyboard(browser, base, cast, environment, shots):
    """The same pages 390 px wide: nothing wider than the screen, no console error; sign-in by keyboard."""
    import datetime as dt

    import pandas as pd

    # two more escalations of the CSM's, one past its response window, on accounts of the base
    url = environment["env"]["CHURN_STORE_URL"]
    with Store(url, make_policy()) as store:
        taken = {e["account_id"] for e in store.list_escalations()}
    snapshot = pd.read_parquet(environment["root"] / "scores" / "features.parquet", columns=["account_id"])
    late, fresh = [a for a in snapshot["account_id"] if a not in taken][-2:]
    record(url, late, window=60, ago=dt.timedelta(hours=3), owner=cast["csm"])
    record(url, fresh, window=240, ago=dt.timedelta(minutes=30), owner=cast["csm"])
    tab = Tab(browser, base, PHONE)
    tab.goto("/app/login")
    tab.shoot(shots, "login")
    assert tab.fits()
    tab.sign_in("csm", PASSWORDS["laura"], keyboard=True)
    pages = {
        "queue": "/app/",
        "account": f"/app/accounts/{cast['escalation']['account_id']}",
        "search": f"/app/search?q={cast['account_name'][:5]}",
    }
    wide = []
    for name, path in pages.items():
        assert tab.goto(path).status == 200, path
        tab.shoot(shots, name)
        wide += [] if tab.fits() else [name]
    lead = Tab(browser, base, PHONE)
    lead.sign_in("lead", PASSWORDS["lead"])
    assert lead.goto("/app/book").status == 200
    lead.shoot(shots, "book")
    wide += [] if lead.fits() else ["book"]
    problems = tab.problems + lead.problems
    tab.close()
    lead.close()
    assert not wide, f"wider than a phone's screen: {wide}"
    assert not problems, problems


# ------------------------------------------------------------------------------------ refusals


def test_a_viewer_cannot_act(browser, base, environment):
    url = environment["env"]["CHURN_STORE_URL"]
    escalation = record(url, "BR-VIEW", owner="Vic Viewer")
    tab = Tab(browser, base, DESKTOP)
    tab.sign_in("vic", PASSWORDS["vic"])
    assert tab.page.get_by_role("heading", name="Escalation queue").count() == 0  # not a lead's queue
    assert tab.page.get_by_role("button", name="Acknowledge").count() == 0
    assert tab.page.locator("form[method=post]").count() == 1  # signing out is all a viewer may post
    with Store(url, make_policy()) as store:
        before = store.escalation_detail(escalation)
    # a viewer who builds the form anyway, with the right token: refused
    token = tab.page.locator("input[name=csrf_token]").first.get_attribute("value")
    tab.page.evaluate(
        """([action, token]) => {
            const form = document.createElement('form');
            form.method = 'post';
            form.action = action;
            const input = document.createElement('input');
            input.type = 'hidden'; input.name = 'csrf_token'; input.value = token;
            form.appendChild(input);
            document.body.appendChild(form);
            form.submit();
        }""",
        [f"/app/escalations/{escalation}/acknowledge", token],
    )
    tab.page.wait_for_url(re.compile(r".*/acknowledge$"))
    assert "Read only" in tab.page.content()
    with Store(url, make_policy()) as store:
        assert store.escalation_detail(escalation) == before
    tab.close()


def test_a_forged_form_from_another_page_is_refused(browser, base, cast, environment):
    """A page of another origin on the same host (so the session cookie goes along: SameSite=Lax
    allows it within a site) posts an acknowledgement without the token: 403, nothing written."""
    url = environment["env"]["CHURN_STORE_URL"]
    escalation = record(url, "BR-FORGED", owner=cast["csm"])
    tab = Tab(browser, base, DESKTOP)
    tab.sign_in("csm", PASSWORDS["laura"])
    with Store(url, make_policy()) as store:
        before = store.escalation_detail(escalation)
    attacker = "http://127.0.0.1:9/prize.html"  # answered here, never reached over the network
    tab.page.route(
        attacker,
        lambda route: route.fulfill(
            content_type="text/html",
            body=f"""<!doctype html><title>You won</title><body>
            <form id="f" method="post" action="{base}/app/escalations/{escalation}/acknowledge">
            <input type="hidden" name="note" value="forged"></form>
            <button id="go" onclick="document.getElementById('f').submit()">Claim</button></body>""",
        ),
    )
    tab.goto("/app/")  # signed in, the cookie set
    tab.page.goto(attacker)
    tab.page.click("#go")
    tab.page.wait_for_url(re.compile(r".*/acknowledge$"))
    assert "Refused: the form was not the workspace" in tab.page.content()
    with Store(url, make_policy()) as store:
        assert store.escalation_detail(escalation) == before
    tab.close()
