"""Doppler graph files: the six released files as the Doppler paper describes them, round trips, and
malformed files reported with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from einrel.errors import EinrelError, GraphFileError
from einrel.place import load_graph_file
from einrel.place.graphfile import (
    RELEASED_DIR,
    RELEASED_GRAPHS,
    format_graph_text,
    parse_graph_text,
    read_graph_file,
    write_graph_file,
)

DATA = RELEASED_DIR  # Doppler's released graphs, shipped inside the package

# file: (line 1, ops, line-2 ids, edges), the Doppler paper
TABLE = {
    "chain_mm_112nodes": (112, 76, 36, 80),
    "ffnn_192nodes": (192, 180, 12, 208),
    "transformer_block_215nodes": (215, 182, 33, 234),
    "full_transformer_layer_261nodes": (261, 229, 32, 284),
    "8gpu_transformer_block": (356, 302, 54, 398),
    "8gpu_full_transformer": (417, 367, 50, 470),
}


@pytest.mark.parametrize("stem", sorted(TABLE))
def test_released_files_match_the_table(stem: str) -> None:
    nodes, ops, inputs, edges = TABLE[stem]
    parsed = read_graph_file(DATA / f"{stem}.txt")
    g = parsed.graph
    assert g.name == stem
    assert (g.num_ops, len(parsed.input_ids), len(g.edges)) == (ops, inputs, edges)
    assert g.num_ops + len(parsed.input_ids) == nodes
    assert all(a < b for a, b in g.edges)  # file order is topological
    assert all(m == 4 * c for c, m in zip(g.comp, g.comm))
    assert parsed.op_types == (None,) * ops


def _token_lines(text: str) -> list[list[str]]:
    return [[t.strip() for t in line.split(",") if t.strip()] for line in text.splitlines()]


@pytest.mark.parametrize("stem", sorted(TABLE))
def test_released_files_round_trip(stem: str, tmp_path: Path) -> None:
    path = DATA / f"{stem}.txt"
    parsed = read_graph_file(path)
    text = format_graph_text(parsed.graph, parsed.input_ids, parsed.op_types)
    # same tokens on every line (the released files space their lists irregularly)
    assert _token_lines(text) == _token_lines(path.read_text())
    out = tmp_path / f"{stem}.txt"
    write_graph_file(out, parsed.graph, parsed.input_ids)
    assert out.read_text() == text
    assert read_graph_file(out) == parsed


def test_round_trip_keeps_types_and_fractions() -> None:
    text = "4\n7, \n0, 1, \n1, 2, \n1.5,6\n2,8,matmul\n0.25,1\n"
    parsed = parse_graph_text(text, name="x")
    assert parsed.graph.comp == (1.5, 2.0, 0.25)
    assert parsed.op_types == (None, "matmul", None)
    text_again = format_graph_text(parsed.graph, parsed.input_ids, parsed.op_types)
    assert text_again == "4\n7, \n0, 1, \n1, 2, \n1.5,6\n2,8,matmul\n0.25,1"
    assert parse_graph_text(text_again, name="x") == parsed


def test_spaces_and_empty_tokens_are_tolerated() -> None:
    g = parse_graph_text(" 2 \n\n , 0 ,, \n ,1, \n 1 , 4 , \n2,8").graph
    assert g.edges == ((0, 1),) and g.comp == (1.0, 2.0) and g.comm == (4.0, 8.0)


GOOD = ["3", "9, ", "0, ", "1, ", "1,4", "2,8"]


def _with(line: int, text: str | None) -> str:
    lines = list(GOOD)
    if text is None:
        del lines[line - 1]
    else:
        lines[line - 1] = text
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        (_with(1, "three"), 1, "not an integer"),
        (_with(1, "3, 4"), 1, "one non-negative node count"),
        (_with(2, "9, x"), 2, "not an integer"),
        (_with(3, "0, 1.5"), 3, "not an integer"),
        (_with(4, "1, 0, "), 4, "edge destinations"),
        (_with(4, "2, "), 4, "names op 2"),
        (_with(3, "-1, "), 3, "names op -1"),
        (_with(5, "1,abc"), 5, "not a number"),
        (_with(6, "2,-8"), 6, "must be finite and >= 0"),
        (_with(6, "2,nan"), 6, "must be finite and >= 0"),
        (_with(5, "1"), 5, "expected 'comp,comm"),
        (_with(6, "2,8,t,extra"), 6, "expected 'comp,comm"),
        (_with(6, None), 6, "gives 2 ops, but the file has 1 op lines"),
        ("\n".join([*GOOD, "3,3"]), 7, "gives 2 ops, but the file has 3 op lines"),
        ("3\n9, ", 3, "expected 4 header lines"),
        ("4\n\n0, 1, 2, \n1, 2, 0, \n1,1\n1,1\n1,1\n1,1", 3, "cycle"),
    ],
)
def test_malformed_files_name_the_file_and_line(
    tmp_path: Path, text: str, line: int, needle: str
) -> None:
    path = tmp_path / "bad_graph.txt"
    path.write_text(text)
    with pytest.raises(GraphFileError, match=needle) as info:
        load_graph_file(path)
    assert str(info.value).startswith(f"{path}:{line}:")
    assert isinstance(info.value, EinrelError)


def test_missing_file_is_a_graph_file_error(tmp_path: Path) -> None:
    with pytest.raises(GraphFileError, match="cannot read"):
        load_graph_file(tmp_path / "nope.txt")


def test_released_graphs_ship_with_the_package_and_load_by_name():
    for stem in RELEASED_DIR.glob("*.txt"):
        assert stem.stem in RELEASED_GRAPHS
    assert len(RELEASED_GRAPHS) == 6
    assert "CC BY 4.0" in (RELEASED_DIR / "README.md").read_text()
    for name in RELEASED_GRAPHS:
        by_name = read_graph_file(name)
        assert by_name == read_graph_file(RELEASED_DIR / f"{name}.txt")
        assert by_name == read_graph_file(f"{name}.txt")
    with pytest.raises(GraphFileError, match="cannot read"):
        read_graph_file("no_such_graph")
