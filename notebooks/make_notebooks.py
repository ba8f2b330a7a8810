"""Write the notebooks of this folder (run: python notebooks/make_notebooks.py). They are kept
as code here so that diffs stay readable; the test suite executes the .ipynb files with
DCSIM_SMALL=1 (small sizes)."""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent

SETUP = '''import os, sys
from pathlib import Path
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
sys.path.insert(0, str(ROOT))
import numpy as np
import matplotlib.pyplot as plt
import sim.api as dc
SMALL = bool(os.environ.get("DCSIM_SMALL"))  # the test suite runs these notebooks small
QUICK = ROOT / "scenarios" / "quickstart.toml"
OUT = ROOT / "runs" / "notebooks"
OUT.mkdir(parents=True, exist_ok=True)'''


def policy_comparison() -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    c = nb.cells
    c.append(nbf.v4.new_markdown_cell(
        "# Comparing batching schedulers and routers\n\n"
        "Llama-3.1-8B on 4 H100s (the quickstart scenario). Every variant runs on the same seeds, so it "
        "sees exactly the same requests (common random numbers), and differences are paired: their "
        "confidence intervals are much narrower than those of the separate means."))
    c.append(nbf.v4.new_code_cell(SETUP))
    c.append(nbf.v4.new_markdown_cell(
        "## Schedulers at high load\n\n`static` (request-level batches), `continuous` (whole prefills, "
        "prioritised: vLLM v0) and `chunked` (decode first, prefill chunks in the token budget: vLLM v1, "
        "Sarathi-Serve), at 120 requests/s (about 80% of the replicas' capacity)."))
    c.append(nbf.v4.new_code_cell(
        'N = 400 if SMALL else 4000\nR = 2 if SMALL else 5\n'
        'sched = dc.compare(QUICK, vary=["pools.scheduler.policy=static,continuous,chunked"], replications=R,\n'
        '                   baseline="continuous", set=[f"workload.num_requests={N}", "workload.rate_per_s=120",\n'
        '                                          "slo.ttft_s=0.5", "slo.tpot_s=0.05"])\n'
        'df = dc.compare_df(sched)\n'
        'df[df.metric.isin(["ttft_p99_s", "tpot_p99_s", "e2e_mean_s", "goodput_req_per_s"])].round(4)'))
    c.append(nbf.v4.new_code_cell(
        'files = dc.plot(sched, OUT / "schedulers")\n'
        'from IPython.display import Image, display\n'
        'for f in files:\n    display(Image(filename=str(f)))'))
    c.append(nbf.v4.new_markdown_cell(
        "## Routers under bursty arrivals\n\nGamma arrivals with a coefficient of variation of 3 (bursts), "
        "chunked scheduling; `round_robin` ignores load, `least_loaded` counts outstanding tokens, `jsq` "
        "outstanding requests, `power_of_two` compares two random replicas."))
    c.append(nbf.v4.new_code_cell(
        'routers = dc.compare(QUICK, vary=["router.policy=round_robin,least_loaded,jsq,power_of_two"], replications=R,\n'
        '                     set=[f"workload.num_requests={N}", "workload.rate_per_s=110", "workload.arrival=\\"gamma\\"",\n'
        '                          "workload.cv=3.0", "slo.ttft_s=0.5", "slo.tpot_s=0.05"])\n'
        'dr = dc.compare_df(routers)\n'
        'dr[dr.metric.isin(["ttft_p99_s", "e2e_p99_s", "goodput_req_per_s"])].round(4)'))
    c.append(nbf.v4.new_code_cell(
        'files = dc.plot(routers, OUT / "routers")\n'
        'for f in files:\n    display(Image(filename=str(f)))'))
    c.append(nbf.v4.new_markdown_cell("## Latency against load"))
    c.append(nbf.v4.new_code_cell(
        'rng = "workload.rate_per_s=50:200:75" if SMALL else "workload.rate_per_s=25:250:25"\n'
        'sw = dc.sweep(QUICK, rng, vary=["pools.scheduler.policy=continuous,chunked"],\n'
        '              set=[f"workload.num_requests={N}", "slo.ttft_s=0.5", "slo.tpot_s=0.05"])\n'
        'for f in dc.plot(sw, OUT / "sweep"):\n    display(Image(filename=str(f)))\n'
        '{lab: v["max_value_meeting_slo"] for lab, v in sw["variants"].items()}'))
    c.append(nbf.v4.new_markdown_cell("## What the numbers say (computed from the runs above)"))
    c.append(nbf.v4.new_code_cell(
        'm = lambda rep, lab, k: rep["variants"][lab]["metrics"][k]\n'
        'ch, co, st = (m(sched, l, "tpot_p99_s") for l in ("chunked", "continuous", "static"))\n'
        'print(f"p99 TPOT: chunked {ch[\'mean\']*1e3:.1f} ms, continuous {co[\'mean\']*1e3:.1f} ms, static {st[\'mean\']*1e3:.1f} ms")\n'
        'print(f"chunked - continuous: {ch[\'diff_mean\']*1e3:+.1f} ms [{ch[\'diff_ci_low\']*1e3:+.1f}, {ch[\'diff_ci_high\']*1e3:+.1f}]"\n'
        '      f" ({\'significant\' if ch[\'significant\'] else \'not significant\'})")\n'
        'best = min(routers["variants"], key=lambda l: m(routers, l, "ttft_p99_s")["mean"])\n'
        'print("lowest p99 TTFT under bursts:", best)\n'
        'print("max load within the SLO:", {lab: v["max_value_meeting_slo"] for lab, v in sw["variants"].items()})'))
    c.append(nbf.v4.new_markdown_cell(
        "## Conclusion\n\n"
        "At the full sizes (4,000 requests, 5 replications; small test runs can differ):\n\n"
        "- **Chunked prefill wins on tail TPOT.** Continuous batching runs each new prompt as a step of its own, "
        "so every running decode waits for it; chunked prefill bounds that wait by the token budget. Its p99 TPOT "
        "is clearly and significantly lower than continuous batching's at 120 req/s, and it keeps the SLO to a "
        "higher load in the sweep (the Sarathi-Serve result).\n"
        "- **Static batching is far worse**: new requests wait for the whole batch to finish, so TTFT explodes "
        "long before the GPUs are busy.\n"
        "- **Under bursts, round-robin held its own.** With chunked prefill at about 75% load, the load-aware "
        "routers did not lower p99 TTFT against `round_robin` (it had the lowest; `jsq` the highest, significantly). "
        "Round-robin spreads each burst's prompts evenly, while counting outstanding requests (`jsq`) or tokens "
        "(`least_loaded`) mostly counts long-running decodes, which chunked prefill does not let block a new prompt. "
        "`least_loaded` trimmed p99 E2E a little (not significant). Queue-length routing pays off where a backlog "
        "is what delays new work: with one-request-at-a-time servers (tests/test_policies.py) `jsq` and "
        "`power_of_two` cut the mean wait well below round-robin.\n"
        "- The paired differences have narrow CIs even with few replications, which is what common random "
        "numbers buy."))
    return nb


