"""Results folders written whole or not at all (issue 33).

A command with `--out DIR` checks DIR before any work (a file there, an unwritable parent, a
folder already holding results: refused unless `--force`), takes a lock beside it (a second
writer is refused in one line, not interleaved), writes into a hidden temporary folder next to
it and renames that into place when complete, with `complete.json` (the command, the scenario's
hash, the dcsim version). A process killed midway leaves DIR as it was (and a temporary folder
and a stale lock, which the next writer clears). Studies that resume (`compare`/`sweep --out`
with `--resume`) write in place: their per-run results are saved atomically one by one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from sim.errors import ScenarioError

MARKER = "complete.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    return True


def _writable_parent(p: Path) -> Path:
    """The nearest existing ancestor of p (where its folders will be made), refused if not writable."""
    q = p.parent
    while not q.exists():
        q = q.parent
    if not q.is_dir():
        raise ScenarioError("--out", f"{q} is a file, so {p} cannot be made", "give an --out folder path")
    if not os.access(q, os.W_OK | os.X_OK):
        raise ScenarioError("--out", f"cannot write in {q}", "give an --out folder you can write to")
    return q


def _clearable(p: Path) -> None:
    """Refuse to let --force delete a folder that is not a results folder: the working folder or
    one above it, the home folder, a repository, or one holding code or scenarios."""
    r = p.resolve()
    cwd = Path.cwd().resolve()
    if r == cwd or r in cwd.parents or r == Path.home().resolve() or r == Path(r.anchor):
        raise ScenarioError("--out", f"--force would delete {p}, which holds the working folder", "give a results "
                            "folder of its own")
    odd = next((x.name for x in r.iterdir() if x.name in (".git", "pyproject.toml", "setup.py")
                or (x.suffix in (".py", ".toml") and x.name != "scenario.toml")), None)
    if odd is not None:
        raise ScenarioError("--out", f"--force would delete {p}, which holds {odd} (not a results folder)",
                            "give a results folder of its own")


def scenario_hash(path: str | Path | None) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class OutDir:
    """`with OutDir(out, force, command, scenario) as tmp:` write into `tmp`; on success it
    becomes `out` (complete.json in it); on an error or Ctrl-C it is removed and `out` is left
    as it was. `in_place`: write into `out` itself (a resumable study), still checked and locked."""

    def __init__(self, out: str | Path, force: bool = False, command: str = "", scenario: str | Path | None = None,
                 in_place: bool = False, resume: bool = False) -> None:
        self.out = Path(out)
        self.force, self.command, self.scenario, self.in_place = force, command, scenario, in_place
        self.resume = resume  # (in place) reuse what is there
        self.lock = self.out.parent / f".{self.out.name}.lock"
        self.tmp = self.out if in_place else self.out.parent / f".{self.out.name}.tmp-{os.getpid()}"
        self._locked = False

    def check(self) -> None:
        """Refuse, before any work, what could not be written."""
        p = self.out
        if p.exists() and not p.is_dir():
            raise ScenarioError("--out", f"{p} is a file", "give a folder path (it is made if missing)")
        _writable_parent(p)
        if p.is_dir() and any(p.iterdir()) and not self.force and not self.resume:
            held = ", ".join(sorted(x.name for x in p.iterdir())[:4])
            raise ScenarioError("--out", f"{p} already holds results ({held}, ...)",
                                "give a new folder, or --force to replace what is there")
        if p.is_dir() and not os.access(p, os.W_OK | os.X_OK):
            raise ScenarioError("--out", f"cannot write in {p}", "give an --out folder you can write to")
        if self.force and not self.resume and p.is_dir() and any(p.iterdir()):
            _clearable(p)

    def __enter__(self) -> Path:
        self.check()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        if not self.in_place:
            if self.tmp.exists():
                shutil.rmtree(self.tmp)
            self.tmp.mkdir()
        else:
            if self.force and not self.resume and self.tmp.exists():
                shutil.rmtree(self.tmp)
            self.tmp.mkdir(parents=True, exist_ok=True)
            (self.tmp / MARKER).unlink(missing_ok=True)  # being written: not complete until done
        return self.tmp

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        try:
            if kind is None:
                self._finish()
            elif not self.in_place:
                shutil.rmtree(self.tmp, ignore_errors=True)
        finally:
            self._release()

    def _finish(self) -> None:
        from sim import __version__

        (self.tmp / MARKER).write_text(json.dumps({"command": self.command, "scenario_sha256": scenario_hash(
            self.scenario), "dcsim": __version__}, indent=1) + "\n")
        if self.in_place:
            return
        if self.out.exists():  # (--force, or an empty folder)
            shutil.rmtree(self.out)
        os.replace(self.tmp, self.out)

    def _take_lock(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.lock.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and _pid_alive(pid):
                    raise ScenarioError("--out", f"another dcsim (process {pid}) is writing {self.out}",
                                        "wait for it to finish, or give another --out") from None
                self.lock.unlink(missing_ok=True)  # its writer died: a stale lock
                for stale in self.out.parent.glob(f".{self.out.name}.tmp-*"):
                    shutil.rmtree(stale, ignore_errors=True)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            self._locked = True
            return
        raise ScenarioError("--out", f"could not lock {self.out}", "give another --out")  # pragma: no cover

    def _release(self) -> None:
        if self._locked:
            self.lock.unlink(missing_ok=True)
            self._locked = False


def check_readable(d: Path, what: str = "RUN_DIR") -> None:
    """A folder `plot` or `report` can read: not one being written (its lock held by a live
    process) and not a temporary folder left by a killed writer."""
    if not d.is_dir():
        raise ScenarioError(what, f"{d} is not a folder", "point at a folder written with --out")
    if d.name.startswith(".") and ".tmp-" in d.name:
        raise ScenarioError(what, f"{d} is an unfinished temporary folder (its writer stopped)",
                            "rerun the command that wrote it")
    lock = d.parent / f".{d.name}.lock"
    if lock.exists():
        try:
            pid = int(lock.read_text().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid and _pid_alive(pid) and not (d / MARKER).exists():
            raise ScenarioError(what, f"{d} is being written (process {pid})", "wait for it to finish")
