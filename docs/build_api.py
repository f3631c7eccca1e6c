"""Build the API reference (HTML, pdoc) into a folder, failing on any warning.

`make docs` runs it into docs/api/; the tests run it into a temporary folder. The reference
covers the public surface: `einrel` (everything in `einrel.__all__`), `er.optim`,
`er.placers` and `er.partitioners`.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

MODULES = (
    "einrel",
    "einrel.frontend.optim",
    "einrel.place.placers",
    "einrel.decompose.partitioners",
)


def build(out: Path) -> list[Path]:
    """Write the reference to `out`; a warning (a broken reference, a docstring pdoc cannot
    read) is an error. Returns the pages written."""
    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="numpy", show_source=False)
    public = "|".join(m.removeprefix("einrel.").replace(".", r"\.") + "$" for m in MODULES[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pdoc.pdoc(*MODULES, f"!einrel\\.(?!{public}).*", output_directory=out)
    return sorted(out.rglob("*.html"))


if __name__ == "__main__":
    where = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/api")
    print(f"API reference: {len(build(where))} pages in {where}")
