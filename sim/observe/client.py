"""`dcsim observe`: send a scenario's workload to an OpenAI-compatible `/v1/completions` endpoint
with streaming and time every token as it arrives.

The requests are the scenario's own (sim/workload: the same arrival times, classes and prompt and
output lengths a simulation of it draws, for its seed), so a simulation of the scenario is the
prediction of exactly this run. Open loop: request j is sent at its arrival time (late if more
than `max_inflight` are open: the wait counts in its TTFT, as a queue would). Closed loop: each
of `concurrency` clients sends its next request when its previous one ends, after its think time;
`duration_s` stops them. Each request asks for `max_tokens` = its output tokens with
`ignore_eos` (the length is the workload's, not the model's), its prompt a list of token ids.

HTTP client: aiohttp, chosen over httpx because its streaming reads cost less per chunk at
hundreds of concurrent streams (the timing error is the client's own overhead), it is as
well kept, and its server half serves the tests' reference server. Times are
`time.perf_counter()` from the run's start, taken when each event's bytes reach the connection
(`_stamping_connector`), else when they are read.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.progress import Progress
from sim.workload.generate import Workload

JSON = {"Content-Type": "application/json"}
TOKEN_ID_RANGE = (1000, 30000)  # prompt token ids drawn here: ordinary vocabulary in every tokenizer


@dataclass
class Outcome:
    """One request as measured (times in s from the run's start; nan where it never happened)."""

    arrival_s: float = float("nan")
    first_token_s: float = float("nan")
    finish_s: float = float("nan")
    tokens: int = 0
    status: str = "failed"
    reason: str = "not sent: the run ended first"
    client: int = -1
    token_times_s: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    """Where and how to send."""

    url: str  # the server's base URL (…/v1/completions is appended unless given)
    model: str
    timeout_s: float = 600.0  # per request, from its send to its last token
    max_inflight: int = 4096  # open requests at most (open loop)

    @property
    def endpoint(self) -> str:
        u = self.url.rstrip("/")
        if u.endswith("/completions"):
            return u
        return u + ("/completions" if u.endswith("/v1") else "/v1/completions")


def prompt_ids(n: int, j: int, seed: int) -> list[int]:
    """Request j's prompt: n token ids, reproducible from the seed (no two requests share a prefix
    unless the server's cache finds one by chance)."""
    rng = np.random.default_rng([seed, j])
    return rng.integers(*TOKEN_ID_RANGE, size=n).tolist()


def _body(t: Target, prompt: list[int], max_tokens: int, j: int) -> dict[str, Any]:
    return {"model": t.model, "prompt": prompt, "max_tokens": int(max_tokens), "stream": True, "user": f"dcsim-{j}",
            "ignore_eos": True, "temperature": 0.0, "stream_options": {"include_usage": True}}


def _chunk_tokens(obj: dict[str, Any]) -> int:
    """Tokens a streamed chunk carries: 1 per chunk with text or a token (vLLM, SGLang and
    TensorRT-LLM stream one token per chunk); 0 for the usage-only chunk."""
    ch = obj.get("choices") or []
    if not ch:
        return 0
    c = ch[0]
    lp = c.get("logprobs")
    if isinstance(lp, dict) and isinstance(lp.get("tokens"), list) and lp["tokens"]:
        return len(lp["tokens"])
    return 1 if c.get("text") or c.get("finish_reason") is None else 0


def _event(ev: bytes) -> tuple[int, int | None, bool]:
    """One server-sent event: (tokens it carries, completion tokens if it reports usage, whether it
    ends the stream). A plain token chunk is recognised without parsing its JSON (the client's own
    time per chunk is the timing error at hundreds of streams)."""
    data = b""
    for line in ev.split(b"\n"):
        line = line.strip()
        if line.startswith(b"data:"):
            data = line[5:].strip()
    if not data:
        return 0, None, False
    if data == b"[DONE]":
        return 0, None, True
    if b'"usage"' not in data and b'"logprobs"' not in data and b'"text":""' not in data.replace(b" ", b""):
        return (1 if b'"choices":[{' in data.replace(b" ", b"") else 0), None, False
    obj = json.loads(data)
    u = obj.get("usage")
    return _chunk_tokens(obj), (int(u["completion_tokens"]) if u and "completion_tokens" in u else None), False


def _stamping_connector() -> Any:
    """A connector whose connections note when their bytes arrive (`rx_s`, perf_counter) in the
    transport's callback, before any coroutine runs: a token's time is then its arrival, not
    when the client got round to it (at hundreds of streams the difference is milliseconds).
    Relies on aiohttp's connector `_factory` (aiohttp 3.x); without it, times are taken on read."""
    import functools

    import aiohttp
    from aiohttp.client_proto import ResponseHandler

    class Stamped(ResponseHandler):
        rx_s = 0.0
        ev_s: collections.deque[float] | None = None  # arrival of each server-sent event not yet read
        last = b""

        def data_received(self, data: bytes) -> None:
            now = time.perf_counter()
            self.rx_s = now
            if self.ev_s is None:
                self.ev_s = collections.deque()
            # an event ends at a blank line; the HTTP framing (CRLF chunk sizes) never makes one (a
            # server ending its lines in CRLF is not counted here: its events take their read's time)
            self.ev_s.extend([now] * (self.last + data).count(b"\n\n"))
            self.last = data[-1:]
            super().data_received(data)

    conn = aiohttp.TCPConnector(limit=0)  # the workload bounds concurrency, not the pool
    if isinstance(getattr(conn, "_factory", None), functools.partial):
        conn._factory = functools.partial(Stamped, loop=conn._factory.keywords["loop"])  # type: ignore[assignment]
    return conn


def bodies(t: Target, wl: Workload, seed: int) -> list[bytes]:
    """Every request's body, encoded before the run (encoding at send time would delay the
    reading of other streams' tokens)."""
    return [json.dumps(_body(t, prompt_ids(int(wl.prompt_tokens[j]), j, seed), int(wl.output_tokens[j]), j)).encode()
            for j in range(len(wl))]


async def _send(session: Any, t: Target, wl: Workload, j: int, body: bytes, t0: float, o: Outcome) -> None:
    """Send request j and fill `o` as its tokens arrive."""
    import aiohttp

    o.arrival_s = o.arrival_s if o.arrival_s == o.arrival_s else time.perf_counter() - t0
    o.reason = "no response"
    want = int(wl.output_tokens[j])
    try:
        limit = aiohttp.ClientTimeout(total=t.timeout_s)
        async with session.post(t.endpoint, data=body, headers=JSON, timeout=limit) as resp:
            if resp.status != 200:
                queue = getattr(getattr(resp.connection, "protocol", None), "ev_s", None)
                text = (await resp.text())[:200].replace("\n", " ")
                o.reason = f"http {resp.status}: {text}"
                if queue:  # blank lines of the error body: not the next response's events
                    queue.clear()
                return
            usage, done = await _read(resp, t0, o)
    except asyncio.TimeoutError:
        o.reason = f"timeout after {t.timeout_s:g} s ({o.tokens} of {want} tokens)"
        return
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        o.reason = f"{type(exc).__name__}: {str(exc)[:160]} ({o.tokens} of {want} tokens)"
        return
    if usage is not None:
        o.tokens = int(usage)
    if not done and o.tokens < want:
        o.reason = f"stream ended early ({o.tokens} of {want} tokens)"
    elif o.tokens == 0:
        o.reason = "no token received"
    else:
        o.status, o.reason = "completed", ("" if o.tokens == want else f"{o.tokens} of {want} tokens")


async def _read(resp: Any, t0: float, o: Outcome) -> tuple[int | None, bool]:
    """Read a streamed response into `o`: (completion tokens if the server reported them, whether
    it ended with [DONE])."""
    usage = None
    pending = b""
    proto = getattr(resp.connection, "protocol", None)  # kept: the connection is released at the end
    queue = getattr(proto, "ev_s", None)
    try:
        async for buf in resp.content.iter_any():  # whatever arrived: fewer wake-ups than per line
            rx = getattr(proto, "rx_s", 0.0)
            read_s = (rx if rx > 0.0 else time.perf_counter()) - t0
            pending = (pending + buf).replace(b"\r\n", b"\n")  # SSE lines may end in CRLF
            *events, pending = pending.split(b"\n\n")
            for ev in events:
                # each event's own arrival where the connection counted it, else this read's
                now = queue.popleft() - t0 if queue else read_s
                k, u, end = _event(ev)
                if end:
                    return usage, True
                if u is not None:
                    usage = u
                if k:
                    if o.tokens == 0:
                        o.first_token_s = now
                    o.tokens += k
                    o.token_times_s.append(now)
                    o.finish_s = now
        return usage, False
    finally:  # events counted but not read (an early end): not the next response's on this connection
        if queue:
            queue.clear()


async def _open_loop(session: Any, t: Target, wl: Workload, body: list[bytes], out: list[Outcome], bar: Progress,
                     t0: float) -> None:
    sem = asyncio.Semaphore(t.max_inflight)

    async def one(j: int) -> None:
        out[j].arrival_s = float(wl.arrival_s[j])  # scheduled: a late send's wait counts in its TTFT
        async with sem:
            await _send(session, t, wl, j, body[j], t0, out[j])
        bar.update()

    tasks = []
    for j in range(len(wl)):
        delay = float(wl.arrival_s[j]) - (time.perf_counter() - t0)
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(j)))
    await asyncio.gather(*tasks)


