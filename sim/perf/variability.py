"""Step-time variability: the warm-up of a new replica and the jitter of host overheads, as a
factor on each step's roofline time (applied in the kernel's `_vary`).

A roofline step time is a mean; measured serving has tails the mean cannot make: vLLM's first
seconds after start (lazy kernel compilation and autotuning, most visible on MoE models' fused
expert kernels), host hiccups (scheduling, detokenisation, the Python runtime) and slow spells
lasting seconds (contention on the host), which stretch whole requests. Three terms:
- warm-up: factor 1 + warmup_factor x exp(-age / warmup_s), age = time since the replica began
  (x warmup_decode for steps without prefill);
- jitter: factor (1 - jitter) + X, with X = 0 on all but a share jitter_prob of steps, where X is
  exponential with mean jitter / jitter_prob;
- slow episodes: time is cut into windows of episode_s; a share episode_share of them (drawn per
  window) is slow, factor 1 + episode_stretch (1 - episode_share), the others 1 -
  episode_stretch x episode_share.
Jitter and episodes have mean 1, so mean step times (what the calibration fits) are kept; the
factor is never below `floor`.
Draws come from a hash of (seed, replica, step count or window): the same on every machine and
driver.
Values per model kind (dense / moe) are fitted on the measured vLLM runs, whose servers started
cold (scripts/fit_variability.py, sim/data/variability.toml, which says what they reach). They
are not on by default: a run is deterministic and warm unless its pool sets `variability = true`
(the fitted values: a freshly started server) or a `[pools.variability]` table. The catalog's
perf constants are fitted on the measured means as they are, for runs without variability;
`dcsim validate --cv --variability` refits each fold with its warm-up divided out.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.errors import ScenarioError
from sim.schema import Table, key

DATA = Path(__file__).resolve().parents[1] / "data" / "variability.toml"
KEYS = (
    "warmup_factor",
    "warmup_s",
    "warmup_decode",
    "jitter",
    "jitter_prob",
    "episode_s",
    "episode_share",
    "episode_stretch",
)


def _fitted(name: str) -> Any:
    """A key's default in a [pools.variability] table: the value fitted for the model's kind."""
    return lambda base, kw: getattr(base, name)


@dataclass(frozen=True, kw_only=True)
class Variability:
    """[pools.variability]: false (deterministic steps), true (the values fitted for the model's
    kind, sim/data/variability.toml), or a table overriding some of them."""

    warmup_factor: float = key(0.0, "warm-up: a new replica's steps last 1 + this x exp(-age / warmup_s)", nonneg=True,
                               hi=1e3, derive=_fitted("warmup_factor"), doc_default="fitted")
    warmup_s: float = key(10.0, "warm-up's time constant", positive=True, unit="s", derive=_fitted("warmup_s"),
                          doc_default="fitted")
    # the share of the warm-up a step without prefill gets (1: every step alike; 0: only steps
    # carrying prefill: decode batch shapes are captured as CUDA graphs before serving, while
    # new prefill shapes and MoE kernels' token counts compile lazily)
    warmup_decode: float = key(1.0, "the share of the warm-up a step without prefill gets", nonneg=True, hi=1.0,
                               derive=_fitted("warmup_decode"), doc_default="fitted")
    jitter: float = key(0.0, "jitter: the mean stretch over all steps, a share of the step time", nonneg=True,
                        below=1.0, derive=_fitted("jitter"), doc_default="fitted")
    jitter_prob: float = key(0.05, "the share of steps stretched", positive=True, hi=1.0,
                             derive=_fitted("jitter_prob"), doc_default="fitted")
    episode_s: float = key(0.0, "slow episodes: the window length (0: none)", nonneg=True, unit="s",
                           derive=_fitted("episode_s"), doc_default="fitted")
    episode_share: float = key(0.05, "the share of windows that are slow", nonneg=True, hi=1.0,
                               derive=_fitted("episode_share"), doc_default="fitted")
    episode_stretch: float = key(0.0, "a slow window's steps last 1 + stretch (1 - share) times the mean",
                                 nonneg=True, hi=1e3, derive=_fitted("episode_stretch"), doc_default="fitted")
    source: Any = field(default=None, compare=False)  # as the scenario gave it (true, or the table): rewritten so

    @classmethod
    def given(cls, v: "Variability", source: Any) -> "Variability":
        """v, remembering how the scenario gave it."""
        return dataclasses.replace(v, source=source)

    @classmethod
    def resolve(cls, kw: dict[str, Any], path: str, ctx: Any, t: Table) -> dict[str, Any]:
        if kw["episode_stretch"] * kw["episode_share"] >= 1:
            raise ScenarioError(f"{path}.episode_stretch", "episode_stretch x episode_share must be below 1 (the other "
                                "windows are shortened by it to keep the mean)")
        return kw

    @property
    def on(self) -> bool:
        return self.warmup_factor > 0 or self.jitter > 0 or (self.episode_s > 0 and self.episode_stretch > 0)

    def mean_warmup(self, start_s: float, duration_s: float, decode: bool = False) -> float:
        """The warm-up factor averaged over [start_s, start_s + duration_s] of a replica's life
        (jitter and episodes have mean 1), for steps with prefill or (`decode`) without: what the
        calibration divides out of measured means."""
        a = self.warmup_factor * (self.warmup_decode if decode else 1.0)
        if a <= 0 or duration_s <= 0:
            return 1.0
        t = self.warmup_s
        return 1.0 + a * t / duration_s * (math.exp(-start_s / t) - math.exp(-(start_s + duration_s) / t))

    @property
    def floor(self) -> float:
        """The smallest factor a step can get (the kernel's completion bound uses it)."""
        ep = self.episode_stretch * self.episode_share if self.episode_s > 0 else 0.0
        return (1.0 - self.jitter) * (1.0 - ep)


OFF = Variability()


def _load() -> dict:
    with open(DATA, "rb") as fh:
        return tomllib.load(fh)


def defaults(kind: str) -> Variability:
    """The fitted defaults for 'dense' or 'moe' models (sim/data/variability.toml)."""
    raw = _load()
    return Variability(**{k: float(raw[kind][k]) for k in KEYS if k in raw[kind]})


def left_out(model: str) -> dict[str, Variability] | None:
    """The values chosen without `model` (leave-one-model-out), by kind; None if not fitted."""
    per = _load().get("cv", {}).get(model)
    if per is None:
        return None
    return {kind: Variability(**{k: float(t[k]) for k in KEYS if k in t}) for kind, t in per.items()}

