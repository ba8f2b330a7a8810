"""Tasks that run on another machine: the files a scenario names (a trace, a rate profile, a
plug-in's file, a profile) travel with the task by content, not as the driver's paths. The driver
rewrites each string that names a file to a content address (`bundle`); a worker writes the bytes
once under a folder of its own, checks them against their SHA-256, and points the strings there
(`localize`). A plug-in travels as its one file (modules it imports must be installed on the
workers)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

MARK = "dcsim-file://"  # a content address: MARK + sha256 + "/" + the file's name
_NAME_MAX = 4096


def named_file(s: str, base: Path) -> tuple[Path, str] | None:
    """(the file a scenario string names, what follows it: "" or ":Class"), as the studies'
    _named_files reads strings (relative to the scenario's folder, or absolute); None: no file."""
    if not ("/" in s or "." in s) or len(s) >= _NAME_MAX or s.startswith(MARK):
        return None
    for cand, rest in ((s, ""), (s.rpartition(":")[0], ":" + s.rpartition(":")[2])):
        if cand:
            p = Path(cand) if Path(cand).is_absolute() else base / cand
            try:
                if p.is_file():
                    return p.resolve(), rest
            except OSError:
                pass
    return None


def bundle(raw: Any, base: Path, files: dict[str, bytes]) -> Any:
    """`raw` with every string that names a file as its content address; the bytes into `files`
    (by SHA-256: a file named by many tasks travels once)."""
    if isinstance(raw, dict):
        return {k: bundle(v, base, files) for k, v in raw.items()}
    if isinstance(raw, list):
        return [bundle(v, base, files) for v in raw]
    if isinstance(raw, str):
        found = named_file(raw, base)
        if found is not None:
            p, rest = found
            data = p.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            files.setdefault(sha, data)
            return f"{MARK}{sha}/{p.name}{rest}"
    return raw


def _store() -> Path:
    """This machine's folder for shipped files (DCSIM_FILES, else the temporary folder's)."""
    return Path(os.environ.get("DCSIM_FILES") or Path(tempfile.gettempdir()) / "dcsim-files")


def localize(raw: Any, files: dict[str, bytes]) -> Any:
    """`raw` with every content address as a path on this machine, its file written there first
    (once; a file there whose bytes do not match its address is written again)."""
    if isinstance(raw, dict):
        return {k: localize(v, files) for k, v in raw.items()}
    if isinstance(raw, list):
        return [localize(v, files) for v in raw]
    if isinstance(raw, str) and raw.startswith(MARK):
        sha, _, tail = raw[len(MARK):].partition("/")
        name, colon, cls = tail.partition(":")
        if sha not in files:
            raise ValueError(f"the task names a file it does not carry ({name}, {sha[:12]})")
        data = files[sha]
        if hashlib.sha256(data).hexdigest() != sha:
            raise ValueError(f"{name} arrived damaged (its bytes do not match {sha[:12]})")
        p = _store() / sha / name
        if not (p.is_file() and hashlib.sha256(p.read_bytes()).hexdigest() == sha):
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f".{name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(p)  # atomic: workers on one machine may write it at once
        return f"{p}{colon}{cls}"
    return raw
