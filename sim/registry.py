"""The one list of policies: every router, batch scheduler, queue discipline and power-manager
policy by name, with its class, its one-sentence description and whether the compiled engine
has it; and the loader of a user's own policy named as "module:Class" or "path/to/file.py:Class".

Scenario validation (`sim/scenario`), the compiled engine's support check and code table, the
docs table (`dcsim policies`) and the drivers all read this module; nothing else lists names.
It sits at the bottom layer so that scenario validation can read it: classes are named by their
import path and loaded when first used.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.errors import ScenarioError


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "module:Class" of the built-in, or a user's spec
    doc: str  # one sentence
    code: int | None = None  # its number in the compiled engine (None: per-step driver only)


class Registry:
    """Policies of one kind, by name, in registration order."""

    def __init__(self, kind: str, key: str, methods: tuple[str, ...]) -> None:
        self.kind = kind  # "router", "scheduler", ...
        self.key = key  # the scenario key that names one, for error messages
        self.methods = methods  # what a plug-in of this kind must implement
        self._entries: dict[str, Entry] = {}
        self._user: dict[str, type] = {}  # classes registered from Python (API users, tests)

    def add(self, name: str, target: str | type, doc: str = "", code: int | None = None) -> None:
        """Register a policy: a built-in by "module:Class", or a user's class (Python API)."""
        if isinstance(target, type):
            self._check(target, name)
            self._user[name] = target
            target = f"{target.__module__}:{target.__qualname__}"
        self._entries[name] = Entry(name, target, doc, code)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def compiled_names(self) -> tuple[str, ...]:
        return tuple(n for n, e in self._entries.items() if e.code is not None)

    def code(self, name: str) -> int:
        """The compiled engine's number for a built-in (KeyError if it has none)."""
        c = self._entries[name].code
        if c is None:
            raise KeyError(name)
        return c

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    @staticmethod
    def is_plugin(name: str) -> bool:
        return ":" in name

    def validate(self, name: str, key: str | None = None, base_dir: Path | None = None) -> str:
        """The policy named in a scenario, checked: a registered name is returned as it is; a
        plug-in spec is loaded (ScenarioError naming the key if it cannot be) and returned with
        a relative file path made absolute, so the saved scenario repeats the run anywhere."""
        key = key or self.key
        if self.is_plugin(name):
            spec = _absolute(name, base_dir)
            self.load(spec, key)
            return spec
        if name not in self._entries:
            raise ScenarioError(key, f"unknown {self.kind} {name!r}",
                                f"use one of: {', '.join(self._entries)}, or your own class as "
                                f"\"module:Class\" or \"path/to/file.py:Class\"")
        return name

    def load(self, name: str, key: str | None = None) -> type:
        """The class behind a name or plug-in spec."""
        key = key or self.key
        if name in self._user:
            return self._user[name]
        target = self._entries[name].target if name in self._entries else name
        cls = _import(target, key, self.kind)
        if self.is_plugin(name):
            self._check(cls, name, key)
        return cls

    def make(self, name: str, *args: Any) -> Any:
        """An instance of the policy named `name`, built with `args`. A plug-in is untrusted code:
        it is built and every method of it called through `Guarded` (an exception or sys.exit in it
        is one line naming the plug-in, the method and the error)."""
        cls = self.load(name)
        if not self.is_plugin(name) and name not in self._user:
            return cls(*args)
        return Guarded(guard_call(cls, f"{self.kind} plug-in {name}", "__init__", *args), self.kind, name)

    def _check(self, cls: Any, name: str, key: str | None = None) -> None:
        key = key or self.key
        if not isinstance(cls, type):
            raise ScenarioError(key, f"{name!r} is not a class", f"point it at a class with {self._need()}")
        missing = [m for m in self.methods if not callable(getattr(cls, m, None))]
        if missing:
            raise ScenarioError(key, f"{name!r} has no method {missing[0]}()",
                                f"give the class {self._need()} (see docs/policies.md)")

    def _need(self) -> str:
        return " and ".join(f"a {m}() method" for m in self.methods)


class PluginError(ScenarioError):
    """A plug-in raised or exited: the run stops with one line naming it (exit 2)."""


