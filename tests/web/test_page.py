"""The web view in a real headless Chromium, against the stand-in API of ``fake_registry``.

What a user sees: the table, search and filters, the detail panel with satisfied/unsatisfied marks,
the graph, the problems, and live updates through ``/v1/events`` without a reload.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from gitops_sync.testing import wait_for
from gitops_sync.web import CONTENT_SECURITY_POLICY
from web.browsing import painted
from web.fake_registry import FakeRegistry, capability, serving

SAMPLE = [
    capability(
        "billing.invoices",
        "service",
        "2.1.0",
        title="Invoices",
        description="Issues invoices and credit notes",
        requires={"payments.gateway": "^1.0.0", "ledger.core": "^3.0.0", "audit.trail": "*"},
        state="warning",
        dc_creator="Billing Team",
        dc_subject=["billing", "invoices"],
        chora_service={"port": 8443, "health": {"path": "/livez"}},
    ),
    capability(
        "ledger.core",
        "pattern",
        "2.5.0",
        title="Ledger",
        description="Double-entry bookkeeping for every money movement",
        requires={"platform.conventions": "^2.0.0"},
    ),
    capability(
        "payments.gateway",
        "service",
        "1.4.0",
        title="Payment Gateway",
        description="Card and bank payments",
        requires={"ledger.core": "^2.0.0"},
    ),
    capability(
        "platform.conventions",
        "pattern",
        "2.3.1",
        title="Platform Conventions",
        description="Naming, logging and full-text search rules",
    ),
    capability(
        "search.indexer",
        "service",
        "0.9.0",
        title="Indexer",
        description="Keeps the catalogue searchable",
        state="error",
    ),
]
PROBLEMS = [
    {
        "file": "capabilities/search.indexer.yaml",
        "line": 7,
        "severity": "error",
        "message": "dc_hasVersion: '0.9' is not SemVer 2.0; write 0.9.0",
    },
    {
        "file": "capabilities/billing.invoices.yaml",
        "line": 14,
        "severity": "warning",
        "message": "requires audit.trail, which is not in the registry",
    },
]
IDS = sorted(item["id"] for item in SAMPLE)
ROWS = "#capabilities tbody tr.row"


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry(SAMPLE, PROBLEMS)


@pytest.fixture
def url(registry: FakeRegistry) -> Iterator[str]:
    with serving(registry) as address:
        yield address


def shown_ids(page: Page) -> list[str]:
    return [row.get_attribute("data-id") or "" for row in page.locator(ROWS).all()]


def open_page(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator(ROWS)).to_have_count(len(SAMPLE))
    expect(page.locator("#live")).to_have_text("Live")


def test_the_table_shows_every_capability_sorted_by_id_with_type_version_and_state(
    page: Page, url: str
) -> None:
    open_page(page, url)

    assert shown_ids(page) == IDS
    invoices = page.locator(ROWS, has_text="billing.invoices")
    expect(invoices.locator("td")).to_have_text(
        ["billing.invoices", "Invoices", "service", "2.1.0", re.compile("Warning")]
    )
    expect(page.locator(ROWS, has_text="search.indexer").locator(".col-state")).to_have_text(
        re.compile("Error")
    )
    expect(page.locator("#shown")).to_have_text("5 capabilities")
    expect(page.locator("#revision")).to_have_text("41")
    expect(page.locator("#role")).to_have_text("leader")


def test_search_matches_id_title_and_description_and_the_filters_narrow_by_type_and_state(
    page: Page, url: str
) -> None:
    open_page(page, url)
    search = page.get_by_label("Search")

    search.fill("ledger")  # the id of ledger.core, and nothing else's text
    expect(page.locator(ROWS)).to_have_count(1)
    assert shown_ids(page) == ["ledger.core"]
    search.fill("PAYMENT")  # a title, any case
    assert_shown(page, ["payments.gateway"])
    search.fill("full-text")  # a description only
    assert_shown(page, ["platform.conventions"])
    search.fill("nothing like this")
    assert_shown(page, [])
    expect(page.locator("#no-match")).to_be_visible()
    search.fill("")
    assert_shown(page, IDS)

    page.get_by_label("Type").select_option("pattern")
    assert_shown(page, ["ledger.core", "platform.conventions"])
    expect(page.locator("#shown")).to_have_text("2 of 5 capabilities")
    page.get_by_label("Type").select_option("")
    page.get_by_label("State").select_option("error")
    assert_shown(page, ["search.indexer"])
    page.get_by_label("State").select_option("warning")
    search.fill("invoice")
    assert_shown(page, ["billing.invoices"])


def assert_shown(page: Page, ids: list[str]) -> None:
    expect(page.locator(ROWS)).to_have_count(len(ids))
    assert shown_ids(page) == ids


def test_a_click_opens_the_detail_panel_with_marked_dependencies_dependents_and_metadata(
    page: Page, url: str
) -> None:
    open_page(page, url)
    page.locator(ROWS, has_text="billing.invoices").click()

    detail = page.locator("#detail")
    expect(detail.locator("h2")).to_have_text("billing.invoices")
    expect(detail.locator(".detail-description")).to_have_text("Issues invoices and credit notes")
    dependencies = detail.locator(".dependencies li.edge")
    expect(dependencies).to_have_count(3)
    expect(detail.locator(".dependencies h3")).to_have_text("Dependencies (3) · 2 not satisfied")
    expect(dependencies.filter(has_text="payments.gateway")).to_contain_text("satisfied")
    expect(dependencies.filter(has_text="payments.gateway")).to_contain_text("wants ^1.0.0, has v1.4.0")
    expect(dependencies.filter(has_text="payments.gateway")).to_have_class(re.compile(r"\bsatisfied\b"))
    expect(dependencies.filter(has_text="ledger.core")).to_have_class(re.compile(r"\bunsatisfied\b"))
    expect(dependencies.filter(has_text="ledger.core").locator(".mark")).to_have_text(
        re.compile("unsatisfied")
    )
    expect(dependencies.filter(has_text="audit.trail").locator(".mark")).to_have_text(re.compile("missing"))
    expect(detail.locator(".dependents li.edge")).to_have_count(0)
    expect(detail.locator(".dependents")).to_contain_text("No capability depends on this one.")
    metadata = detail.locator("dl.metadata").first
    expect(metadata.locator("> dt")).to_contain_text(
        ["dc_identifier", "dc_title", "dc_creator", "dc_subject", "chora_service"]
    )
    expect(metadata).to_contain_text("Billing Team")
    expect(metadata.locator("ul.chips li")).to_have_text(["billing", "invoices"])
    expect(metadata.locator("dl.nested").first).to_contain_text("/livez")
    expect(page).to_have_url(re.compile(r"#billing\.invoices$"))

    detail.get_by_role("button", name="payments.gateway").click()  # follows the link to a dependency
    expect(detail.locator("h2")).to_have_text("payments.gateway")
    dependents = detail.locator(".dependents li.edge")
    expect(dependents).to_have_count(1)
    expect(dependents.first).to_contain_text("billing.invoices")
    expect(dependents.first.locator(".mark")).to_have_text(re.compile("satisfied"))
    expect(page.locator(f"{ROWS}.selected")).to_have_attribute("data-id", "payments.gateway")


def test_the_detail_panel_lists_indirect_dependencies_and_dependents_on_request(page: Page, url: str) -> None:
    page.goto(f"{url}#billing.invoices")
    detail = page.locator("#detail")
    expect(detail.locator(".dependencies li.edge")).to_have_count(3)

    detail.get_by_label("Include indirect dependencies and dependents").check()
    indirect = detail.locator(".dependencies li.edge.indirect")
    expect(indirect).to_have_count(1)  # billing.invoices -> ledger.core -> platform.conventions
    expect(indirect).to_have_attribute("data-id", "platform.conventions")
    expect(indirect).to_contain_text("indirect (2 steps)")
    expect(indirect.locator(".mark")).to_have_text(re.compile("satisfied"))
    expect(detail.locator(".dependencies h3")).to_contain_text("Dependencies (4) · 1 indirect")

    detail.get_by_role("button", name="ledger.core").first.click()  # the choice stays while browsing
    expect(detail.locator("h2")).to_have_text("ledger.core")
    expect(detail.get_by_label("Include indirect dependencies and dependents")).to_be_checked()
    expect(detail.locator(".dependents li.edge")).to_have_count(2)
    detail.get_by_label("Include indirect dependencies and dependents").uncheck()
    expect(detail.locator(".dependencies li.edge")).to_have_count(1)


def test_the_keyboard_reaches_the_rows_opens_a_capability_and_escape_closes_it(page: Page, url: str) -> None:
    open_page(page, url)
    page.get_by_label("Search").focus()
    page.keyboard.press("Tab")  # Type
    page.keyboard.press("Tab")  # State
    page.keyboard.press("Tab")  # the table's current row
    expect(page.locator(f"{ROWS}:focus")).to_have_attribute("data-id", IDS[0])
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(page.locator(f"{ROWS}:focus")).to_have_attribute("data-id", IDS[2])
    page.keyboard.press("Enter")
    expect(page.locator("#detail h2")).to_have_text(IDS[2])
    expect(page.locator("#detail h2")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#detail")).to_be_hidden()
    expect(page.locator(f"{ROWS}:focus")).to_have_attribute("data-id", IDS[2])


def test_a_link_with_a_capability_in_the_fragment_opens_it_and_draws_its_neighbourhood(
    page: Page, url: str
) -> None:
    page.goto(f"{url}#ledger.core")
    expect(page.locator("#detail h2")).to_have_text("ledger.core")
    expect(page.locator("#detail .dependents li.edge")).to_have_count(2)
    expect(page.locator("#graph")).to_have_attribute("data-nodes", "4")  # and platform.conventions
    # the panel opened after the graph's box was first measured: the drawing follows the new box
    wait_for(lambda: painted(page) > 1_000, timeout=5)


def test_the_graph_is_drawn_whole_and_around_the_selected_capability(page: Page, url: str) -> None:
    open_page(page, url)
    graph = page.locator("#graph")

    expect(graph.locator("canvas").first).to_be_attached()
    # five capabilities, plus audit.trail drawn as missing; five dependency edges
    expect(graph).to_have_attribute("data-nodes", "6")
    expect(graph).to_have_attribute("data-edges", "5")
    expect(page.locator("#graph-caption")).to_have_text(
        "6 capabilities and 5 dependencies, the whole registry."
    )
    box = graph.bounding_box()
    assert box is not None
    assert box["width"] > 300
    assert box["height"] > 200
    wait_for(lambda: painted(page) > 2_000, timeout=5)  # painted inside the box, not just counted

    page.locator(ROWS, has_text="payments.gateway").click()
    expect(graph).to_have_attribute("data-nodes", "3")  # billing.invoices -> payments.gateway -> ledger.core
    expect(graph).to_have_attribute("data-edges", "3")
    expect(page.locator("#graph-caption")).to_contain_text("around payments.gateway")


def test_the_problems_are_listed_errors_first_with_file_and_line(page: Page, url: str) -> None:
    open_page(page, url)
    problems = page.locator("#problem-list li")

    expect(problems).to_have_count(2)
    expect(page.locator("#problem-count")).to_have_text("(2, 1 error)")
    expect(problems.nth(0).locator(".where")).to_have_text("capabilities/search.indexer.yaml:7")
    expect(problems.nth(0)).to_contain_text("is not SemVer 2.0; write 0.9.0")
    expect(problems.nth(0).locator(".severity")).to_have_text("error")
    expect(problems.nth(1).locator(".where")).to_have_text("capabilities/billing.invoices.yaml:14")


def test_a_change_event_updates_the_table_detail_and_graph_without_a_reload(
    page: Page, url: str, registry: FakeRegistry
) -> None:
    open_page(page, url)
    page.locator(ROWS, has_text="billing.invoices").click()
    expect(page.locator("#detail .dependencies li.edge")).to_have_count(3)
    page.evaluate("window.notReloaded = true")

    registry.upsert(
        capability("audit.trail", "service", "1.0.0", title="Audit Trail", description="Who did what, when"),
        capability("ledger.core", "pattern", "3.0.0", title="Ledger", description="Double-entry bookkeeping"),
    )
    expect(page.locator(ROWS)).to_have_count(6)
    assert shown_ids(page) == sorted([*IDS, "audit.trail"])
    expect(page.locator(ROWS, has_text="ledger.core").locator(".col-version")).to_have_text("3.0.0")
    # billing.invoices wants ledger.core ^3.0.0 and audit.trail: both satisfied now
    marks = page.locator("#detail .dependencies li.edge .mark")
    expect(marks).to_have_text([re.compile("satisfied")] * 3)
    expect(page.locator("#detail .dependencies li.edge.satisfied")).to_have_count(3)
    expect(page.locator("#graph")).to_have_attribute("data-nodes", "4")  # invoices and its three dependencies
    expect(page.locator("#revision")).to_have_text("42")

    registry.delete("search.indexer")
    expect(page.locator(ROWS)).to_have_count(5)
    assert "search.indexer" not in shown_ids(page)
    assert page.evaluate("window.notReloaded") is True


def test_a_change_event_keeps_the_search_and_a_deleted_capabilitys_panel_says_it_is_gone(
    page: Page, url: str, registry: FakeRegistry
) -> None:
    open_page(page, url)
    page.get_by_label("Search").fill("pay")
    assert_shown(page, ["payments.gateway"])
    page.locator(ROWS).first.click()
    expect(page.locator("#detail h2")).to_have_text("payments.gateway")

    registry.upsert(capability("payroll.runs", "service", "1.0.0", title="Payroll"))
    assert_shown(page, ["payments.gateway", "payroll.runs"])
    registry.delete("payments.gateway")
    assert_shown(page, ["payroll.runs"])
    expect(page.locator("#detail")).to_contain_text("not in the registry")


def listings(registry: FakeRegistry) -> int:
    return sum(request.startswith("/v1/capabilities?") for request in registry.requests)


def test_a_snapshot_event_reloads_everything_but_the_one_on_connecting_does_not(
    page: Page, url: str, registry: FakeRegistry
) -> None:
    open_page(page, url)
    expect(page.locator("#problem-list li")).to_have_count(2)
    assert listings(registry) == 1  # the stream's first snapshot is at the revision just loaded

    registry.snapshot()
    expect(page.locator("#revision")).to_have_text("42")
    assert listings(registry) == 2


def test_metadata_is_shown_as_text_never_as_markup(page: Page, registry: FakeRegistry) -> None:
    hostile = "<img src=x onerror=\"document.body.dataset.owned='yes'\">"
    registry.upsert(capability("evil.one", title=hostile, description=hostile, note=hostile))
    with serving(registry) as address:
        page.goto(f"{address}#evil.one")
        expect(page.locator("#detail .detail-title")).to_have_text(hostile)
        expect(page.locator(ROWS, has_text="evil.one").locator(".col-title")).to_have_text(hostile)
    assert page.locator("#detail img, #capabilities img").count() == 0
    assert page.evaluate("document.body.dataset.owned") is None


def test_the_page_loads_nothing_from_anywhere_but_the_service(page: Page, url: str) -> None:
    elsewhere: list[str] = []
    page.on("request", lambda request: None if request.url.startswith(url) else elsewhere.append(request.url))
    open_page(page, url)
    page.locator(ROWS).first.click()
    expect(page.locator("#detail .edges").first).to_be_visible()
    assert elsewhere == []


def test_ten_thousand_capabilities_scroll_in_a_virtual_table_and_the_graph_waits_for_a_selection(
    page: Page,
) -> None:
    many = [
        capability(
            f"cap.{n:05d}",
            "service" if n % 3 else "pattern",
            f"1.{n % 7}.0",
            requires={f"cap.{n - 1:05d}": "^1.0.0"} if n else None,
        )
        for n in range(10_000)
    ]
    registry = FakeRegistry(many)
    with serving(registry) as address:
        page.goto(address)
        expect(page.locator("#shown")).to_have_text("10,000 capabilities", timeout=30_000)
        assert page.locator(ROWS).count() < 100  # only the rows in view are in the document
        expect(page.locator("#capabilities")).to_have_attribute("aria-rowcount", "10001")

        page.locator("#table-scroll").evaluate("element => { element.scrollTop = element.scrollHeight; }")
        expect(page.locator(ROWS).last).to_have_attribute("data-id", "cap.09999")
        page.get_by_label("Search").fill("cap.0424")
        expect(page.locator("#shown")).to_have_text("10 of 10,000 capabilities")
        expect(page.locator("#graph-caption")).to_contain_text("Select a capability")
        expect(page.locator("#graph")).to_have_attribute("data-nodes", "0")
        assert "/v1/graph" not in registry.requests  # fetched only once there is something to draw

        page.locator(ROWS, has_text="cap.04242").click()
        expect(page.locator("#graph")).to_have_attribute(
            "data-nodes", "3"
        )  # cap.04241 <- cap.04242 <- cap.04243


def test_after_a_dropped_stream_the_page_resumes_from_the_last_event_id_and_misses_nothing(
    page: Page, url: str, registry: FakeRegistry
) -> None:
    open_page(page, url)
    registry.upsert(capability("audit.trail", title="Audit Trail"))
    expect(page.locator(ROWS)).to_have_count(6)
    listed = listings(registry)

    registry.drop_streams()
    registry.upsert(capability("zeta.last", title="Published while the page was away"))  # before the retry

    expect(page.locator(ROWS)).to_have_count(7)
    assert shown_ids(page)[-1] == "zeta.last"
    assert "42" in registry.resumed_from  # the reconnect asked for what came after revision 42
    assert listings(registry) == listed


def test_after_the_event_stream_is_refused_the_page_reconnects_and_reloads_what_it_missed(
    page: Page, url: str, registry: FakeRegistry
) -> None:
    open_page(page, url)
    page.evaluate("window.notReloaded = true")

    registry.refuse_streams(True)
    registry.drop_streams()
    expect(page.locator("#live")).to_have_text("Disconnected")
    registry.upsert(capability("audit.trail", title="Audit Trail"))
    registry.refuse_streams(False)

    expect(page.locator("#live")).to_have_text("Live", timeout=10_000)
    expect(page.locator(ROWS)).to_have_count(6)
    assert page.evaluate("window.notReloaded") is True


def test_an_api_that_is_not_ready_is_said_on_the_page_which_loads_once_it_answers(
    page: Page, url: str, registry: FakeRegistry
) -> None:
    registry.unavailable = True
    page.goto(url)
    banner = page.get_by_role("alert")
    expect(banner).to_contain_text("the catalog has not read etcd yet; try again shortly")
    expect(banner).to_contain_text("Trying again")

    registry.unavailable = False
    expect(page.locator(ROWS)).to_have_count(len(SAMPLE), timeout=15_000)
    expect(banner).to_be_hidden()


def test_the_page_works_under_the_strict_content_security_policy_the_service_sends(
    page: Page, url: str
) -> None:
    page.add_init_script(
        "window.violations = [];"
        "document.addEventListener('securitypolicyviolation', (event) =>"
        " window.violations.push(`${event.violatedDirective} ${event.sourceFile}:${event.lineNumber}`));"
    )
    response = page.goto(url)
    assert response is not None
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    expect(page.locator(ROWS)).to_have_count(len(SAMPLE))
    page.locator(ROWS, has_text="billing.invoices").click()
    expect(page.locator("#detail .dependencies li.edge")).to_have_count(3)
    expect(page.locator("#graph")).to_have_attribute("data-nodes", "4")

    assert page.evaluate("window.violations") == []


def test_an_empty_registry_says_so(page: Page) -> None:
    with serving(FakeRegistry([])) as address:
        page.goto(address)
        expect(page.locator("#no-match")).to_be_visible()
        expect(page.locator("#no-match")).to_have_text("The registry holds no capabilities yet.")
        expect(page.locator("#shown")).to_have_text("0 capabilities")
        expect(page.locator("#problem-list")).to_contain_text("No problems")
