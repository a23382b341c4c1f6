"""Files written whole and crash-safe: to a temporary name beside the target, flushed to disk, then renamed,
so a reader (or a resumed run) sees the old file or the new one, never half of one."""
from __future__ import annotations

import json
import os
from pathlib import Path


def write_atomic(path: str | Path, text: str | bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb" if isinstance(text, bytes) else "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: str | Path, obj) -> None:
    """`obj` as indented JSON with sorted keys (same object, same bytes)."""
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")