def guard_call(fn: Any, who: str, method: str, *args: Any) -> Any:
    """fn(*args), with any exception or SystemExit from a plug-in turned into a PluginError (a
    ScenarioError from it, e.g. a nested dcsim check, passes as it is; Ctrl-C passes)."""
    try:
        return fn(*args)
    except (ScenarioError, KeyboardInterrupt):
        raise
    except SystemExit as exc:
        raise PluginError(f"{who}.{method}()", f"called sys.exit({exc.code!r})",
                          "a plug-in returns its answer; it does not end the process") from None
    except BaseException as exc:  # noqa: BLE001 - untrusted code: whatever it raised, in one line
        raise PluginError(f"{who}.{method}()", f"raised {type(exc).__name__}: {str(exc)[:200]}",
                          "fix the plug-in (run it on a small scenario under pdb to see where)") from None


class Guarded:
    """A plug-in instance whose every method is called through guard_call (attributes read as
    they are)."""

    def __init__(self, obj: Any, kind: str, name: str) -> None:
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_who", f"{kind} plug-in {name}")

    def __getattr__(self, attr: str) -> Any:
        v = getattr(self._obj, attr)
        if not callable(v) or attr.startswith("__"):
            return v
        who = self._who

        def call(*args: Any, **kw: Any) -> Any:
            return guard_call(lambda *a: v(*a, **kw), who, attr, *args)

        return call

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self._obj, attr, value)

    @property
    def wrapped(self) -> Any:
        return self._obj


def _absolute(spec: str, base_dir: Path | None) -> str:
    where, _, cls = spec.rpartition(":")
    if where.endswith(".py"):
        p = Path(where).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        return f"{p.resolve()}:{cls}"
    return spec


def _import(target: str, key: str, kind: str) -> type:
    """Load "module:Class" or "path/to/file.py:Class" (one line naming the key on failure)."""
    where, sep, cls_name = target.rpartition(":")
    if not sep or not where or not cls_name:
        raise ScenarioError(
            key, f"cannot read {target!r} as a {kind}", 'write "module:Class" or "path/to/file.py:Class"'
        )
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise ScenarioError(key, f"plug-in file {where} not found", "check the path (relative paths are "
                                    "read from the scenario file's folder)")
            # one name per file, the same in every process (hash() of a str is salted per process)
            mod_name = "dcsim_plugin_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
            mod = sys.modules.get(mod_name)
            if mod is None:
                spec = importlib.util.spec_from_file_location(mod_name, path)
                assert spec is not None and spec.loader is not None
                mod = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = mod  # loaded once per process
                try:
                    spec.loader.exec_module(mod)
                except BaseException:
                    del sys.modules[mod_name]
                    raise
        else:
            mod = importlib.import_module(where)
    except ScenarioError:
        raise
    except Exception as exc:  # the user's module failed to import: say so in one line
        raise ScenarioError(key, f"cannot import {where!r}: {type(exc).__name__}: {exc}",
                            "check that the module imports on its own (python -c 'import ...')") from None
    obj = getattr(mod, cls_name, None)
    if obj is None:
        raise ScenarioError(key, f"{where!r} has no {cls_name!r}", f"define class {cls_name} there, or fix the name")
    if not inspect.isclass(obj):
        raise ScenarioError(key, f"{target!r} is not a class", f"point it at a {kind} class")
    return obj


# --- the registries ------------------------------------------------------------------------------

ROUTERS = Registry("router", "router.policy", ("choose",))
SCHEDULERS = Registry("scheduler", "pools.scheduler.policy", ("plan",))
QUEUES = Registry("queue discipline", "pools.scheduler.policy", ())
MANAGERS = Registry("power-manager policy", "facility.manager.policy", ("act",))
AUTOSCALERS = Registry("autoscaling policy", "autoscaler.policy", ("desired",))

_R = "sim.policies.routers"
ROUTERS.add("round_robin", f"{_R}:RoundRobin", "replicas in turn", code=0)
ROUTERS.add("least_loaded", f"{_R}:LeastLoaded", "fewest outstanding prompt + output tokens", code=1)
ROUTERS.add("jsq", f"{_R}:JSQ", "join the shortest queue: fewest outstanding requests", code=2)
ROUTERS.add("power_of_two", f"{_R}:PowerOfTwo", "the less loaded of two replicas drawn at random", code=3)
ROUTERS.add("least_kv", f"{_R}:LeastKV", "most free KV-cache blocks", code=4)
ROUTERS.add(
    "session_affinity",
    f"{_R}:SessionAffinity",
    "a session stays on the replica of its first request; new sessions by jsq",
    code=5,
)
ROUTERS.add(
    "central_queue", f"{_R}:CentralQueue", "one shared FIFO queue that every replica pulls from (M/M/c)", code=6
)
ROUTERS.add(
    "prefix_aware",
    f"{_R}:PrefixAware",
    "the longest cached prefix of the prompt, traded against the load (llm-d's scorers)",
    code=8,
)
ROUTERS.add(
    "least_time",
    f"{_R}:LeastTime",
    "fewest seconds of outstanding work at each replica's own speed (hardware-aware)",
    code=7,
)