async def _closed_loop(session: Any, t: Target, wl: Workload, body: list[bytes], out: list[Outcome], bar: Progress,
                       duration_s: float | None, t0: float) -> None:
    nxt = iter(range(len(wl)))

    async def client(c: int) -> None:
        for j in nxt:
            if duration_s is not None and time.perf_counter() - t0 >= duration_s:
                return
            out[j].client = c
            await _send(session, t, wl, j, body[j], t0, out[j])
            bar.update()
            if wl.think_s is not None and wl.think_s[j] > 0:
                await asyncio.sleep(float(wl.think_s[j]))

    await asyncio.gather(*(client(c) for c in range(wl.clients)))


async def probe(t: Target) -> str | None:
    """None when the endpoint answers a one-token streamed completion, else why not (one line)."""
    import aiohttp

    o = Outcome()
    wl = Workload(np.zeros(1), np.array([4]), np.array([1]))
    try:
        async with aiohttp.ClientSession() as s:
            probe_t = Target(t.url, t.model, min(t.timeout_s, 30.0))
            await asyncio.wait_for(_send(s, probe_t, wl, 0, bodies(probe_t, wl, 0)[0], time.perf_counter(), o), 35.0)
    except asyncio.TimeoutError:
        return "no answer within 30 s"
    return None if o.status == "completed" else o.reason


