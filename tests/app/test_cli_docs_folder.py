"""``duetto docs add FOLDER``: a tree of code as one document, kept up to date by content hash."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from duetto_cli import run_duetto

from duetto.app.core.folders import ingest_folder, scan_folder
from duetto.app.core.models import load_engine
from duetto.store import documents as document_store
from duetto.store.database import open_database

MODULE = '''"""Orders and their totals."""


def order_total(items):
    """The sum of price times quantity."""
    total = 0
    for price, quantity in items:
        total += price * quantity
    return total


class Basket:
    def __init__(self):
        self.items = []

    def add(self, price, quantity=1):
        self.items.append((price, quantity))
'''


def write_tree(root: Path) -> Path:
    (root / "src" / "shop").mkdir(parents=True)
    (root / "src" / "shop" / "orders.py").write_text(MODULE)
    (root / "src" / "shop" / "tax.py").write_text(
        "RATE = 0.2\n\n\ndef with_tax(amount):\n    return amount * (1 + RATE)\n"
    )
    (root / "README.md").write_text("# Shop\n\nA small shop. Orders are summed in src/shop/orders.py.\n")
    (root / ".gitignore").write_text("build/\n*.log\n")
    (root / "build").mkdir()
    (root / "build" / "generated.py").write_text("x = 1\n")
    (root / "debug.log").write_text("noise\n")
    (root / "node_modules" / "left-pad").mkdir(parents=True)
    (root / "node_modules" / "left-pad" / "index.js").write_text("module.exports = 1;\n")
    (root / "src" / ".gitignore").write_text("secret.py\n")
    (root / "src" / "secret.py").write_text("KEY = 'hunter2'\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    return root


def add(path: Path, tiny_models: dict[str, Path], *extra: str):
    return run_duetto("docs", "add", str(path), "--model", str(tiny_models["draft"]), "--threads", "1", *extra)


def test_a_folder_respects_gitignore_and_globs(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "shop")
    paths = [file.path for file in scan_folder(root).files]
    assert paths == ["README.md", "src/shop/orders.py", "src/shop/tax.py"]
    assert [path for path, _ in scan_folder(root).skipped] == ["logo.png"]
    assert [file.path for file in scan_folder(root, ["*.py"]).files] == ["src/shop/orders.py", "src/shop/tax.py"]
    assert [file.path for file in scan_folder(root, ["src/**/tax.py"]).files] == ["src/shop/tax.py"]


def test_adding_a_folder_again_rereads_only_what_changed(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    root = write_tree(tmp_path / "shop")

    first = json.loads(add(root, tiny_models, "--json").stdout)

    assert first["name"] == "shop" and first["files"] == 3 and first["unchanged"] == 0
    assert first["read"] == ["README.md", "src/shop/orders.py", "src/shop/tax.py"]
    shown = json.loads(run_duetto("docs", "show", "shop", "--json").stdout)
    texts = [chunk["text"] for chunk in shown["chunks"]]
    function = MODULE[MODULE.index("def order_total") : MODULE.index("class Basket")].strip()
    assert sum(function in text for text in texts) == 1, "the function is in one chunk, whole"
    for chunk in shown["chunks"]:
        if chunk["text"].startswith("File src/shop/orders.py:"):
            compressed_lines = chunk["compressed_text"].splitlines()
            assert all(line in chunk["text"].splitlines() or line.strip() == "..." for line in compressed_lines)

    unchanged = json.loads(add(root, tiny_models, "--json").stdout)
    assert unchanged["read"] == [] and unchanged["unchanged"] == 3 and unchanged["chunks"] == first["chunks"]

    (root / "src" / "shop" / "tax.py").write_text("RATE = 0.25\n\n\ndef with_tax(amount):\n    return amount * 1.25\n")
    (root / "README.md").unlink()
    changed = json.loads(add(root, tiny_models, "--json").stdout)
    assert changed["read"] == ["src/shop/tax.py"] and changed["removed"] == ["README.md"]
    texts = [chunk["text"] for chunk in json.loads(run_duetto("docs", "show", "shop", "--json").stdout)["chunks"]]
    assert not any(text.startswith("File README.md:") for text in texts), "a deleted file's chunks go"
    assert sum("RATE = 0.25" in text for text in texts) == 1 and not any("RATE = 0.2\n" in text for text in texts)

    database = Path(os.environ["DUETTO_HOME"]) / "duetto.db"
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        files = connection.execute("SELECT path FROM document_files ORDER BY path").fetchall()
    assert [row[0] for row in files] == ["src/shop/orders.py", "src/shop/tax.py"]

    models = ["--target", str(tiny_models["target"]), "--draft-model", str(tiny_models["draft"]), "--threads", "1"]
    answer = run_duetto(
        "ask", "--doc", "shop", "how is an order total computed?", *models, "--max-tokens", "4", "--json"
    )
    assert answer.returncode == 0, answer.stderr
    citations = json.loads(answer.stdout)["citations"]
    assert citations and all(cited["label"] == f"shop/{cited['file']}#{cited['chunk']}" for cited in citations)
    assert all(cited["file"].startswith("src/shop/") or cited["file"] == "README.md" for cited in citations)


def test_a_folder_read_cut_short_goes_on_from_the_file_it_was_reading(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    root = write_tree(tmp_path / "shop")
    engine = load_engine(tiny_models["target"], tiny_models["draft"], context_length=512, threads=1)
    reader, model_id = engine.reader()
    db = open_database()
    read = []

    def stop_after_three() -> bool:
        read.append(1)
        return len(read) > 3

    with pytest.raises(InterruptedError):
        ingest_folder(db, reader, model_id, "shop", root, should_cancel=stop_after_three)
    assert not document_store.find_document(db, "shop").complete

    result = ingest_folder(db, reader, model_id, "shop", root)

    chunks = document_store.list_chunks(db, [document_store.find_document(db, "shop").id])
    assert len({chunk.position for chunk in chunks}) == len(chunks) == result.chunks
    assert len({chunk.text for chunk in chunks}) == len(chunks), "no chunk twice"
    assert {chunk.file_path for chunk in chunks} == {"README.md", "src/shop/orders.py", "src/shop/tax.py"}


def test_folder_errors_are_one_line(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = add(empty, tiny_models)
    assert result.returncode == 1 and "no text files to read" in result.stderr and "Traceback" not in result.stderr
    glob_on_file = add(write_tree(tmp_path / "shop") / "README.md", tiny_models, "--glob", "*.py")
    assert glob_on_file.returncode == 2 and "PATH is not a folder" in glob_on_file.stderr
    other = tmp_path / "other" / "shop"
    other.mkdir(parents=True)
    (other / "a.py").write_text("x = 1\n")
    assert add(tmp_path / "shop", tiny_models).returncode == 0
    clash = add(other, tiny_models)
    assert clash.returncode == 1 and "already exists and was not read from" in clash.stderr


def test_a_nested_gitignore_can_bring_back_what_the_root_one_excluded(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / ".gitignore").write_text("*.log\n")
    (root / "sub" / ".gitignore").write_text("!keep.log\n")
    for path in ("a.log", "sub/keep.log", "sub/drop.log", "sub/code.py"):
        (root / path).write_text("text\n")
    assert [file.path for file in scan_folder(root).files] == ["sub/code.py", "sub/keep.log"]
