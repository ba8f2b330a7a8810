"""Scenario files: TOML in, validated frozen dataclasses out.

Each key is declared once, as a field of the config dataclass of its table (`key(default, help,
bounds...)`, sim/schema.py): parsing, every error message (the dotted path and the fix), the
effective scenario saved beside a run (`Scenario.raw`: every default written out, so a run can be
repeated exactly) and the reference in docs/scenario.md (`dcsim keys`) all derive from it. A
table's cross-key rules are its class's `resolve`. `apply_overrides` implements
`--set key.path=value`. The tables live beside their kin: the workload's in
sim/scenario/workload.py, a pool's in sim/scenario/pools.py, the facility's in
sim/scenario/facility.py, what they share in sim/scenario/common.py; this module holds
[router], [run], [network] and the scenario itself, and reads the file.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from sim.errors import ScenarioError, warn
from sim.perf.catalog import builtin_catalog, load_catalog_file
from sim.registry import ROUTERS
from sim.scenario.common import DECODE_ROUTERS, ENGINES, FABRICS, MAX_SIM_S, Context, policy_name, table_of, wrong_type
from sim.scenario.facility import Facility, parse_facility
from sim.scenario.pools import CostConfig, PoolConfig, check_fits, dataclasses_replace
from sim.scenario.workload import SLO, WorkloadConfig, write_slo
from sim.schema import OMIT, REQUIRED, Table, effective, key, read

# --- [router], [run], [network] ---------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class RouterConfig:
    """[router]: which replica each request goes to."""

    policy: str = key("round_robin", "the router (dcsim policies), or a plug-in \"file.py:Class\"",
                      parse=policy_name(ROUTERS), kind=str)
    decode_policy: str = key("least_kv", "disaggregated models: the decode replica of a prefilled request",
                             choices=DECODE_ROUTERS, shown=lambda v: v.get("_disaggregated", False))


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """[run]: how the simulation runs."""

    horizon_s: float | None = key(None, "stop at this simulated time (none: when the last request leaves)",
                                  positive=True, hi=MAX_SIM_S, unit="s",
                                  hint="a run reaches at most ten years of simulated time")
    timeseries: bool = key(True, "record each replica's batch, KV and queue at every step (timeseries.parquet)")
    fast_forward: bool = key(True, "advance stable decode batches many steps at once (exact)")
    engine: str = key("auto", "\"compiled\", \"simpy\" (the per-step driver), or \"auto\": compiled where it applies",
                      choices=ENGINES)


@dataclass(frozen=True, kw_only=True)
class Link:
    """[[network.links]]: a link between two nodes, shared by the transfers that cross it."""

    a: str = key(REQUIRED, "one end (a node)", toml="from")
    b: str = key(REQUIRED, "the other end", toml="to")
    fabric: str | None = key(None, "a preset for gbps and latency_us", choices=tuple(FABRICS), write=lambda v, o: OMIT)
    gbps: float = key(None, "its bandwidth", kind=float, positive=True, unit="Gb/s", doc_default="the fabric's")
    latency_us: float = key(None, "its latency", kind=float, nonneg=True, unit="us", doc_default="the fabric's, or 0")

    @classmethod
    def resolve(cls, kw: dict[str, Any], path: str, ctx: Any, t: Table) -> dict[str, Any]:
        f = kw["fabric"]
        if kw["gbps"] is None:
            if f is None:
                raise ScenarioError(f"{path}.gbps", "missing", "add gbps = ... to [network.links]")
            kw["gbps"] = FABRICS[f][0]
        if kw["latency_us"] is None:
            kw["latency_us"] = FABRICS[f][1] if f is not None else 0.0
        return kw


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    """[[network.nodes]]: a place pools sit (a rack, a switch domain)."""

    name: str = key(REQUIRED, "the node's name")
    pools: list = key([], "the pools placed there", kind=list)


def _nodes(raw: Any, path: str, ctx: Context, kw: Any = None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(raw, list):
        wrong_type(path, "list", raw)
    out: list[tuple[str, tuple[str, ...]]] = []
    for k, nd in enumerate(raw):
        n = read(NodeSpec, nd, f"{path}[{k}]")
        if n.name in {x for x, _ in out}:
            raise ScenarioError(f"{path}[{k}].name", f"duplicate node {n.name!r}", "give each node its own name")
        out.append((n.name, tuple(n.pools)))
    return tuple(out)


def _links(raw: Any, path: str, ctx: Context, kw: Any = None) -> tuple[Link, ...]:
    if not isinstance(raw, list):
        wrong_type(path, "list", raw)
    return tuple(read(Link, lk, f"{path}[{k}]") for k, lk in enumerate(raw))


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """[network]: how KV moves from a prefill replica to a decode replica: each accelerator's port
    (Gb/s, latency), and optionally where pools sit (nodes: racks, switch domains) and the links
    between those places, shared by the transfers that cross them."""

    fabric: str = key("ib-400g", "each accelerator's port: a preset for gbps and latency_us", choices=tuple(FABRICS))
    gbps: float = key(400.0, "the port's bandwidth", positive=True, unit="Gb/s",
                      derive=lambda ctx, kw: FABRICS[kw["fabric"]][0], doc_default="the fabric's")
    latency_us: float = key(5.0, "the port's latency", nonneg=True, unit="us",
                            derive=lambda ctx, kw: FABRICS[kw["fabric"]][1], doc_default="the fabric's")
    gpus_per_node: int = key(8, "a replica with a larger TP group spans nodes: its all-reduce uses the ports",
                             positive=True)
    nodes: tuple[tuple[str, tuple[str, ...]], ...] = key(
        (),
        "[[network.nodes]]: name, pools",
        kind=list,
        parse=_nodes,
        write=lambda v, o: [{"name": n, "pools": list(p)} for n, p in v] if v else OMIT,
    )
    links: tuple[Link, ...] = key((), "[[network.links]]: from, to, gbps (or fabric), latency_us", kind=list,
                                  parse=_links, write=lambda v, o: [effective(x) for x in v] if o.nodes else OMIT)

    def scaleout(self, tp: int) -> tuple[float, float] | None:
        """(bytes/s, latency s) of the ports a TP group of `tp` all-reduces over when it spans
        nodes (None: it fits in one node, on the part's scale-up link)."""
        return (self.gbps * 1e9 / 8.0, self.latency_us * 1e-6) if tp > self.gpus_per_node else None

    def graph(self) -> Any:
        """The network as a networkx graph: nodes, and links with gbps and latency_us."""
        import networkx as nx

        g = nx.Graph()
        for name, pools in self.nodes:
            g.add_node(name, pools=pools)
        for ln in self.links:
            g.add_edge(ln.a, ln.b, gbps=ln.gbps, latency_us=ln.latency_us)
        return g

    @classmethod
    def resolve(cls, kw: dict[str, Any], path: str, ctx: Context, t: Table) -> dict[str, Any]:
        pools = ctx.pools_raw  # the PoolConfigs
        names = [p.name for p in pools]
        placed: dict[str, str] = {}
        for k, (node, ps) in enumerate(kw["nodes"]):
            for pn in ps:
                if pn not in names:
                    raise ScenarioError(f"network.nodes[{k}].pools", f"no pool named {pn!r}",
                                        f"use one of: {', '.join(names)}")
                if pn in placed:
                    raise ScenarioError(f"network.nodes[{k}].pools", f"pool {pn!r} is already on node {placed[pn]!r}",
                                        "place each pool on one node")
                placed[pn] = node
        known = {n for n, _ in kw["nodes"]}
        for k, ln in enumerate(kw["links"]):
            for key_, v in (("from", ln.a), ("to", ln.b)):
                if v not in known:
                    raise ScenarioError(
                        f"network.links[{k}].{key_}",
                        f"no node named {v!r}",
                        f"declare it under [[network.nodes]] (known: {', '.join(sorted(known)) or 'none'})",
                    )
        if kw["nodes"]:
            unplaced = [p.name for p in pools if p.role != "mixed" and p.name not in placed]
            if unplaced:
                raise ScenarioError("network.nodes", f"pool {unplaced[0]!r} is on no node",
                                    "list every prefill and decode pool under one [[network.nodes]]")
            import networkx as nx

            g = cls(**{k: v for k, v in kw.items()}).graph()
            for m in dict.fromkeys(p.model.id for p in pools):
                pre = [p.name for p in pools if p.model.id == m and p.role == "prefill"]
                dec = [p.name for p in pools if p.model.id == m and p.role == "decode"]
                for a in pre:
                    for b in dec:
                        if not nx.has_path(g, placed[a], placed[b]):
                            raise ScenarioError("network.links", f"no path from node {placed[a]!r} (pool {a!r}) to "
                                                f"{placed[b]!r} (pool {b!r}): their KV cannot move",
                                                "add [[network.links]] between them")
        return kw


# --- the scenario ------------------------------------------------------------------------------

def _catalog_write(v: Any, obj: Any) -> Any:
    return v if v else OMIT


def _path_write(v: Any, obj: Any) -> Any:
    return v if v is not None else OMIT


def _any_table(name: str) -> Any:
    def parse(raw: Any, path: str, ctx: Any, kw: Any = None) -> Any:
        if not isinstance(raw, Mapping):
            wrong_type(path, "dict", raw)
        return copy.deepcopy(dict(raw))
    return parse


def _pools(raw: Any, path: str, ctx: Context, kw: dict[str, Any]) -> tuple[PoolConfig, ...]:
    if not isinstance(raw, list):
        wrong_type(path, "list", raw)
    if not raw:
        raise ScenarioError("pools", "empty", "add at least one [[pools]] table")
    out = []
    for i, p in enumerate(raw):
        c = Context(ctx.catalog, ctx.base_dir, kw["workload"].classes, kw.get("autoscaler"), i)
        pool = read(PoolConfig, p, f"pools[{i}]", c)
        if pool.service is None:
            check_fits(pool, f"pools[{i}]")
        out.append(pool)
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A whole scenario: the top level of its TOML file."""

    catalog: str | None = key(None, "a catalog file of your own hardware and models (relative to the scenario)",
                              write=_path_write)
    hardware_tables: Mapping[str, Any] = key({}, "[hardware.<id>]: your accelerators, or changes to the catalog's",
                                             toml="hardware", kind=dict, parse=_any_table("hardware"),
                                             write=_catalog_write)
    model_tables: Mapping[str, Any] = key({}, "[models.<id>]: your models, or changes to the catalog's",
                                          toml="models", kind=dict, parse=_any_table("models"), write=_catalog_write)
    name: str = key("scenario", "the scenario's name")
    seed: int = key(0, "the random seed: the same scenario and seed give the same results", nonneg=True)
    workload: WorkloadConfig = key(REQUIRED, "[workload]", kind=dict, parse=table_of(WorkloadConfig))
    autoscaler: Mapping[str, Any] | None = key(None, "[autoscaler]: autoscale every pool (or those in its `pools`) "
                                               "with these keys of [pools.autoscaler]", kind=dict,
                                               parse=_any_table("autoscaler"), write=lambda v, o: OMIT)
    pools: tuple[PoolConfig, ...] = key(REQUIRED, "[[pools]]", kind=list, parse=_pools,
                                        write=lambda v, o: [effective(p) for p in v])
    router: RouterConfig = key(REQUIRED, "[router]", kind=dict, parse=table_of(RouterConfig),
                               derive=lambda ctx, kw: read(RouterConfig, {}, "router", ctx),
                               write=lambda v, o: {**effective(v), **({"decode_policy": v.decode_policy}
                                                                      if o.disaggregated else {})})
    network: NetworkConfig = key(REQUIRED, "[network]: KV transfers between prefill and decode replicas", kind=dict,
                                 parse=lambda v, p, c, kw: read(NetworkConfig, v, p, _with_pools(c, kw)),
                                 derive=lambda ctx, kw: None, write=lambda v, o: effective(v) if o.network_given
                                 else OMIT)
    slo: SLO = key(REQUIRED, "[slo]: latency objectives", kind=dict, parse=lambda v, p, c, kw: read(SLO, v, p),
                   derive=lambda ctx, kw: SLO(), write=write_slo)
    facility: Any = key(None, "[facility]: power sources, tents and the power manager (docs/power.md)", kind=dict,
                        parse=lambda v, p, c, kw: v, write=lambda v, o: effective(v) if v is not None and v.declared
                        else OMIT)
    failures: Any = key(None, "[failures]: node failures", kind=dict, parse=lambda v, p, c, kw: v,
                        write=lambda v, o: effective(o.facility.failures) if o.facility is not None
                        and o.facility.failures_given else OMIT)
    cost: CostConfig | None = key(None, "[cost]: prices", kind=dict, parse=table_of(CostConfig))
    run: RunConfig = key(REQUIRED, "[run]", kind=dict, parse=table_of(RunConfig),
                         derive=lambda ctx, kw: RunConfig())
    base_dir: Path = Path(".")
    raw: Mapping[str, Any] = field(default_factory=dict)  # the effective scenario (defaults filled in)
    network_given: bool = False

    @property
    def disaggregated(self) -> bool:
        return any(p.role != "mixed" for p in self.pools)

    @classmethod
    def resolve(cls, kw: dict[str, Any], path: str, ctx: Context, t: Table) -> dict[str, Any]:
        pools = kw["pools"]
        if kw["autoscaler"] is not None and not any(p.autoscaler for p in pools):
            raise ScenarioError("autoscaler.pools", f"names none of the pools ({', '.join(p.name for p in pools)})",
                                "name at least one pool, or remove pools to scale every pool")
        names = [p.name for p in pools]
        if len(set(names)) != len(names):
            raise ScenarioError("pools.name", f"duplicate pool names {names}", "give each pool a unique name")
        _check_models(kw["workload"], pools, ctx.catalog)
        _check_pins(kw["workload"], pools)
        kw["network_given"] = kw["network"] is not None
        if kw["network"] is None:
            kw["network"] = read(NetworkConfig, {}, "network", _with_pools(ctx, kw))
        _check_roles(pools, kw["router"])
        facility = parse_facility(kw["facility"], kw["failures"], t.data.get("pools", []), pools, ctx.base_dir)
        if facility is None and any(p.autoscaler for p in pools):  # its controller runs with the facility's events
            facility = Facility.empty()
        for i, p in enumerate(pools):
            tent = p.tent if p.tent is not None else (facility.tents[0].name if facility and facility.tents else None)
            if p.autoscaler is not None and tent is not None and facility is not None \
                    and facility.tent(tent).commission_s > 0:
                raise ScenarioError(f"pools[{i}].autoscaler", f"pool {p.name!r} is autoscaled in tent {tent!r}, which "
                                    "is commissioned later (commission_s): the two would both switch its replicas on",
                                    "set the tent's commission_s = 0 or autoscale another pool")
        kw["facility"] = facility
        kw["failures"] = None
        return kw


def _with_pools(ctx: Context, kw: dict[str, Any]) -> Context:
    return Context(ctx.catalog, ctx.base_dir, pools_raw=kw["pools"])


def _check_roles(pools: tuple[PoolConfig, ...], router: RouterConfig) -> None:
    """Each model is served co-located (mixed pools) or disaggregated (prefill and decode
    pools), and a disaggregated one's KV layout can move between its pools."""
    for m in dict.fromkeys(p.model.id for p in pools):
        mine = [(i, p) for i, p in enumerate(pools) if p.model.id == m]
        roles = {p.role for _, p in mine}
        if roles == {"mixed"}:
            continue
        first = next(i for i, p in mine if p.role != "mixed")
        if "mixed" in roles:
            i = next(i for i, p in mine if p.role == "mixed")
            raise ScenarioError(f"pools[{i}].role", f"{m} is served disaggregated (pools[{first}] has role "
                                f"{pools[first].role!r}) and co-located here", 'give every pool of a model '
                                'role = "prefill" or "decode", or leave them all "mixed"')
        if roles != {"prefill", "decode"}:
            missing = "decode" if "prefill" in roles else "prefill"
            raise ScenarioError(f"pools[{first}].role", f"{m} has {pools[first].role} pools but no {missing} pool",
                                f'add a [[pools]] with model = "{m}" and role = "{missing}"')
        if router.policy == "central_queue":
            raise ScenarioError("router.policy", "central_queue is one queue of whole requests: it cannot hand "
                                "prefilled requests to decode pools", "use a per-request router (e.g. jsq)")
        kvd = {p.kv_dtype for _, p in mine}
        if len(kvd) > 1:
            raise ScenarioError(f"pools[{first}].kv_dtype", f"{m}'s prefill and decode pools keep KV as "
                                f"{', '.join(sorted(kvd))}: the KV cannot be handed over as it is",
                                "give its prefill and decode pools one kv_dtype")


def _check_pins(w: WorkloadConfig, pools: tuple[PoolConfig, ...]) -> None:
    """Classes pinned to pools: each name a pool that serves the class's model where requests
    arrive (not a decode pool: decode pools serve every prefill pool of their model); two
    classes name the same pools or none in common (each set of pinned pools is one routing
    group); a class that names none has its model's pools that no class names."""
    by_name = {p.name: p for p in pools}
    sets: list[frozenset[str]] = []
    for k, c in enumerate(w.classes):
        where = f"workload.classes[{k}].pools"
        names = c.pools
        if not all(isinstance(n, str) for n in names):
            raise ScenarioError(where, f"must be a list of pool names, got {names!r}", 'write pools = ["name", ...]')
        model = c.model if c.model is not None else pools[0].model.id
        for n in names:
            p = by_name.get(n)
            if p is None:
                raise ScenarioError(where, f"no pool named {n!r}", f"use pool names ({', '.join(by_name)})")
            if p.model.id != model:
                raise ScenarioError(where, f"pool {n!r} serves {p.model.id}, not the class's {model}",
                                    "name pools of the class's model")
            if p.role == "decode":
                raise ScenarioError(where, f"{n!r} is a decode pool: decode pools serve every prefill pool of "
                                    "their model", "name the class's prefill pools")
        pin = frozenset(names)
        if pin and any(pin != o and pin & o for o in sets):
            raise ScenarioError(where, f"{sorted(pin)} overlaps another class's pools without being the same set",
                                "give classes the same pools or none in common")
        if pin:
            sets.append(pin)
    pinned = set().union(*sets) if sets else set()
    for k, c in enumerate(w.classes):
        model = c.model if c.model is not None else pools[0].model.id
        free = [p for p in pools if p.model.id == model and p.role != "decode" and p.name not in pinned]
        if not c.pools and sets and not free:
            raise ScenarioError(f"workload.classes[{k}].pools", f"every pool of {model} is pinned by another class, so "
                                f"{c.name!r} has none", f"give it pools = [...] or leave a pool of {model} unnamed")


def _check_models(w: WorkloadConfig, pools: tuple[PoolConfig, ...], cat: Any) -> None:
    """Requests that name a model name a catalog one; pools that serve several models need
    requests that say which (a class without a model would go to any of them)."""
    for k, c in enumerate(w.classes):
        if c.model is not None and c.model not in cat.models:
            raise ScenarioError(f"workload.classes[{k}].model", f"unknown model {c.model!r}",
                                f"use a catalog id ({', '.join(sorted(cat.models))}) or declare it under [models]")
    served = sorted({p.model.id for p in pools})
    if len(served) > 1:
        unnamed = [k for k, c in enumerate(w.classes) if c.model is None]
        if not w.classes or unnamed:
            where = f"workload.classes[{unnamed[0]}].model" if w.classes else "workload.classes"
            raise ScenarioError(where, f"the pools serve several models ({', '.join(served)}) but "
                                f"{'the requests name none' if not w.classes else 'this class names none'}",
                                "give each [[workload.classes]] a model = \"...\" (one of those served)")
    for k, c in enumerate(w.classes):
        if c.model is not None and c.model not in served:
            warn(f"workload.classes[{k}].model", f"no pool serves {c.model!r}: its requests are rejected "
                 "(reason no_pool_for_model)", f"add a pool with model = {c.model!r} or use one of {', '.join(served)}")


def _absolute_paths(eff: dict[str, Any], base_dir: Path) -> None:
    """Files the scenario names, made absolute, so the copy saved beside the results reruns from
    anywhere (`dcsim run OUT/scenario.toml`)."""
    def fix(d: Any, key_: str) -> None:
        if isinstance(d, dict) and isinstance(d.get(key_), str):
            d[key_] = str((base_dir / d[key_]).resolve())

    fix(eff, "catalog")
    w = eff.get("workload", {})
    fix(w, "trace")
    for spec in [w.get("prompt_tokens"), w.get("output_tokens")] + [
            c.get(k) for c in w.get("classes", []) for k in ("prompt_tokens", "output_tokens")]:
        fix(spec, "file")


def parse(raw: Mapping[str, Any], base_dir: Path = Path(".")) -> Scenario:
    """Validate a scenario dict (as read from TOML) into a Scenario."""
    raw = copy.deepcopy(dict(raw))
    cat = builtin_catalog()
    t = Table(raw, "")
    cat_file = t.get("catalog", str, None)
    if cat_file is not None:
        load_catalog_file(cat, base_dir / cat_file)
    cat.add_hardware(t.get("hardware", dict, {}), "hardware")
    cat.add_models(t.get("models", dict, {}), "models")
    sc = read(Scenario, raw, "", Context(cat, base_dir), base_dir=base_dir)
    eff = effective(sc)
    _absolute_paths(eff, base_dir)
    return dataclasses_replace(sc, raw=eff)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ScenarioError("scenario", f"file not found: {path}", "check the path") from None
    except IsADirectoryError:
        raise ScenarioError(
            "scenario",
            f"{path} is a folder",
            f"give a scenario file, e.g. {Path(path) / 'quickstart.toml'}"
            if Path(path, "quickstart.toml").exists()
            else "give a scenario file (.toml)",
        ) from None
    except UnicodeDecodeError:
        raise ScenarioError("scenario", f"{path} is not a text file", "give a scenario file (.toml)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError("scenario", f"{path} is not valid TOML: {exc}", "fix the syntax at that line") from None


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string


def apply_overrides(raw: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """Apply `key.path=value` overrides. In arrays of tables (pools) a segment may be an index
    or a pool name; otherwise the rest of the path applies to every element."""
    raw = copy.deepcopy(raw)
    for item in sets:
        if "=" not in item:
            raise ScenarioError("--set", f"{item!r} is not key.path=value", "write e.g. --set workload.rate_per_s=5")
        key, text = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ScenarioError("--set", f"empty key in {item!r}")
        _set(raw, parts, _parse_value(text.strip()), key)
    return raw


def _set(node: Any, parts: list[str], value: Any, key: str) -> None:
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        targets: list[Any]
        if head.isdigit():
            i = int(head)
            if i >= len(node):
                raise ScenarioError(f"--set {key}", f"index {i} out of range (have {len(node)})")
            targets, rest = [node[i]], rest
        elif any(isinstance(e, dict) and e.get("name") == head for e in node):
            targets = [e for e in node if isinstance(e, dict) and e.get("name") == head]
        else:
            targets, rest = node, parts
        for tgt in targets:
            if rest:
                _set(tgt, rest, value, key)
            else:
                raise ScenarioError(f"--set {key}", "cannot replace a whole array element")
        return
    if not isinstance(node, dict):
        raise ScenarioError(f"--set {key}", f"{head!r} is under a value, not a table")
    if not rest:
        node[head] = value
        return
    if head not in node:
        node[head] = {}
    _set(node[head], rest, value, key)


def load(path: str | Path, sets: list[str] | None = None, seed: int | None = None) -> Scenario:
    """Read, override and validate a scenario file."""
    p = Path(path)
    raw = read_toml(p)
    if sets:
        raw = apply_overrides(raw, sets)
    if seed is not None:
        raw["seed"] = seed
    return parse(raw, p.parent)
