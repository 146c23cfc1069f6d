"""RAG end to end on the project's own README: chunked ingest, the context builder, LlamaIndex, errors."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tessera.background import ServerThread
from tessera.chunking import chunk_text, html_to_text
from tessera.client import Client
from tessera.integrations.common import TesseraUnavailableError
from tessera.integrations.langchain import TesseraRetriever, TesseraVectorStore
from tessera.integrations.llama_index import TesseraLlamaRetriever
from tessera.rag import build_context

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# A few short documents on unrelated subjects, several chunks each, in the three document formats.
DOCUMENTS = {
    "baking/sourdough.md": """# Sourdough at home

Feed the starter twice a day with equal weights of flour and water. A healthy starter doubles
within six hours at room temperature and smells pleasantly sour, like yoghurt.

Mix the dough, rest it for an hour, then fold it every thirty minutes during bulk fermentation.
The dough is ready to shape when it has grown by about half and jiggles when the bowl is shaken.

Bake the loaf in a preheated Dutch oven at 250 degrees Celsius with the lid on for twenty minutes,
then remove the lid and bake for another twenty-five minutes until the crust is deep brown.

Let the bread cool for at least an hour before slicing, or the crumb will be gummy.
""",
    "sea/tides.html": """<html><head><title>Tides</title><style>p {color: navy}</style></head><body>
<h1>Why the sea rises and falls</h1>
<p>Tides are caused mainly by the gravitational pull of the Moon, with a smaller
contribution from the Sun. The water bulges on the side facing the Moon and on the far side.</p>
<p>Spring tides, with the largest range, happen near full and new moon, when the Sun and the Moon
pull along the same line. Neap tides, with the smallest range, happen at the quarter moons.</p>
<p>Most coasts see two high tides and two low tides in a little more than a day.</p>
</body></html>""",
    "bikes/maintenance.txt": """Looking after a bicycle

Clean and lubricate the chain every few hundred kilometres; a dry chain wears the cassette and
squeaks. Wipe off excess oil so that it does not collect grit.

Road tyres usually run at six to eight bar, while mountain bike tyres run far lower, often
under two bar, for grip on loose ground. Check the pressure weekly.