def queueing_basics() -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    c = nb.cells
    c.append(nbf.v4.new_markdown_cell(
        "# The engine against queueing theory\n\n"
        "In analytic mode (`[pools.service]`) each request takes one service draw and a replica serves one "
        "request at a time, so dcsim must reproduce textbook results: M/M/1 and M/D/1 mean waits "
        "(Pollaczek-Khinchine) and M/M/c with a shared queue (Erlang C)."))
    c.append(nbf.v4.new_code_cell(SETUP + '''
import math

def analytic(rate, n, dist="exponential", c=1, seed=1):
    return dc.from_dict({"seed": seed,
        "workload": {"arrival": "poisson", "rate_per_s": rate, "num_requests": n, "prompt_tokens": 1, "output_tokens": 1},
        "pools": [{"hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": c, "service": {"dist": dist, "mean_s": 1.0}}],
        "router": {"policy": "central_queue"}, "run": {"timeseries": False}})

def erlang_c(c, a):
    s = sum(a**k / math.factorial(k) for k in range(c))
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (s + top)

N = 20_000 if SMALL else 200_000
rhos = [0.3, 0.5, 0.7, 0.8, 0.9]'''))
    c.append(nbf.v4.new_code_cell(
        'rows = []\n'
        'for rho in rhos:\n'
        '    mm1 = dc.summary(dc.run(analytic(rho, N)))["queue_mean_s"]\n'
        '    md1 = dc.summary(dc.run(analytic(rho, N, "deterministic")))["queue_mean_s"]\n'
        '    mm4 = dc.summary(dc.run(analytic(4 * rho, N, c=4)))["queue_mean_s"]\n'
        '    rows.append((rho, mm1, rho / (1 - rho), md1, rho / (2 * (1 - rho)), mm4, erlang_c(4, 4 * rho) / (4 - 4 * rho)))\n'
        'import pandas as pd\n'
        'tab = pd.DataFrame(rows, columns=["rho", "M/M/1 sim", "M/M/1 theory", "M/D/1 sim", "M/D/1 theory", "M/M/4 sim", "M/M/4 theory"])\n'
        'tab.round(3)'))
    c.append(nbf.v4.new_code_cell(
        'fig, ax = plt.subplots(figsize=(7, 4.5))\n'
        'x = np.linspace(0.25, 0.92, 100)\n'
        'for i, (sim_col, th, label) in enumerate([("M/M/1 sim", lambda r: r / (1 - r), "M/M/1"),\n'
        '                                          ("M/D/1 sim", lambda r: r / (2 * (1 - r)), "M/D/1"),\n'
        '                                          ("M/M/4 sim", lambda r: erlang_c(4, 4 * r) / (4 - 4 * r), "M/M/4")]):\n'
        '    ax.plot(x, [th(r) for r in x], color=f"C{i}", label=f"{label} theory")\n'
        '    ax.plot(tab["rho"], tab[sim_col], "o", color=f"C{i}", label=f"{label} dcsim")\n'
        'ax.set_xlabel("utilisation rho"); ax.set_ylabel("mean wait in queue (s, mean service 1 s)")\n'
        'ax.set_yscale("log"); ax.grid(alpha=0.3, which="both"); ax.legend(fontsize=8)\n'
        'ax.set_title("Mean queueing delay: dcsim against theory")\n'
        'fig.savefig(OUT / "queueing_basics.png", dpi=110); plt.show()'))
    c.append(nbf.v4.new_code_cell(
        'err = np.abs(tab[["M/M/1 sim", "M/D/1 sim", "M/M/4 sim"]].values / tab[["M/M/1 theory", "M/D/1 theory", "M/M/4 theory"]].values - 1)\n'
        'print(f"largest relative error: {err.max():.1%} over {N} requests per point")'))
    c.append(nbf.v4.new_markdown_cell(
        "## Conclusion\n\nThe simulated mean waits sit on the theoretical curves (within a few percent at 200,000 "
        "requests per point; the error grows with utilisation because waits are long and strongly correlated "
        "there, so estimates need more requests). The wait explodes as rho approaches 1, deterministic service "
        "halves the M/M/1 wait, and pooling four servers behind one queue cuts the wait by an order of magnitude "
        "at the same utilisation: the same economics that make a shared queue (or a load-aware router) worth "
        "having in front of LLM replicas."))
    return nb


