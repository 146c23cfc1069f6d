"""The web console in a real browser: Debian's Chromium, headless, driven by Playwright.

Playwright's own browser download is not used: it launches the system's /usr/bin/chromium (the
README's test command installs it with apt). Against a real `tessera serve --http-port` behind API
keys, the test types a text query and finds the expected top hit, uploads a real FSDD recording and
sees a handwritten digit image of the same digit among the results, opens a corpus page, and saves
a screenshot of a results page to benchmarks/results/console.png (shown in the README).
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import tessera
from tests.conftest import FSDD, REPO
from tests.http_server import HttpServe

KEYS = {"read": "c-read-9e2f61", "admin": "c-admin-47ad0c"}
SPACE = "digits"
SAMPLES = Path(str(resources.files("tessera") / "samples"))
QUESTION = "how does approximate nearest-neighbour search avoid scanning everything?"
QUERY_WAV = "3_theo_0.wav"  # a speaker whose clips are not in the corpus; the digit is 3
SCREENSHOT = REPO / "benchmarks" / "results" / "console.png"
PER_DIGIT = 5


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is not installed: `apt-get install -y chromium` (the README's test command does it)")
    return path


def _digit_pngs() -> list[tuple[int, bytes]]:
    """scikit-learn's 8x8 handwritten digits (0..16 ink), PER_DIGIT of each, as grayscale PNGs."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = []
    for digit in range(10):
        for row in np.flatnonzero(digits.target == digit)[:PER_DIGIT]:
            pixels = (digits.data[row].reshape(8, 8) * (255 / 16)).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
            out.append((digit, buffer.getvalue()))
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[HttpServe]:
    root = tmp_path_factory.mktemp("console")
    keys = root / "keys.txt"
    keys.write_text("".join(f"{key} {role}\n" for role, key in KEYS.items()))
    serve = HttpServe(root / "data", "--auth-keys", str(keys))
    try:
        with tessera.connect(serve.address, api_key=KEYS["admin"], timeout=300) as db:
            sentences = [s for s in (SAMPLES / "sentences.txt").read_text().splitlines() if s.strip()]
            db.create_corpus("passages", space=SPACE, modality="text")
            db.upsert("passages", [{"id": f"s{i}", "text": s} for i, s in enumerate(sentences)])
            db.create_corpus("digit-images", space=SPACE, modality="image")
            images = [
                {"id": f"digit-{d}-{i % PER_DIGIT}", "data": png, "metadata": {"digit": d}}
                for i, (d, png) in enumerate(_digit_pngs())
            ]
            db.upsert("digit-images", images, modality="image")
            db.create_corpus("spoken-digits", space=SPACE, modality="audio")
            clips = [FSDD / f"{d}_jackson_1.wav" for d in range(10)]
            db.upsert(
                "spoken-digits",
                [{"id": p.stem, "path": p, "metadata": {"digit": int(p.stem[0])}} for p in clips],
                modality="audio",
            )
        yield serve
    finally:
        serve.stop()


def _search(page, previous: str | None) -> str:
    """Click Search and wait for the results list to be redrawn; returns its new stamp."""
    page.click("#search-button")
    page.wait_for_function(
        "prev => { const r = document.querySelector('#results'); const done = r.getAttribute('data-done');"
        " return done && done !== prev && !r.hasAttribute('aria-busy'); }",
        arg=previous,
        timeout=60_000,
    )
    return page.get_attribute("#results", "data-done")


def _hits(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#results .hit",
        "els => els.map(e => ({id: e.dataset.id, corpus: e.dataset.corpus, modality: e.dataset.modality,"
        " metadata: JSON.parse(e.dataset.metadata), img: (e.querySelector('img') || {}).naturalWidth || 0,"
        " text: e.innerText}))",
    )


def test_console_text_query_audio_upload_and_corpus_page(server: HttpServe) -> None:
    from playwright.sync_api import sync_playwright

    with tessera.connect(server.address, api_key=KEYS["read"]) as db:
        expected = db.search(QUESTION, space=SPACE, corpora=["passages"], top_k=10).hits[0]
    wav = FSDD / QUERY_WAV
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(server.url + "/")
            page.wait_for_selector("body[data-ready=true]")
            # Behind API keys: without one the page says so; the key goes into the tab's session, not the URL.
            assert "UNAUTHENTICATED" in page.inner_text("#error")
            page.fill("#api-key", KEYS["read"])
            page.click("#key-form button")
            page.wait_for_selector("tr[data-corpus=digit-images]")
            assert page.inner_text("tr[data-corpus=digit-images] .count") == str(10 * PER_DIGIT)
            assert KEYS["read"] not in page.url
            assert page.evaluate("sessionStorage.getItem('tessera-api-key')") == KEYS["read"]

            # Text query on the passages corpus: the top hit is the one the gRPC client gets.
            page.check("tr[data-corpus=passages] .pick")
            page.fill("#query-text", QUESTION)
            stamp = _search(page, None)
            hits = _hits(page)
            assert hits[0]["id"] == expected.id and expected.text in hits[0]["text"]
            assert page.is_hidden("#error")

            # A real FSDD recording uploaded as the query, against the digit images.
            page.uncheck("tr[data-corpus=passages] .pick")
            page.check("tr[data-corpus=digit-images] .pick")
            page.fill("#query-text", "")
            page.set_input_files("#query-file", str(wav))
            stamp = _search(page, stamp)
            page.wait_for_function("() => [...document.querySelectorAll('#results img')].every(i => i.complete)")
            hits = _hits(page)
            digit = int(QUERY_WAV[0])
            same = [h for h in hits if h["modality"] == "image" and h["metadata"]["digit"] == digit]
            assert same, f"no image of a {digit} among {[h['metadata'] for h in hits]}"
            assert all(h["img"] > 0 for h in same)  # the thumbnails were fetched (with the key) and drawn

            # A routed text query over every corpus: the results page the README shows.
            page.uncheck("tr[data-corpus=digit-images] .pick")
            page.click("#clear-file")
            page.fill("#query-text", "the number seven")
            _search(page, stamp)
            page.wait_for_function("() => [...document.querySelectorAll('#results img')].every(i => i.complete)")
            modalities = {h["modality"] for h in _hits(page)}
            assert {"text", "image", "audio"} <= modalities, modalities
            assert page.locator("#results audio").count() >= 1
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            # The corpus page: describe output and a few sample items.
            page.click("a.corpus-link:text-is('digit-images')")
            page.wait_for_selector("#samples[data-done]")
            describe = page.inner_text("#describe")
            assert "digits@1" in describe and str(10 * PER_DIGIT) in describe
            samples = page.eval_on_selector_all("#samples .hit", "els => els.map(e => e.dataset.id)")
            assert 1 <= len(samples) <= 6 and all(s.startswith("digit-") for s in samples)
            assert json.loads(page.get_attribute("#samples .hit", "data-metadata"))["digit"] in range(10)
        finally:
            browser.close()