Replace brake pads when the grooves on their surface have worn away.
""",
}
QUESTION = "At what temperature and for how long should I bake the sourdough loaf?"
ANSWER_SOURCE, ANSWER_MARK = "baking/sourdough.md", "250 degrees Celsius"


def _tessera(*args: str, address: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TESSERA_SERVER": address}
    command = [sys.executable, "-m", "tessera.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("documents")
    for name, text in DOCUMENTS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory, documents: Path) -> Iterator[ServerThread]:
    server = ServerThread(tmp_path_factory.mktemp("rag")).start()
    with Client(server.address) as client:
        client.create_corpus("docs", space="minilm", modality="text")
        client.create_corpus("readme", space="minilm", modality="text")
    chunking = ("--chunk-size", "300", "--chunk-overlap", "60")
    for corpus, path in (("docs", documents), ("readme", README)):
        result = _tessera("ingest", corpus, str(path), *chunking, address=server.address)
        assert result.returncode == 0, result.stderr
    yield server
    server.stop()


def _answer_span(documents: Path) -> tuple[str, int]:
    from tessera.chunking import read_document

    text = read_document(documents / ANSWER_SOURCE)
    return text, text.index(ANSWER_MARK)


def test_chunks_stay_within_size_overlap_and_point_back_to_their_text() -> None:
    text = README.read_text()
    chunks = chunk_text(text, size=800, overlap=150)
    assert len(chunks) > 10
    for chunk in chunks:
        assert len(chunk.text) <= 800
        assert text[chunk.start : chunk.end] == chunk.text
    for before, after in itertools.pairwise(chunks):
        assert after.start > before.start
        assert after.start < before.end  # neighbours overlap, so no sentence falls between two chunks
    covered = sorted((c.start, c.end) for c in chunks)
    assert covered[0][0] <= len(text) - len(text.lstrip()) and covered[-1][1] == len(text.rstrip())
    with pytest.raises(ValueError, match="overlap < size"):
        chunk_text(text, size=100, overlap=100)


def test_html_documents_lose_tags_scripts_and_styles() -> None:
    html = "<html><head><style>p{}</style><title>t</title></head><body><h1>Title</h1><p>One &amp; two.</p>"
    html += "<script>alert(1)</script><p>Three</p></body></html>"
    assert html_to_text(html) == "Title\n\nOne & two.\n\nThree"


def test_ingested_chunks_keep_source_and_offsets(docs_server: ServerThread) -> None:
    text = README.read_text()
    with Client(docs_server.address) as client:
        count = client.describe_corpus("readme")["count"]
        assert count == len(chunk_text(text, 300, 60))
        item = client.get("readme", ["README.md#3"])[0]
    meta = item["metadata"]
    assert meta["source"] == "README.md" and meta["chunk"] == 3
    assert text[meta["start"] : meta["end"]] == item["text"]


def test_context_builder_cites_the_chunk_that_answers(docs_server: ServerThread, documents: Path) -> None:
    text, mark = _answer_span(documents)
    asked: list[str] = []
    with Client(docs_server.address) as client:
        context = build_context(client, QUESTION, corpora=["docs"], top_k=5)
        answered = build_context(client, QUESTION, corpora=["docs"], generate=lambda p: asked.append(p) or "ok")
    top = context.passages[0]
    assert top.number == 1 and top.source == ANSWER_SOURCE
    assert top.start <= mark < top.end, (top.start, top.end, mark, top.text)
    assert text[top.start : top.end] == top.text
    assert len({c.source for c in context.passages}) > 1  # the other documents were in the running
    prompt = context.prompt()
    assert prompt.startswith("Answer the question")
    assert f"[1] ({ANSWER_SOURCE}, characters {top.start}-{top.end})" in prompt
    assert prompt.rstrip().endswith(QUESTION)
    assert answered.answer == "ok" and asked == [answered.prompt()]


def test_rag_command_prints_markdown_and_json(docs_server: ServerThread) -> None:
    as_json = _tessera("rag", QUESTION, "--corpus", "docs", "--format", "json", address=docs_server.address)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["question"] == QUESTION and data["passages"][0]["source"] == ANSWER_SOURCE
    assert data["passages"][0]["number"] == 1 and "Question: " + QUESTION in data["prompt"]
    as_md = _tessera("rag", QUESTION, "--corpus", "docs", address=docs_server.address)
    assert as_md.returncode == 0, as_md.stderr
    assert as_md.stdout.startswith("## Question") and "**[1]**" in as_md.stdout
    assert f"{ANSWER_SOURCE}, characters" in as_md.stdout


def test_context_builder_routes_to_media_corpora_and_references_them(tmp_path: Path) -> None:
    from importlib import resources

    server = ServerThread(tmp_path / "data").start()
    try:
        samples = resources.files("services").joinpath("samples")
        with Client(server.address) as client:
            client.create_corpus("notes", space="digits", modality="text")
            client.create_corpus("digit-images", space="digits", modality="image")
            client.upsert(
                "notes", [{"id": "n1", "text": "Seven is a prime number.", "metadata": {"source": "notes.md"}}]
            )
            png = [samples.joinpath(f"digits/{d}.png").read_bytes() for d in range(10)]
            images = [{"id": f"{d}.png", "data": png[d], "uri": f"digits/{d}.png"} for d in range(10)]
            client.upsert("digit-images", images, modality="image")
            context = build_context(client, "a handwritten seven", space="digits", top_k=11)
        assert set(context.searched) == {"notes", "digit-images"}  # routed: no corpora named
        assert context.passages and context.media
        assert all(c.modality == "image" and c.uri.startswith("digits/") for c in context.media)
        assert context.passages[0].source == "notes.md"
        markdown = context.to_markdown()
        assert "## Media" in markdown and "image `digits/" in markdown
    finally:
        server.stop()


def test_llama_index_retriever_returns_nodes_with_scores_and_metadata(
    docs_server: ServerThread, documents: Path
) -> None:
    from llama_index.core.schema import NodeWithScore

    retriever = TesseraLlamaRetriever(address=docs_server.address, corpora=["docs"], similarity_top_k=3)
    nodes = retriever.retrieve(QUESTION)
    assert len(nodes) == 3 and all(isinstance(n, NodeWithScore) for n in nodes)
    top = nodes[0]
    _, mark = _answer_span(documents)
    meta = top.node.metadata
    assert meta["source"] == ANSWER_SOURCE and meta["start"] <= mark < meta["end"]
    assert top.node.metadata["corpus"] == "docs" and top.node.metadata["modality"] == "text"
    assert top.score == top.node.metadata["calibrated_score"]
    assert nodes[0].score >= nodes[1].score >= nodes[2].score


def test_adapters_refuse_unknown_arguments_at_construction_naming_the_right_one() -> None:
    # Before, TesseraLlamaRetriever(k=1) constructed and then failed in retrieve() inside the client,
    # and TesseraRetriever(top_k=1) silently searched with the default k.
    with pytest.raises(TypeError) as llama:
        TesseraLlamaRetriever(address="127.0.0.1:1", k=1)
    assert str(llama.value) == (
        "TesseraLlamaRetriever() got an unexpected keyword argument 'k'; "
        "the number of nodes to return is similarity_top_k (LlamaIndex's name)"
    )
    with pytest.raises(TypeError, match="'top_k'; the number of nodes to return is similarity_top_k"):
        TesseraLlamaRetriever(top_k=1)
    with pytest.raises(TypeError, match="'api_kee'; did you mean 'api_key'"):
        TesseraLlamaRetriever(api_kee="secret")
    assert TesseraLlamaRetriever(similarity_top_k=2, api_key="secret").client_options == {"api_key": "secret"}
    with pytest.raises(TypeError) as langchain:
        TesseraRetriever(top_k=1)
    assert str(langchain.value) == (
        "TesseraRetriever() got an unexpected keyword argument 'top_k'; "
        "the number of documents to return is k (LangChain's name)"
    )
    with pytest.raises(TypeError, match=r"pass tessera.Client options in client_options=\{'tls_ca': ...\}"):
        TesseraRetriever(tls_ca="ca.pem")
    with pytest.raises(TypeError, match="'k', which is an argument of TesseraRetriever itself"):
        TesseraRetriever(client_options={"k": 1})
    with pytest.raises(TypeError, match=r"'k'; k is given per search: similarity_search\(query, k=...\)"):
        TesseraVectorStore("docs", k=3, create=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_down_server_is_a_clear_error_within_the_timeout() -> None:
    address = f"127.0.0.1:{_free_port()}"
    for retriever in (
        TesseraRetriever(address=address, timeout=3.0),
        TesseraLlamaRetriever(address=address, timeout=3.0),
    ):
        started = time.monotonic()
        with pytest.raises(TesseraUnavailableError, match=address.replace(".", r"\.")):
            retriever.invoke("anything") if isinstance(retriever, TesseraRetriever) else retriever.retrieve("x")
        assert time.monotonic() - started < 6.0


def test_a_server_that_never_answers_times_out_clearly() -> None:
    # A socket that accepts connections and says nothing: a hung or overloaded server.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    address = f"127.0.0.1:{silent.getsockname()[1]}"
    try:
        started = time.monotonic()
        with pytest.raises(TesseraUnavailableError, match=r"did not answer within 2\.0 s|no Tessera server answers"):
            TesseraRetriever(address=address, timeout=2.0).invoke("anything")
        assert time.monotonic() - started < 5.0
    finally:
        silent.close()


async def test_async_retrievers_query_the_real_server(docs_server: ServerThread) -> None:
    docs = await TesseraRetriever(address=docs_server.address, corpora=["docs"], k=2).ainvoke(QUESTION)
    nodes = await TesseraLlamaRetriever(address=docs_server.address, corpora=["docs"], similarity_top_k=2).aretrieve(
        QUESTION
    )
    assert [d.id for d in docs] == [n.node.node_id for n in nodes]
    assert docs[0].metadata["source"] == ANSWER_SOURCE
