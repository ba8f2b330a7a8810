"""A small OpenAI-compatible streaming server for the tests of `dcsim observe` and `calibrate`:
a continuous-batching engine whose step time is its own linear timing model, not dcsim's:

    step_s = base_s + per_seq_s x sequences
             + max(weights_s + per_ctx_tok_s x context tokens, per_tok_s x (sequences + prompt tokens))

(a GPU step is bound by memory traffic or by compute, whichever is longer, plus host overheads)

Each step admits waiting requests first come first served (up to max_batch running, whole prompts
within a token budget: the first token comes at the end of the step that prefilled the prompt),
then every running sequence gets one token. When each token's chunk is written (time.perf_counter,
the same monotonic clock as the client's on this machine) is logged to --log as JSON lines.

    python tests/fake_server.py [--port 0] [--log FILE] [--crlf]   # prints "PORT <n>" when listening
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field

from aiohttp import web

BASE_S, PER_SEQ_S, WEIGHTS_S, PER_CTX_TOK_S, PER_TOK_S = 0.003, 1e-4, 0.006, 5e-8, 2.5e-5
MAX_BATCH, TOKEN_BUDGET = 64, 8192
EOL = b"\n"  # --crlf: b"\r\n", as some servers end their event lines


@dataclass
class Req:
    rid: str
    prompt: int
    want: int
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    done: int = 0
    times: list[float] = field(default_factory=list)


class Engine:
    def __init__(self, log) -> None:
        self.waiting: list[Req] = []
        self.running: list[Req] = []
        self.wake = asyncio.Event()
        self.log = log
        self.n = 0

    async def loop(self) -> None:
        while True:
            if not self.waiting and not self.running:
                self.wake.clear()
                await self.wake.wait()
            admitted, budget = [], TOKEN_BUDGET
            while self.waiting and len(self.running) + len(admitted) < MAX_BATCH and self.waiting[0].prompt <= budget:
                r = self.waiting.pop(0)
                budget -= r.prompt
                admitted.append(r)
            ctx = sum(r.prompt + r.done for r in self.running)
            p_tok = sum(r.prompt for r in admitted)
            n = len(self.running) + len(admitted)
            mem_s = WEIGHTS_S + PER_CTX_TOK_S * ctx
            await asyncio.sleep(BASE_S + PER_SEQ_S * n + max(mem_s, PER_TOK_S * (n + p_tok)))
            now = time.perf_counter()
            self.running += admitted
            for r in self.running:
                r.done += 1
                r.out.put_nowait(now)
            for r in [r for r in self.running if r.done >= r.want]:
                self.running.remove(r)
                r.out.put_nowait(None)


async def completions(request: web.Request) -> web.StreamResponse:
    eng: Engine = request.app["engine"]
    body = await request.json()
    prompt = body.get("prompt")
    if not isinstance(prompt, list) or not body.get("stream"):
        return web.json_response({"error": "this server wants a list of token ids and stream = true"}, status=400)
    eng.n += 1
    r = Req(str(body.get("user", eng.n)), len(prompt), int(body.get("max_tokens", 16)))
    eng.waiting.append(r)
    eng.wake.set()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    try:
        await _stream(eng, r, resp, request)
    except ConnectionError:  # the client went away (Ctrl-C): its request ends here
        pass
    return resp


async def _stream(eng: Engine, r: Req, resp: web.StreamResponse, request: web.Request) -> None:
    await resp.prepare(request)
    while True:
        t = await r.out.get()
        if t is None:
            break
        chunk = {"id": f"cmpl-{r.rid}", "object": "text_completion",
                 "choices": [{"index": 0, "text": " tok", "finish_reason": "length" if r.done >= r.want else None}]}
        await resp.write(b"data: " + json.dumps(chunk).encode() + EOL + EOL)
        r.times.append(time.perf_counter())  # the server's log: when the token's chunk was written
    usage = {"id": f"cmpl-{r.rid}", "choices": [], "usage": {"prompt_tokens": r.prompt, "completion_tokens": r.done}}
    await resp.write(b"data: " + json.dumps(usage).encode() + EOL + EOL + b"data: [DONE]" + EOL + EOL)
    await resp.write_eof()
    if eng.log:
        eng.log.write(json.dumps({"rid": r.rid, "times": r.times}) + "\n")
        eng.log.flush()


async def serve(port: int, log_path: str | None) -> None:
    log = open(log_path, "w") if log_path else None
    app = web.Application()
    app["engine"] = eng = Engine(log)
    app.router.add_post("/v1/completions", completions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print("PORT", site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
    await eng.loop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log")
    ap.add_argument("--crlf", action="store_true")
    a = ap.parse_args()
    if a.crlf:
        EOL = b"\r\n"
    asyncio.run(serve(a.port, a.log))