def tent_power() -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    c = nb.cells
    c.append(nbf.v4.new_markdown_cell(
        "# A tent on gas turbines: power limits, trips and cost per token\n\n"
        "`scenarios/tent.toml`: 64 H200s serving Llama-3.1-70B (TP4) in a tent fed by N+1 modular gas "
        "turbines, with an air-cooled PUE that follows the day. `scenarios/tent_trip.toml`: the same tent "
        "without the spare, losing one unit for two minutes."))
    c.append(nbf.v4.new_code_cell(SETUP + "\nfrom IPython.display import Image, display\nimport pandas as pd\n"
                                  "DUR = 60 if SMALL else 240"))
    c.append(nbf.v4.new_markdown_cell("## The tent in normal operation"))
    c.append(nbf.v4.new_code_cell(
        'tent = dc.load(ROOT / "scenarios" / "tent.toml", set=[f"workload.duration_s={DUR}"])\n'
        'res = dc.run(tent)\n'
        's = dc.summary(res)\n'
        'print({k: round(s[k], 3) for k in ["it_power_mean_w", "facility_power_peak_w", "energy_per_output_tok_j",\n'
        '       "cost_usd", "cost_per_mtok_usd", "ttft_p99_s", "tpot_p99_s", "slo_attainment"]})\n'
        'for f in dc.plot(res, OUT / "tent"):\n'
        '    if f.name in ("facility.png", "cost_breakdown.png"):\n'
        '        display(Image(filename=str(f)))'))
    c.append(nbf.v4.new_markdown_cell(
        "## A turbine trip under each power-manager policy\n\nOne of three units trips at t = 60 s for "
        "two minutes; the live supply falls from 90 to 60 kW. `none` shows the overshoot a site without a "
        "manager would suffer; the others must get under the limit within one control interval (5 s)."))
    c.append(nbf.v4.new_code_cell(
        'rows = []\n'
        'for pol in ["none", "cap_uniform", "cap_priority", "drain", "shed"]:\n'
        '    r = dc.run(dc.load(ROOT / "scenarios" / "tent_trip.toml",\n'
        '                       set=[f\'facility.manager.policy="{pol}"\', f"workload.duration_s={max(DUR, 150)}"]))\n'
        '    x = dc.summary(r)\n'
        '    rows.append({"policy": pol, "over_limit_s": x["power_limit_exceeded_s"], "completed": x["requests_completed"],\n'
        '                 "rejected": x["requests_rejected"], "p99_ttft_s": x["ttft_p99_s"], "p99_tpot_s": x["tpot_p99_s"],\n'
        '                 "mean_facility_kw": x["facility_power_mean_w"] / 1e3})\n'
        '    if pol == "cap_uniform":\n'
        '        for f in dc.plot(r, OUT / "trip"):\n'
        '            if f.name == "facility.png":\n'
        '                display(Image(filename=str(f)))\n'
        'trip = pd.DataFrame(rows)\n'
        'trip.round(3)'))
    c.append(nbf.v4.new_markdown_cell("## Oversubscription under a fixed supply"))
    c.append(nbf.v4.new_code_cell(
        'import subprocess\n'
        'counts = "48,80,112" if SMALL else "32,48,64,80,96,112,128"\n'
        'print(subprocess.run([sys.executable, str(ROOT / "scenarios" / "oversubscription.py"), "--counts", counts,\n'
        '                      "--duration", "30" if SMALL else "60", "--out", str(OUT / "oversubscription")],\n'
        '                     capture_output=True, text=True, check=True).stdout)\n'
        'display(Image(filename=str(OUT / "oversubscription" / "oversubscription.png")))'))
    c.append(nbf.v4.new_markdown_cell("## What the numbers say (computed from the runs above)"))
    c.append(nbf.v4.new_code_cell(
        'ok = trip[trip.policy != "none"]\n'
        'print(f"without a manager the tent draws over its supply for {trip.over_limit_s[0]:.0f} s of the 120 s trip;")\n'
        'print(f"with one, at most {ok.over_limit_s.max():.1f} s (control interval 5 s)")\n'
        'best = ok.sort_values("p99_ttft_s").iloc[0]\n'
        'shed = int(ok[ok.policy == "shed"].rejected.iloc[0])\n'
        'print(f"lowest p99 TTFT through the trip: {best.policy}; shed rejected {shed} requests")'))
    c.append(nbf.v4.new_markdown_cell(
        "## Conclusion\n\n"
        "At full sizes: a power manager turns a two-minute turbine trip from two minutes over the supply "
        "(enough to trip the rest of a real site) into a fraction of a second to a few seconds, each policy "
        "within its 5 s control interval. Capping clocks (`cap_uniform`, `cap_priority`) costs latency "
        "mostly in prefill, since memory-bound decode barely slows under a moderate cap; `drain` keeps fewer "
        "replicas at full power; `shed` protects the supply by turning requests away. Under a fixed supply, "
        "deploying somewhat more accelerators than fit at full power (about 80 against 69 here) gives the "
        "most tokens per second, because most of the fleet's time is memory-bound decode that a cap barely "
        "slows; beyond that, caps go so deep that throughput falls and even the lowest power limits cannot "
        "keep the draw under the supply. $/Mtoken is lowest near the count that fits at full power (64 here) "
        "and rises beyond it, since every extra accelerator is rented whether or not the supply lets it work."))
    return nb


if __name__ == "__main__":
    for name, fn in (("policy_comparison", policy_comparison), ("queueing_basics", queueing_basics),
                     ("tent_power", tent_power)):
        nb = fn()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbf.write(nb, HERE / f"{name}.ipynb")
        print("wrote", HERE / f"{name}.ipynb")
