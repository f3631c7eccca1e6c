"""The README's quick start and memory-budget snippets run as written, and the training
loop's loss falls."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"


def _snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_quick_start_trains_and_the_other_local_snippets_run(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)  # the snippets write out/ and model.einrel
    blocks = _snippets()
    # the others name a policy file or a running Ray cluster
    local = [b for b in blocks if "er.optim" in b or "memory=" in b or "er.load" in b]
    assert len(local) == 3 and "er.optim" in local[0] and "er.load" in local[1]
    out = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(out):
        for block in local:
            exec(compile(block, "README.md", "exec"), namespace)
    losses = [float(m) for m in re.findall(r"^\d+ ([0-9.e-]+)$", out.getvalue(), flags=re.M)]
    assert len(losses) == 4 and losses[-1] < 0.5 * losses[0], out.getvalue()
    assert namespace["prog"].report.bytes_offloaded > 0  # the budgeted snippet offloads
    assert (tmp_path / "out" / "run.png").exists() and (tmp_path / "out" / "plan.dot").exists()
    assert "hidden" in namespace["h"].name


def test_the_sparse_relations_snippet_runs(capsys: Any) -> None:
    (block,) = [b for b in _snippets() if "er.relation(" in b]
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert "over A" in capsys.readouterr().out
    assert namespace["gA_v"].values.shape == (namespace["feed"].nnz,)
    namespace["prog"].close()
