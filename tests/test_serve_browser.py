"""The calculator in a real browser: Debian's chromium, headless, driven by playwright (which cannot download its
own browser here, so it is pointed at /usr/bin/chromium). Load the page, submit a budget, see the plan and its
plots. `MOEPLAN_SCREENSHOT=docs/service-page.png` also saves the screenshot docs/service.md shows.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.test_serve_server import Server

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                       args=FLAGS, viewport={"width": 1280, "height": 900})
        yield context
        context.close()


def test_page_plans_a_budget_and_shows_the_plan_and_its_plots(browser_context, tmp_path):
    server = Server(tmp_path, f"sqlite:///{tmp_path / 'studies.db'}", 1, "--dashboard-url",
                    "http://127.0.0.1:8080").start()
    requests = []
    try:
        page = browser_context.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"http://127.0.0.1:{server.port}/")
        assert page.title() == "moeplan: plan a Mixture-of-Experts run"
        page.fill("#flops", "3e21")
        page.fill("#max-params", "2e10")
        page.click("#submit")
        page.wait_for_selector("#result:not([hidden])", timeout=120_000)
        # the page shows the plan the API gives for the same request
        status, plan = server.call("POST", "/api/plan", {"flops": 3e21, "max_params": 2e10, "objective": "loss"})
        assert status == 200
        assert page.text_content("#headline") == f"Plan for 3.00e+21 FLOPs: predicted loss {plan['law']['loss']:.4f}"
        summary = page.text_content("#summary")
        a = plan["architecture"]
        assert f"{a['n_layers']} layers x d_hidden {a['d_hidden']}" in summary
        binding = plan["search"]["binding"]
        assert page.locator("#binding li").count() == max(1, len(binding))
        if binding:
            assert binding[0]["constraint"] in page.text_content("#binding")
        # the three figures arrive as SVG and are drawn
        for kind in ("isoflop", "band", "pareto"):
            page.wait_for_function(f"document.getElementById('plot-{kind}').naturalWidth > 0", timeout=120_000)
        link = page.wait_for_selector("#study a", timeout=30_000)
        assert link.get_attribute("href").startswith("http://127.0.0.1:8080/dashboard/studies/")
        with page.expect_download() as download:
            page.click("#download-hf")
        config = json.loads(Path(download.value.path()).read_text())
        assert config["num_hidden_layers"] == a["n_layers"] and config["hidden_size"] == a["d_hidden"]
        with page.expect_download() as download:
            page.click("#download-megatron")
        script = Path(download.value.path()).read_text()
        assert script.startswith("#!/usr/bin/env bash") and f"--num-layers {a['n_layers']}" in script
        shot = os.environ.get("MOEPLAN_SCREENSHOT")
        page.screenshot(path=shot or str(tmp_path / "page.png"), full_page=True)
        # offline: every request the page made went to this service
        assert requests and all(u.startswith(f"http://127.0.0.1:{server.port}/") or u.startswith("blob:")
                                for u in requests), requests
        # a bad budget: one line in the status, the page keeps working
        page.fill("#flops", "-5")
        page.click("#submit")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('422')")
        assert "greater than 0" in page.text_content("#status")
        # a cluster for a time: memory per device and the layout decide the model
        page.check("input[name=mode][value=days]")
        page.fill("#gpus", "64")
        page.select_option("#cluster-gpu", "h100")
        page.fill("#days", "3")
        page.fill("#max-params", "")
        page.click("#submit")
        page.wait_for_function("document.getElementById('summary').textContent.includes('calendar')",
                               timeout=120_000)
        summary = page.text_content("#summary")
        assert "64 x NVIDIA H100" in summary and "GiB" in summary and "3.0 days" in summary, summary
    finally:
        server.stop()