def _run(coro: Any) -> Any:
    """asyncio.run, on uvloop where it is installed (about half the client's time per chunk)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return asyncio.run(coro)
    return uvloop.run(coro)


def run(t: Target, wl: Workload, seed: int, duration_s: float | None = None,
        bar: bool = True) -> tuple[list[Outcome], bool, float]:
    """Send the workload; (each request's outcome, whether the run finished: False after Ctrl-C,
    with what was measured kept and the rest failed with the reason, and the run's time origin:
    time.perf_counter() at its t = 0)."""
    import aiohttp

    out = [Outcome() for _ in range(len(wl))]
    body = bodies(t, wl, seed)
    prog = Progress(len(wl), "observe", enabled=bar)
    t0 = 0.0

    async def main() -> None:
        async with aiohttp.ClientSession(connector=_stamping_connector()) as s:
            nonlocal t0
            t0 = time.perf_counter()
            if wl.clients:
                await _closed_loop(s, t, wl, body, out, prog, duration_s, t0)
            else:
                await _open_loop(s, t, wl, body, out, prog, t0)

    complete = True
    # short collector pauses while tokens are being timed: everything alive before the run is
    # frozen out of the collector's scans (a full collection over a big process, e.g. a test
    # runner's, stalls the event loop for milliseconds); what the run creates is still collected
    gc.collect()
    gc.freeze()
    try:
        _run(main())
    except KeyboardInterrupt:
        complete = False
        for o in out:
            if o.status != "completed" and o.arrival_s == o.arrival_s and o.reason in ("no response", ""):
                o.reason = f"interrupted (Ctrl-C) after {o.tokens} tokens"
            elif o.status != "completed" and o.reason.startswith("not sent"):
                o.reason = "not sent: interrupted (Ctrl-C)"
    finally:
        gc.unfreeze()
    prog.close()
    return out, complete, t0
