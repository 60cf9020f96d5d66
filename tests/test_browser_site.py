"""``optnb site`` in a real browser: chromium opens the index through ``file://`` with no network,
follows every link, and checks that every page shows all its figures (each ``<img>`` decoded,
one per figure of the executed notebook), that no link is broken (files exist, in-page anchors
have their target) and that nothing is fetched from outside the site or fails to load.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import browser_util
import pytest
from test_site import BLOCKED, EXPECTED_ORDER, figures_in, make_results

from optnb.experiments import site

pytestmark = pytest.mark.browser

reason = browser_util.skip_reason()
if reason:
    pytest.skip(reason, allow_module_level=True)

#: the page's <img> elements: decoded size, and whether they sit in a cell's output
IMAGES = """() => Array.from(document.images).map(i => ({
    src: i.src.slice(0, 40), width: i.naturalWidth, complete: i.complete,
    output: i.closest('.jp-OutputArea-output') !== null}))"""
LINKS = "() => Array.from(document.querySelectorAll('a[href]')).map(a => [a.getAttribute('href'), a.href])"
#: whether following an in-page link finds its target (the browser's own rule: raw id, then decoded)
FINDS_TARGET = "href => { location.hash = href; return document.querySelector(':target') !== null; }"


def test_every_page_has_its_figures_and_no_link_is_broken(tmp_path: Path):
    from playwright.sync_api import sync_playwright

    results = make_results(tmp_path)
    typeset = site.find_mathjax() is not None  # pip's jupyter-server-mathjax ([dev] and [teach] install it)
    index, _ = site.build(results)
    root = index.parent
    outside: list[str] = []
    failed: list[str] = []
    with sync_playwright() as p:
        browser = browser_util.launch_chromium(p)
        context = browser.new_context(offline=True)
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
                      else (outside.append(route.request.url), route.abort()))
        page = context.new_page()
        errors = browser_util.collect_errors(page)
        page.on("requestfailed", lambda request: failed.append(request.url))
        with browser_util.screenshot_on_failure(page, "site"):
            todo, seen = [index], set()
            while todo:
                path = todo.pop()
                if path in seen:
                    continue
                seen.add(path)
                page.goto(path.as_uri(), wait_until="load")
                images = page.evaluate(IMAGES)
                assert all(i["complete"] and i["width"] > 0 for i in images), (path.name, images)
                run_id = path.stem
                if path.parent == root / site.PAGES and run_id != BLOCKED:
                    executed = next((results / "runs" / run_id).glob("*.ipynb"))
                    assert sum(i["output"] for i in images) == figures_in(executed) > 0, (path.name, images)
                    if typeset:  # every fixture page has the math of eq. (1) in its first cell
                        page.wait_for_selector(".MathJax", timeout=30_000)
                for href, absolute in page.evaluate(LINKS):
                    target = urlsplit(absolute)
                    assert target.scheme == "file", (path.name, href)
                    if href.startswith("#"):
                        assert page.evaluate(FINDS_TARGET, href), (path.name, href)
                        continue
                    linked = Path(unquote(target.path))
                    assert linked.is_file() and linked.is_relative_to(root), (path.name, href)
                    if linked.suffix == ".html":
                        todo.append(linked)
        browser.close()
    pages = {p.relative_to(root).as_posix() for p in seen}
    assert pages == {"index.html", "report.html", *(f"runs/{r}.html" for r in EXPECTED_ORDER if r != BLOCKED)}
    assert not outside and not failed and not errors, (outside, failed, errors)
