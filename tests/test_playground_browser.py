"""The playground page in a real browser: Playwright drives a headless Chromium (Debian's `chromium` package,
since Playwright's own browser download is out of reach) against a server on 127.0.0.1.

Skipped, with one line saying why, where no Chromium is installed (``apt-get install chromium``).
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.inspection import inspect_text
from cleangpt_core.model import get_model, save_model
from cleangpt_core.serving import Server, load_engine
from cleangpt_core.serving.background import running_server
from cleangpt_core.testing.architecture import perturb_parameters
from cleangpt_core.tokenizers import CharacterTokenizer

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = os.environ.get("CLEANGPT_CHROMIUM") or next(
    (path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None
)
if CHROMIUM is None:  # one line for the whole module
    pytest.skip("no Chromium installed (apt-get install chromium) for the browser test", allow_module_level=True)
pytestmark = pytest.mark.slow  # a browser starts


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser") / "tiny"
    tokenizer = CharacterTokenizer(vocab=list("abcdefgh .\n"))
    torch.manual_seed(0)
    model = get_model("Vanilla", vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=16, block_size=32)
    save_model(perturb_parameters(model, seed=2), root)
    tokenizer.save_pretrained(root / "tokenizer")
    engine = load_engine(root)
    with running_server(Server(engine).app()) as url:
        yield root, engine, url


@pytest.fixture(scope="module")
def page(served):
    with playwright.sync_playwright() as driver:
        # --no-sandbox: Chromium's sandbox refuses to run as root, as CI does
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(served[2] + "/")
        yield page
        browser.close()


def test_typing_a_prompt_streams_tokens_coloured_by_probability(served, page):
    root = served[0]
    playwright.expect(page.locator("#model-name")).to_have_text("model: tiny")
    page.fill("#prompt", "abc")
    page.fill("#max-tokens", "90")  # past the 32-token context each step re-reads the window: a visible stream
    page.fill("#seed", "4")
    page.fill("#temperature", "0")  # greedy: this prompt then never meets the end-of-text token
    # count the separate moments tokens arrive: streamed text comes in many, a whole answer in one
    page.evaluate(
        """() => { window.arrivals = 0;
        new MutationObserver(() => { window.arrivals += 1; }).observe(
            document.getElementById('output'), { childList: true }); }"""
    )
    page.click("#generate")
    playwright.expect(page.locator("#status")).to_contain_text("finish:", timeout=30_000)
    tokens = page.locator("#output .token")
    assert tokens.count() > 3
    assert page.evaluate("window.arrivals") > 3
    # the end-of-text token is shown (marked special) but is not part of the text
    shown = "abc" + "".join(page.locator("#output .token:not(.special)").all_text_contents())
    expected = CliRunner().invoke(cli, ["generate", str(root), "-p", "abc", "-n", "90", "--seed", "4", "-t", "0"])
    assert shown == expected.output.removesuffix("\n")
    probability = float(tokens.nth(1).get_attribute("data-probability"))
    assert 0.0 < probability <= 1.0
    assert "hsl(" in tokens.nth(1).get_attribute("style") or "rgb(" in tokens.nth(1).get_attribute("style")


def test_hovering_a_token_shows_its_top_alternatives(page):
    token = page.locator("#output .token").nth(2)
    token.hover()
    tooltip = page.locator("#tooltip")
    playwright.expect(tooltip).to_be_visible()
    assert "alternatives:" in tooltip.inner_text()
    assert len(tooltip.inner_text().splitlines()) >= 3  # the token, the heading, at least one alternative


def test_switching_layer_and_head_draws_that_heads_attention_over_the_prompt(served, page):
    _, engine, _ = served
    expected = inspect_text(engine.model, engine.tokenizer, "abc")["attention"]["h.1.attn"][1]
    page.select_option("#layer", "h.1.attn")
    page.select_option("#head", "1")
    rows = page.locator("#attention tbody tr")
    playwright.expect(rows).to_have_count(3)
    drawn = [float(cell.get_attribute("data-weight")) for r in range(3) for cell in rows.nth(r).locator("td").all()]
    assert drawn == pytest.approx([weight for row in expected for weight in row], abs=1e-6)
    other_head = inspect_text(engine.model, engine.tokenizer, "abc")["attention"]["h.1.attn"][0]
    assert drawn != pytest.approx([weight for row in other_head for weight in row], abs=1e-6)


def test_a_refused_request_shows_the_servers_error_and_clears_the_old_state(page):
    # the tests above left a finished stream and an attention map of "abc" on the page
    page.fill("#temperature", "0")
    page.fill("#prompt", "ab€")  # the character vocabulary has no euro sign: a 400 naming it
    page.click("#generate")
    playwright.expect(page.locator("#error")).to_contain_text("'€'")
    playwright.expect(page.locator("#status")).to_have_text("refused")
    playwright.expect(page.locator("#attention tbody tr")).to_have_count(0)
    playwright.expect(page.locator("#attention-note")).to_contain_text("No attention map")
    page.fill("#prompt", "abc")
    page.fill("#temperature", "3")  # out of range: refused before any token, with the field named
    page.click("#generate")
    playwright.expect(page.locator("#error")).to_contain_text("temperature")
    playwright.expect(page.locator("#status")).to_have_text("refused")
    assert page.locator("#generate").is_enabled()
