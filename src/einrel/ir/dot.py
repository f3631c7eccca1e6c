"""Graphviz DOT text for einrel's graphs, and rendering it when graphviz is installed.

The text needs nothing; `render` needs the `dot` program (graphviz) and says how to get it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from ..errors import EinrelError

DEVICE_COLORS = ("#c6dbef", "#fdd0a2", "#c7e9c0", "#dadaeb", "#fcbba1", "#d9d9d9", "#fee391")


def quote(text: str) -> str:
    """A DOT string literal (labels may hold quotes, backslashes and newlines)."""
    body = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{body}"'


def digraph(name: str, body: Iterable[str]) -> str:
    """A whole digraph: left-to-right data flow, boxes in a small sans-serif font."""
    head = [
        f"digraph {quote(name)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fillcolor=white, fontname=Helvetica, '
        "fontsize=10];",
        "  edge [fontname=Helvetica, fontsize=8];",
    ]
    return "\n".join([*head, *("  " + line for line in body), "}"]) + "\n"


def render(dot: str, path: str | Path) -> Path:
    """Write `dot` to `path`: DOT text for `.dot`/`.gv`, else the picture graphviz draws
    for the suffix (`.png`, `.svg`, `.pdf`)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fmt = p.suffix.lstrip(".").lower()
    if fmt in ("dot", "gv", ""):
        p.write_text(dot)
        return p
    exe = shutil.which("dot")
    if exe is None:
        raise EinrelError(
            f"drawing {p.name} needs graphviz's `dot` program, which is not on PATH; install "
            "graphviz (apt install graphviz, brew install graphviz, conda install graphviz) "
            "or write the text with a .dot path"
        )
    done = subprocess.run([exe, f"-T{fmt}", "-o", str(p)], input=dot.encode(), capture_output=True)
    if done.returncode != 0:
        raise EinrelError(f"graphviz could not draw {p.name}: {done.stderr.decode().strip()}")
    return p
