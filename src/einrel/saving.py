"""The saved-program file: a one-line JSON header, then the pickled plan.

The header is read and checked before anything is unpickled, so a file from another einrel
version is refused with a clear error instead of failing somewhere inside pickle. Like
`torch.load`, unpickling runs code: load only files you trust."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from .errors import ProgramFileError

MAGIC = b"EINREL-PROGRAM\n"
FORMAT = 1


def write_program_file(path: str | Path, header: dict[str, Any], payload: Any) -> Path:
    """Write `header` (JSON) and `payload` (pickled) to `path`; return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    body = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    head = json.dumps({"format": FORMAT, **header}).encode() + b"\n"
    p.write_bytes(MAGIC + head + body)
    return p


def read_program_header(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """The header of a saved program and the pickled rest, after checking it is one."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ProgramFileError(f"cannot read a saved program from {str(p)!r}: {e}") from None
    if not data.startswith(MAGIC):
        raise ProgramFileError(
            f"{str(p)!r} is not a saved einrel program (write one with Program.save(path))"
        )
    head, _, body = data[len(MAGIC) :].partition(b"\n")
    try:
        header = json.loads(head)
    except ValueError:
        raise ProgramFileError(f"{str(p)!r}: the saved program's header is damaged") from None
    if header.get("format") != FORMAT:
        raise ProgramFileError(
            f"{str(p)!r} has file format {header.get('format')!r}; this einrel reads format "
            f"{FORMAT}"
        )
    return header, body


def unpickle(path: str | Path, body: bytes) -> Any:
    try:
        return pickle.loads(body)
    except Exception as e:  # a truncated or altered file fails anywhere inside pickle
        raise ProgramFileError(
            f"{str(path)!r}: the saved program is damaged ({type(e).__name__}: {e})"
        ) from None