_S = "sim.policies.schedulers"
SCHEDULERS.add("fcfs", f"{_S}:Fcfs", "one request at a time, served whole", code=2)
SCHEDULERS.add(
    "static", f"{_S}:Static", "request-level batching: a batch forms on an idle replica, nothing joins it", code=2
)
SCHEDULERS.add(
    "continuous", f"{_S}:Continuous", "iteration-level batching with whole prefills first (Orca, vLLM v0)", code=1
)
SCHEDULERS.add(
    "chunked", f"{_S}:Chunked", "decode first, prompt chunks fill the token budget (Sarathi-Serve, vLLM v1)", code=0
)
SCHEDULERS.add("priority", f"{_S}:Priority", "chunked, queue by request class, lower classes preempted first", code=3)
SCHEDULERS.add("sjf", f"{_S}:Sjf", "chunked, shortest prompt first with an ageing bound", code=4)

_Q = "sim.policies.queues"
QUEUES.add("fifo", f"{_Q}:FifoQueue", "arrival order; a preempted request goes to the front", code=0)
QUEUES.add("priority", f"{_Q}:PriorityQueue", "lowest class first, then arrival", code=1)
QUEUES.add("sjf", f"{_Q}:SjfQueue", "shortest remaining prompt first, oldest first once it waited ageing_s", code=2)

_M = "sim.policies.managers"
MANAGERS.add("none", f"{_M}:NoManager", "measure only: no caps, drains or shedding")
MANAGERS.add("cap_uniform", f"{_M}:CapUniform", "one clock cap for every accelerator, so the draw fits the supply")
MANAGERS.add("cap_priority", f"{_M}:CapPriority", "water-filling: the most important pools at full power first")
MANAGERS.add("drain", f"{_M}:Drain", "keep the most important replicas at full power, drain the rest")
MANAGERS.add("shed", f"{_M}:Shed", "cap_uniform, and reject new requests while over the supply")

_A = "sim.policies.autoscalers"
AUTOSCALERS.add(
    "queue",
    f"{_A}:QueuePolicy",
    "replicas for a target of outstanding requests per serving replica (Kubernetes HPA rule)",
)
AUTOSCALERS.add("kv", f"{_A}:KVPolicy", "replicas for a target share of KV-cache blocks in use (HPA rule)")
AUTOSCALERS.add("slo", f"{_A}:SLOPolicy", "replicas for a target p90 TTFT of the last interval's arrivals (HPA rule)")

KINDS = {"router": ROUTERS, "scheduler": SCHEDULERS, "queue": QUEUES, "manager": MANAGERS,
         "autoscaler": AUTOSCALERS}


def queue_for(scheduler: str) -> str:
    """The queue discipline a scheduler plans over."""
    return scheduler if scheduler in ("priority", "sjf") else "fifo"


def markdown_table() -> str:
    """Every registered built-in as a Markdown table (`dcsim policies`; docs/policies.md holds
    this table and a test keeps the two equal)."""
    keys = {"router": "router.policy", "scheduler": "pools.scheduler.policy",
            "manager": "facility.manager.policy", "queue": "(the scheduler's)", "autoscaler": "autoscaler.policy"}
    rows = ["| kind | name | key | fast path | what it does |", "|---|---|---|---|---|"]
    for kind, reg in KINDS.items():
        for e in reg.entries():
            if e.target.startswith("sim."):
                # a power manager acts at control ticks, from Python, on either driver
                fast = "yes (at ticks)" if reg in (MANAGERS, AUTOSCALERS) else ("yes" if e.code is not None else "no")
                rows.append(f"| {kind} | `{e.name}` | `{keys[kind]}` | {fast} | {e.doc} |")
    return "\n".join(rows) + "\n"
