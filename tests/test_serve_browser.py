"""`textvae serve` in a real browser: headless Chromium (Debian's package) driven by Playwright loads the page, runs
a homotopy, moves its slider, clicks the map, and checks what the page shows against what the JSON API answers.

Slow: the fixtures start the command line's server in a subprocess. The README's screenshots come from real runs
(their validation items at hand, so from the repository root), written into docs/ by:

    TEXTVAE_SERVE_MODEL=runs/words_en TEXTVAE_SERVE_TEXTS="sunshine|thunderstorm" \
    TEXTVAE_SERVE_CONDITIONAL=runs/names TEXTVAE_SCREENSHOTS=docs pytest tests/test_serve_browser.py
"""

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from words import TINY_MODEL, WORDS

from textvae.data.tokenizer import CharTokenizer
from textvae.io import checkpoint
from textvae.io.checkpoint import RunInfo
from textvae.model.vae import TextVAE
from textvae.settings import DataConfig, ModelConfig

pytestmark = pytest.mark.slow
playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
if CHROMIUM is None:
    pytest.skip("needs Chromium: apt-get install chromium", allow_module_level=True)


class Server:
    """`textvae serve` on a free port, in a subprocess; `call` asks its JSON API."""

    def __init__(self, *args: str):
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        self.proc = subprocess.Popen([sys.executable, "-m", "textvae", "serve", "--port", "0", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(60)
        if not line or not line[0].startswith("http://"):
            self.stop()
            raise AssertionError(f"the server did not start: {self.proc.stderr.read()}")
        self.url = line[0].strip()

    def call(self, route: str, body: dict | None = None, timeout: float = 30):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/api/{route}", data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return json.loads(r.read())

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


@pytest.fixture(scope="module")
def words_server(trained_run, tiny_corpus):
    model = os.environ.get("TEXTVAE_SERVE_MODEL", str(trained_run))
    data = os.environ.get("TEXTVAE_SERVE_DATA", "" if "TEXTVAE_SERVE_MODEL" in os.environ else str(tiny_corpus))
    server = Server("--model", model, *(["--data", data] if data else []))
    yield server
    err = server.stop()
    assert "Traceback" not in err, err


@pytest.fixture(scope="module")
def conditional_server(tmp_path_factory):
    """An untrained conditional model with a "no label" id (so it takes guidance), and labelled items for its
    map: the browser test checks the page's wiring, not the model's quality."""
    if "TEXTVAE_SERVE_CONDITIONAL" in os.environ:
        server = Server("--model", os.environ["TEXTVAE_SERVE_CONDITIONAL"])
        yield server
        server.stop()
        return
    folder = tmp_path_factory.mktemp("conditional")
    rng = random.Random(0)
    rows = [(w, "fruit" if i % 2 else "water") for i, w in enumerate(rng.sample(WORDS, len(WORDS)))]
    (folder / "items.tsv").write_text("text\tlabel\n" + "".join(f"{w}\t{y}\n" for w, y in rows))
    tok = CharTokenizer.fit([w for w, _ in rows])
    torch.manual_seed(0)
    net = TextVAE(ModelConfig(vocab_size=tok.vocab_size, num_labels=2, null_label=True, **TINY_MODEL))
    run = RunInfo(data=DataConfig(label_column="label"), labels=("fruit", "water"), longest_item=8)
    checkpoint.save(folder / "model.safetensors", net, tok, run)
    server = Server("--model", str(folder / "model.safetensors"), "--data", str(folder / "items.tsv"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A page that records its errors and every address it asks for."""
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    page = context.new_page()
    page.errors, page.requested = [], []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("request", lambda r: page.requested.append(r.url))
    yield page
    context.close()


def shoot(page, panel: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("TEXTVAE_SCREENSHOTS", tmp_path))
    page.locator(f"#{panel}").screenshot(path=str(folder / f"serve_{panel}.png"))


def isolated_points(positions: list[list[float]], count: int, gap: float = 9.0) -> list[int]:
    """Indices of `count` points with no other point within `gap` pixels: a click there picks that point."""
    out = []
    for i, (x, y) in enumerate(positions):
        if all((x - u) ** 2 + (y - v) ** 2 > gap ** 2 for j, (u, v) in enumerate(positions) if j != i):
            out.append(i)
            if len(out) == count:
                break
    assert len(out) == count, "no isolated points on the map"
    return out


def test_the_page_runs_a_homotopy_moves_its_slider_and_clicks_the_map(page, words_server, tmp_path):
    expect = playwright.expect
    server = words_server
    page.goto(server.url)
    expect(page.locator("#model-info")).to_contain_text("codes of")

    # homotopy: two texts, seven rows, changed characters highlighted, endpoint fidelity
    a, b = os.environ.get("TEXTVAE_SERVE_TEXTS", "the food was great|the service was slow").split("|")
    page.fill("#hom-a", a)
    page.fill("#hom-b", b)
    page.click("#hom-run")
    path = server.call("interpolate", {"a": a, "b": b, "steps": 7})
    expect(page.locator("#hom-rows tr")).to_have_count(7)
    expect(page.locator("#hom-rows td.t")).to_have_text([t or "\u00a0" for t in path["texts"]])
    if any(changed for pieces in path["changed"] for _, changed in pieces):
        assert page.locator("#hom-rows mark").count() > 0
    expect(page.locator("#hom-fidelity")).to_contain_text(f"A decodes to “{path['fidelity']['a']['decoded']}”")

    # the slider walks a finer path of the same line, decoded at once
    fine = server.call("interpolate", {"a": a, "b": b, "steps": 41})["texts"]
    slider = page.locator("#hom-slider")
    expect(slider).to_be_enabled()
    expect(page.locator("#hom-point")).to_have_text(f"0.00  {fine[0]}")
    slider.focus()
    page.keyboard.press("End")
    expect(page.locator("#hom-point")).to_have_text(f"1.00  {fine[-1]}")
    for _ in range(20):
        page.keyboard.press("ArrowLeft")
    expect(page.locator("#hom-point")).to_have_text(f"0.50  {fine[20]}")
    expect(page.locator("#hom-rows tr.current")).to_have_count(1)
    shoot(page, "homotopy", tmp_path)

    # map: hover shows a point's text; clicking two points fills A and B; clicking empty space decodes it
    expect(page.locator("#map-legend")).to_contain_text("PC 1")
    texts = page.evaluate("explorer.state.map.texts")
    page.locator("#map-canvas").scroll_into_view_if_needed()
    positions = page.evaluate("explorer.state.map.texts.map((_, i) => explorer.pointInWindow(i))")
    assert texts == server.call("map")["texts"]
    i, j = isolated_points(positions, 2)
    page.mouse.move(*positions[i])
    expect(page.locator("#map-tip")).to_be_visible()
    expect(page.locator("#map-tip")).to_have_text(texts[i])
    page.mouse.click(*positions[i])
    expect(page.locator("#hom-a")).to_have_value(texts[i])
    page.mouse.click(*positions[j])
    expect(page.locator("#hom-b")).to_have_value(texts[j])
    expect(page.locator("#map-readout")).to_contain_text(f"B ← {texts[j]}")
    box = page.locator("#map-canvas").bounding_box()
    page.mouse.click(box["x"] + 4, box["y"] + 4)                  # a corner: points keep 12 px from the edges
    expect(page.locator("#map-readout")).to_contain_text("decodes to: ")
    shoot(page, "map", tmp_path)
    page.click("#hom-run")
    expect(page.locator("#hom-rows td.t").first).to_have_text(
        server.call("interpolate", {"a": texts[i], "b": texts[j]})["texts"][0] or "\u00a0")

    # around a sentence: N decodings, again when the radius moves
    page.fill("#near-text", a)
    page.click("#near-run")
    near = server.call("near", {"text": a, "n": 10, "radius": 1.0, "seed": 0})["texts"]
    expect(page.locator("#near-list li")).to_have_text(near)
    page.locator("#near-radius").focus()
    for _ in range(10):
        page.keyboard.press("ArrowLeft")                         # 1.00 -> 0.50
    expect(page.locator("#near-radius-value")).to_have_text("0.50")
    near = server.call("near", {"text": a, "n": 10, "radius": 0.5, "seed": 0})["texts"]
    expect(page.locator("#near-list li")).to_have_text(near)
    shoot(page, "near", tmp_path)

    # samples: the seed repeats them
    page.fill("#sample-temperature", "0.8")
    page.click("#sample-run")
    samples = server.call("sample", {"n": 10, "seed": 1, "temperature": 0.8})["texts"]
    expect(page.locator("#sample-list li")).to_have_text(samples)
    shoot(page, "samples", tmp_path)

    # an error is a line in its panel, not a broken page
    page.fill("#hom-a", "")
    page.click("#hom-run")
    expect(page.locator("#hom-error")).to_have_text("a: empty text; give at least one character")

    assert [e for e in page.errors if "400" not in e] == []          # the refused request's console line only
    assert all(u.startswith((server.url, "data:")) for u in page.requested), page.requested


def test_a_conditional_model_shows_labels_guidance_and_label_transfer(page, conditional_server, tmp_path):
    expect = playwright.expect
    server = conditional_server
    labels = server.call("info")["labels"]
    page.goto(server.url)
    expect(page.locator("#model-info")).to_contain_text(f"labels: {', '.join(labels)}")
    expect(page.locator("#transfer")).to_be_visible()
    expect(page.locator("#sample-label")).to_be_visible()
    expect(page.locator("#samples .guidance")).to_be_visible()

    page.select_option("#sample-label", labels[1])
    page.fill("#samples .guidance", "2")
    page.click("#sample-run")
    samples = server.call("sample", {"n": 10, "seed": 1, "label": labels[1], "guidance": 2})["texts"]
    expect(page.locator("#sample-list li")).to_have_text(samples)

    # the map is coloured by label, and a clicked point brings its text and label to the homotopy
    expect(page.locator("#map-legend .key")).to_have_text(labels)
    texts, their = page.evaluate("[explorer.state.map.texts, explorer.state.map.labels]")
    page.locator("#map-canvas").scroll_into_view_if_needed()
    positions = page.evaluate("explorer.state.map.texts.map((_, i) => explorer.pointInWindow(i))")
    i, j = isolated_points(positions, 2)
    page.mouse.click(*positions[i])
    page.mouse.click(*positions[j])
    expect(page.locator("#hom-label")).to_have_value(their[i])
    expect(page.locator("#hom-label-b")).to_have_value(their[j])
    page.click("#hom-run")
    expect(page.locator("#hom-rows tr")).to_have_count(7)

    # label transfer: that item re-written under the other label
    other = next(y for y in labels if y != their[i])
    page.fill("#transfer-text", texts[i])
    page.select_option("#transfer-label", their[i])
    page.select_option("#transfer-to", other)
    page.click("#transfer-run")
    out = server.call("reconstruct", {"text": texts[i], "label": their[i], "to_label": other})["text"]
    expect(page.locator("#transfer-out")).to_have_text(f"as {other}: {out}")
    shoot(page, "transfer", tmp_path)
    assert page.errors == []


def test_fifty_concurrent_requests_all_succeed_within_two_seconds(words_server):
    server = words_server
    bodies = [("interpolate", {"a": "apple", "b": "river", "steps": 7}), ("near", {"text": "apple", "n": 10}),
              ("sample", {"n": 10, "seed": 3}), ("encode", {"texts": ["apple", "river"]})]

    def timed(k):
        route, body = bodies[k % len(bodies)]
        start = time.perf_counter()
        server.call(route, body, timeout=10)
        return time.perf_counter() - start

    with ThreadPoolExecutor(50) as pool:
        times = list(pool.map(timed, range(50)))
    assert len(times) == 50 and max(times) < 2.0, sorted(times)[-5:]
