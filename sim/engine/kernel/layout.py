"""The kernel's state, declared once: every table's columns (name, dtype, one-line meaning; a
column read from a pool's configuration names its attribute, `source`, and is filled from it
when the arrays are built), the value codes stored in them, and the named groups the kernel's
functions take.

A run's state is a few named groups of arrays (`Replicas`, `Requests`, `Run`, `Routing`,
`Handoff`, `Network`, `Clock`, gathered in `State`); within an array a column is named by a
constant declared here (sim/columns.py derives its index from the order of declaration). The
perf constants `PC` (a row per pool: its replicas share them) are the step formula's and are declared beside it
(sim/perf/roofline.py: `PERF`); the facility ledger's state `L` beside the ledger
(sim/facility/ledger.py: `LEDGER`). Units: seconds, watts, joules, tokens, KV blocks.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sim.columns import Table
from sim.facility.ledger import LEDGER
from sim.perf.roofline import PERF
from sim.registry import SCHEDULERS

# --- per-replica integer state S[r, column] (int64) ----------------------------------------------
REPLICA = Table("S", "int64", "per-replica integer state, S[r, column]")
ST = REPLICA.col("what the replica is doing: IDLE, STEP (a step in flight until F EEND) or WAKE (plans at F EEND)")
NDEC = REPLICA.col("sequences decoding")
CTXB = REPLICA.col("sum of the decoding sequences' RA: the batch's context at decode step d is CTXB + NDEC x d")
DIT = REPLICA.col("decode steps committed (a decoding sequence's context during step d is its RA + d)")
USED = REPLICA.col("KV blocks running requests hold (a shared block counted once)")
NRUN = REPLICA.col("requests running (prefilling or decoding)")
QH = REPLICA.col("queue row: the queue's head (a FIFO list linked by RQ NXT, or the skew heap's root)")
QT = REPLICA.col("queue row: the FIFO list's tail")
QLEN = REPLICA.col("queue row: requests waiting")
PH = REPLICA.col("head of the prefilling list (admission order, linked by RQ NXT)")
PT = REPLICA.col("tail of the prefilling list")
NPF = REPLICA.col("requests prefilling")
PLNDEC = REPLICA.col("decoding sequences in the step in flight (0: a prefill-only step)")
NCH = REPLICA.col("prefill chunks in the step in flight: CH[r, :NCH]")
NPFIRST = REPLICA.col("first tokens sampled by the last step, delivered at the next step's end (PFIRST[r, :NPFIRST])")
NPDONE = REPLICA.col("completions of the last step, delivered at the next step's end (PDONE[r, :NPDONE])")
QBLK = REPLICA.col("1: the last plan was stable (the queue's head cannot start until something finishes)")
FHLEN = REPLICA.col("entries in the finish heap FH[r]")
OUTREQ = REPLICA.col("requests routed here that have not left")
OUTTOK = REPLICA.col("their prompt plus output tokens")
BS = REPLICA.col("KV block size, tokens")
TOT = REPLICA.col("KV blocks the replica has")
MAXB = REPLICA.col("scheduler.max_batch_size (1 for fcfs and analytic service)")
MAXT = REPLICA.col("the most tokens in a step", source="scheduler.max_batched_tokens")
LAG = REPLICA.col("output_lag_steps: 1 when a step's tokens reach the client at the next step's end")
TP = REPLICA.col("accelerators per replica (ep, else tp)", source="accels")
RSV = REPLICA.col("1: each request's whole sequence reserved at admission, no growth, never preempted "
                  "(engine trtllm's GUARANTEED_NO_EVICT; set for static batching too)", source="reserves_kv")
POL = REPLICA.col("the scheduler's code (P_*); on a queue row, its discipline")
AH = REPLICA.col("queue row, sjf: head of the arrival-order list (QA APREV/ANEXT)")
AT = REPLICA.col("queue row, sjf: its tail")
NLRU = REPLICA.col("cached prefix blocks no one holds (the LRU list; free = TOT - USED - NLRU)")
LH = REPLICA.col("the LRU list's head (least recently used; linked through KC)")
LT = REPLICA.col("the LRU list's tail")
PB = REPLICA.col("full blocks per shared prefix (0: prefix caching off)")
PIDX = REPLICA.col("the replica's pool (row of SV)")
QROW = REPLICA.col("the row holding this replica's queue: itself, or 0 for central_queue's shared queue")
SEQ = REPLICA.col("when its pending event was scheduled (SimPy's insertion order, for the shared-queue loop)")
DOWN = REPLICA.col("1: failed (its node is down)")
DRN = REPLICA.col("1: drained (takes no new requests; off once idle)")
NSTP = REPLICA.col("steps started (the counter of the variability draws)")
JSEED = REPLICA.col("the variability draws' hash key (seed and replica, hashed)")
RGRP = REPLICA.col("the replica's routing group (the model it serves)")
RLOC = REPLICA.col("its index within the group (its leaf in the group's router trees)")
ROLE = REPLICA.col("ROLE_PREFILL on a prefill replica of a disaggregated model, else 0")
HOH = REPLICA.col("head of the hand-off list: requests prefilled, to go to a decode replica (linked by RQ NXT)")
HOT = REPLICA.col("tail of the hand-off list")
HITT = REPLICA.col("prompt tokens found in the prefix cache at admission")
ADMT = REPLICA.col("prompt tokens admitted (the hit rate's denominator)")
RNODE = REPLICA.col("the network node its pool sits on ([[network.nodes]]; 0 when none are declared)")
PUB = REPLICA.col("1: a finished request's history joins its group's cached prefix (multi-turn sessions)")
TCAP = REPLICA.col("KV tier: blocks it holds (0: no tier)")
TN = REPLICA.col("KV tier: prefix blocks in it (its LRU list, linked through KC)")
TLH = REPLICA.col("KV tier: its LRU list's head")
TLT = REPLICA.col("KV tier: its LRU list's tail")
TPEND = REPLICA.col("KV tier: blocks loaded for the next step (their time is added to it)")
THIT = REPLICA.col("KV tier: blocks loaded from it")
TOFF = REPLICA.col("KV tier: blocks written to it")
TSWP = REPLICA.col("KV tier: blocks of preempted requests swapped out to it")
REPLICA.seal(globals())
N_S = REPLICA.n

# --- per-replica float state F[r, column] (float64) ----------------------------------------------
REPLICA_F = Table("F", "float64", "per-replica float state, F[r, column]")
EEND = REPLICA_F.col("when the step in flight ends, or when a woken replica plans")
BUSY = REPLICA_F.col("seconds spent stepping")
ESTEP = REPLICA_F.col("energy of its steps, J")
EIDLE = REPLICA_F.col("energy drawn while not stepping, J")
IDLE_SINCE = REPLICA_F.col("when it fell idle")
DTF = REPLICA_F.col("duration of the step in flight")
NB = REPLICA_F.col("no completion can be delivered before this time (lets load-reading routers skip it)")
AGE = REPLICA_F.col("queue row, sjf: a request waiting this long goes first", source="scheduler.ageing_s")
WSTEP = REPLICA_F.col("draw during the step in flight, W (all its accelerators and hosts)")
CAP = REPLICA_F.col("power cap per accelerator, W (NaN: none)")
REST_W = REPLICA_F.col("draw when not stepping, W (idle accelerators and hosts; 0 when drained or down)")
HOST_W = REPLICA_F.col("what its hosts draw while it steps, W (at rest: their idle draw, in REST_W)")
DTU = REPLICA_F.col("the step in flight at full clock times VLO: no later step is shorter (the delivery bound)")
WA = REPLICA_F.col("variability: warm-up amplitude")
WT = REPLICA_F.col("variability: warm-up time constant, s")
JD = REPLICA_F.col("variability: jitter's mean share")
JP = REPLICA_F.col("variability: jitter's rate (share of steps)")
BORN = REPLICA_F.col("variability: when the replica started (the warm-up's origin)")
EW = REPLICA_F.col("variability: slow episodes' window, s (0: none)")
EQ = REPLICA_F.col("variability: share of windows that are slow")
EF = REPLICA_F.col("variability: a slow window's stretch")
VLO = REPLICA_F.col("variability: the smallest factor a step can get")
WEND = REPLICA_F.col("variability: when the warm-up term falls below 1e-6 (dropped after)")
EK = REPLICA_F.col("variability: the last step's episode window (a window's draw is made once)")
EM = REPLICA_F.col("variability: that window's factor")
WDEC = REPLICA_F.col("variability: the warm-up's share for a decode-only step")
NIC = REPLICA_F.col("KV transfers: the replica's network bytes/s (all its accelerators' ports)")
KVB = REPLICA_F.col("KV transfers: the model's KV bytes per token")
NLAT = REPLICA_F.col("KV transfers: the fabric's latency, s")
TOKS = REPLICA_F.col("seconds per token of work (least_time: hardware-aware routing)")
TSB = REPLICA_F.col("KV tier: seconds to load one block from it")
REPLICA_F.seal(globals())
N_F = REPLICA_F.n

# --- per-request state RQ[i, column] (int32) -----------------------------------------------------
REQUEST = Table("RQ", "int32", "per-request state, RQ[i, column] (RA[i], int64: tokens in KV when decoding "
                "began minus the replica's decode-step count then)")
NXT = REQUEST.col("next request in the list it is on (a FIFO queue, the prefilling or the hand-off list)")
DONE = REQUEST.col("tokens of the prompt (and regenerated output) in KV: computed or found in the prefix cache")
HELD = REQUEST.col("KV blocks a prefilling (or statically reserved) request holds")
GEN = REQUEST.col("output tokens generated so far (kept across preemptions)")
RST = REQUEST.col("where it is: R_WAITING, R_PREFILL, R_DECODE, R_GONE or R_TRANSIT")
NSH = REQUEST.col("its leading blocks held through the prefix cache (shared)")
GRP = REQUEST.col("its shared-prefix group (-1: none)")
OWN = REQUEST.col("the replica that admitted it last")
QG = REQUEST.col("its routing group (-1: no pool serves its model)")
SWP = REQUEST.col("KV blocks a preempted request swapped out to its replica's tier")
REQUEST.seal(globals())
N_RQ = REQUEST.n

# --- priority queues QA[i, column] (int64) -------------------------------------------------------
QUEUE = Table("QA", "int64", "request i in its queue's skew heap (priority, sjf), QA[i, column]")
QKEY = QUEUE.col("its key: (class priority << 32) | arrival index for priority; (tokens << 32) | index for sjf")
QLEFT = QUEUE.col("left child in the skew heap (-1: none)")
QRIGHT = QUEUE.col("right child")
QPAR = QUEUE.col("parent (-1: the root), so that any request can be deleted")
APREV = QUEUE.col("sjf: previous in arrival order (the ageing bound's list)")
ANEXT = QUEUE.col("sjf: next in arrival order")
QUEUE.seal(globals())
N_QA = QUEUE.n

# --- the prefix cache's entries KC.E[entry, column] (int64) ---------------------------------------
# One entry per cached block of any replica (sparse: O(blocks cached), not replicas x prefixes x
# blocks); found by its key r x KC.N[K_W] + (g x PB + j), block j of group g on replica r, through
# the open-addressing table KC.H (cache_index.py kc_find). Free entries are linked through KNEXT.
SLOT = Table("KC.E", "int64", "a cached prefix block (a replica's block j of group g), KC.E[entry, column]")
KREF = SLOT.col("holders; -2: in the KV tier, -3: being loaded from it; -1: a free entry")
KPREV = SLOT.col("previous entry in the LRU list it is on (its replica's HBM list or tier list)")
KNEXT = SLOT.col("next entry in that list (a free entry: the next free one)")
KKEY = SLOT.col("its key: replica x K_W + g x PB + j (-1: free)")
SLOT.seal(globals())
KC_N = Table("KC.N", "int64", "the prefix index's counts, KC.N[column]")
K_FREE = KC_N.col("head of the free entries' list (-1: none)")
K_NFREE = KC_N.col("free entries")
K_W = KC_N.col("slots per replica: prefix groups x PB (a key's stride)")
K_ROOM = KC_N.col("free entries a step may need (the most KV blocks of a replica): fewer, and the index grows")
KC_N.seal(globals())
N_SLOT = SLOT.n

# --- run-wide integers GI[column] (int64) and floats G[column] (float64) -------------------------
RUN_I = Table("GI", "int64", "run-wide integers, GI[column]")
TS_N = RUN_I.col("rows of the time series written")
PB_N = RUN_I.col("power-change rows written (for the facility's ledger)")
FAC = RUN_I.col("1: a [facility]: power changes are recorded in PW")
NAV = RUN_I.col("replicas available (not down, drained or commissioning)")
SHED = RUN_I.col("1: new requests are shed (the facility is over its supply)")
SHARED = RUN_I.col("1: one shared queue (central_queue: row 0's)")
PD = RUN_I.col("1: some model is served disaggregated (hand-offs)")
RUN_I.seal(globals())
N_GI = RUN_I.n
RUN_F = Table("G", "float64", "run-wide floats, G[column]")
BIN_W = RUN_F.col("width of an energy bin, s (doubles as the run grows)")
RUN_F.seal(globals())

# --- the event loop's position D[column] (int64) and Df[column] (float64) -------------------------
POS = Table("D", "int64", "where the event loop stopped (a barrier, a full buffer), D[column]")
D_NEXT = POS.col("the next arrival")
D_STARTED = POS.col("central_queue: 1 once the first arrival's timeout is scheduled")
D_DEADLINE = POS.col("the next request whose client deadline is pending")
D_ENTERED = POS.col("arrivals processed")
D_SEQ = POS.col("central_queue: events scheduled so far (SimPy's insertion count)")
D_ARR_SEQ = POS.col("central_queue: the next arrival's insertion count")
D_POPPED = POS.col("closed-loop clients: requests whose send time has been taken off the clients' heap")
POS.seal(globals())
POS_F = Table("Df", "float64", "the event loop's clocks, Df[column]")
DF_NOW = POS_F.col("the arrival process's clock")
DF_NEXT = POS_F.col("central_queue: the next arrival's time")
DF_BATCH = POS_F.col("closed-loop clients: the instant whose sends are being routed (-1: none)")
POS_F.seal(globals())

# --- rows the kernel writes ------------------------------------------------------------------------
SAMPLE = Table("tsi", "int32", "a time-series row (tsf: its time), tsi[row, column]")
TS_REPLICA = SAMPLE.col("the replica")
TS_BATCH = SAMPLE.col("sequences in the step (0: it fell idle)")
TS_KV = SAMPLE.col("KV blocks in use")
TS_QUEUE = SAMPLE.col("requests waiting in its queue")
TS_BUSY = SAMPLE.col("1: a step starts, 0: it falls idle")
SAMPLE.seal(globals())
POWER_ROW = Table("PW", "float64", "a power change for the ledger, PW[row, column]")
PW_T = POWER_ROW.col("from when")
PW_R = POWER_ROW.col("the replica")
PW_W = POWER_ROW.col("what it draws from then, W")
POWER_ROW.seal(globals())
CHUNK = Table("CH", "int64", "a prefill chunk of the step in flight, CH[r, k, column]")
CH_REQ = CHUNK.col("the request")
CH_TOK = CHUNK.col("its tokens in this step")
CHUNK.seal(globals())

TABLES = (REPLICA, REPLICA_F, REQUEST, QUEUE, SLOT, RUN_I, RUN_F, POS, POS_F, SAMPLE, POWER_ROW, CHUNK, PERF, LEDGER)

# --- value codes ----------------------------------------------------------------------------------
IDLE, STEP, WAKE = 0, 1, 2  # S ST: idle; a step in flight until F EEND; woken at F EEND
R_WAITING, R_PREFILL, R_DECODE, R_GONE, R_TRANSIT = 0, 1, 2, 3, 4  # RQ RST; TRANSIT: on its way to a
# replica (re-routed after a node failure, behind a slower front end, or its KV in transfer): in no queue
# why a request was rejected or failed (RSN): a kv_capacity rejection and a timeout are the defaults
RS_NONE, RS_POWER, RS_NO_CAPACITY, RS_NODE, RS_NO_POOL = 0, 1, 2, 3, 4
FIT_OK = -1  # route.arrival_check: nothing turns the request away
ROLE_PREFILL = 1  # S ROLE
H_ROUTE, H_DELIVER = 0, 1  # a hand-off event (value 2 x request + kind): route it / its KV arrives
P_CHUNKED, P_CONTINUOUS, P_STATIC, P_PRIORITY, P_SJF = (  # S POL: the schedulers' codes; fcfs is static with
    SCHEDULERS.code(n) for n in ("chunked", "continuous", "static", "priority", "sjf"))  # batch size 1
P_ANALYTIC = 99  # S POL: [pools.service] (analytic service times instead of a scheduler; not a policy)
TS_FULL = 2  # the loop stopped: grow the buffers (Run.tsf, tsi, PW) and call again
N_BINS = 65536  # energy bins (widened pairwise as the run grows)


# --- the groups the kernel's functions take ------------------------------------------------------
class PrefixIndex(NamedTuple):
    """Every replica's cached prefix blocks: entries, and an open-addressing hash table over
    their keys (linear probing, a power of two at least twice the entries)."""

    E: np.ndarray  # int64 [entries, N_SLOT]: SLOT's columns
    H: np.ndarray  # int64 [slots]: entry at each slot of the table (-1: empty)
    N: np.ndarray  # int64 [KC_N.n]: KC_N's columns


class Replicas(NamedTuple):
    """Per-replica state: a row per replica."""

    S: np.ndarray  # int64 [R, N_S]: REPLICA's columns
    F: np.ndarray  # float64 [R, N_F]: REPLICA_F's columns
    PC: np.ndarray  # float64 [pools, N_PC]: each pool's step-formula constants (PERF; a replica's: row S PIDX)
    CH: np.ndarray  # int64 [R, cap, 2]: the prefill chunks of the step in flight (CHUNK)
    FH: np.ndarray  # int64 [R, cap]: decoding sequences by when they finish, a min-heap of (step << 32) | request
    CNT: np.ndarray  # int64 [R, block size]: decoding sequences by RA mod block size (whose next token opens a block)
    PFIRST: np.ndarray  # int64 [R, cap]: lagged first tokens (S NPFIRST)
    PDONE: np.ndarray  # int64 [R, cap]: lagged completions (S NPDONE)
    KC: PrefixIndex  # the prefix cache's sparse index (SLOT)
    tmp: np.ndarray  # int64 [cap]: scratch of a plan


class Requests(NamedTuple):
    """Per-request inputs, state and results: a row per request, in arrival order."""

    arr: np.ndarray  # float64: arrival times
    prompt: np.ndarray  # int64: prompt tokens
    output: np.ndarray  # int64: output tokens the engine decodes (1 while on a prefill replica)
    RQ: np.ndarray  # int32 [n, N_RQ]: REQUEST's columns
    RA: np.ndarray  # int64: tokens in KV when decoding began minus the replica's decode steps then
    QA: np.ndarray  # int64 [n, N_QA]: QUEUE's columns (a single row when no queue is a heap)
    SV: np.ndarray  # float64 [pools, n]: analytic service times drawn for each pool
    FIRST: np.ndarray  # float64: first token delivered (-1: never; 0: sampled, delivered at the next step)
    START: np.ndarray  # float64: first scheduled
    FIN: np.ndarray  # float64: left (completed or failed)
    STATUS: np.ndarray  # int8: sim/engine/recorder.py's codes
    PRE: np.ndarray  # int32: preemptions
    RSN: np.ndarray  # int8: why it was rejected or failed (RS_*)
    REP: np.ndarray  # int32: the replica it was routed to (-1: none)
    # closed-loop clients (sim/engine/kernel/clients.py; all empty for open-loop arrivals)
    think: np.ndarray  # float64 [n]: the think time of the client after request j ends
    CLI: np.ndarray  # int32 [n]: the client that sent request j
    CK: np.ndarray  # float64 [clients]: the clients waiting to send, a min-heap: when
    CT: np.ndarray  # int64: ... ties (the request that ended; the first sends: client - clients)
    CV: np.ndarray  # int64: ... the client
    CN: np.ndarray  # int64 [1]: the heap's size


class Run(NamedTuple):
    """Run-wide counters and what the run records besides the request table."""

    bins: np.ndarray  # float64 [N_BINS]: energy per bin of width G BIN_W
    G: np.ndarray  # float64 [1]: RUN_F's columns
    GI: np.ndarray  # int64 [N_GI]: RUN_I's columns
    tsf: np.ndarray  # float64 [rows]: time-series times (grows)
    tsi: np.ndarray  # int32 [rows, 5]: time-series rows (SAMPLE; grows)
    PW: np.ndarray  # float64 [rows, 3]: power changes for the ledger (POWER_ROW; grows)
    ts_on: bool  # record the time series


class Routing(NamedTuple):
    """The routing groups (a group per model served, sim/engine/build.py) and the routers' state."""

    router: int  # router.policy's code (sim/registry.py; -1: a plug-in, on the per-step driver)
    FIT: np.ndarray  # int64 [groups]: the most tokens a replica of the group holds
    GR: np.ndarray  # int64 [groups, most]: each group's replicas (-1 pads)
    NG: np.ndarray  # int64 [groups]: how many
    RRG: np.ndarray  # int64 [groups]: round robin's count
    RT: np.ndarray  # int64 [groups]: each group's router (a decode group: router.decode_policy's)
    RTJ: np.ndarray  # int64 [groups]: its router while some replicas are unavailable (itself, or jsq)
    DEC: np.ndarray  # int64 [groups]: a prefill group's decode group (-1: none)
    TA: np.ndarray  # float64 [groups, 2P]: min-tree of when each replica must next be advanced
    TL: np.ndarray  # float64 [groups, 2P]: min-tree of the load the group's router minimises
    TC: np.ndarray  # float64 [2P]: closed-loop clients: min-tree over every replica of its next event
    pairs: np.ndarray  # int64 [n, 2]: power_of_two's pairs (indices within the group)
    sess: np.ndarray  # int64 [n]: session_affinity's dense session (-1: none)
    home: np.ndarray  # int64 [sessions]: each session's replica (-1: not yet)


class Handoff(NamedTuple):
    """Disaggregation: prefilled requests handed to decode replicas, and their events."""

    OUT0: np.ndarray  # int64 [n]: each request's output tokens (Requests.output holds 1 on a prefill replica)
    PREP: np.ndarray  # int64 [n]: its prefill replica (-1: none)
    XFER: np.ndarray  # float64 [n]: its KV transfer time
    HT: np.ndarray  # float64: the events' min-heap (sim/engine/kernel/heap.py): times
    HS: np.ndarray  # int64: ... insertion counts (ties)
    HI: np.ndarray  # int64: ... values: 2 x request + H_ROUTE or H_DELIVER
    HN: np.ndarray  # int64 [2]: the heap's size and the insertion count


class Network(NamedTuple):
    """The network between nodes ([network]): paths, links and the transfers on them."""

    PATH: np.ndarray  # int64 [nodes, nodes, hops]: the links on the path from node a to b (-1 ends)
    PLAT: np.ndarray  # float64 [nodes, nodes]: its latency, s
    LBW: np.ndarray  # float64 [links]: each link's bytes/s
    LQ: np.ndarray  # float64 [links, n]: a min-heap per link of the end times of the transfers on it
    LQI: np.ndarray  # int64 [links, n]: its (unused) ties and values
    LN: np.ndarray  # int64 [links, 2]: each heap's size (and count)


class Clock(NamedTuple):
    """The event loop's inputs and position."""

    D: np.ndarray  # int64 [7]: POS's columns
    Df: np.ndarray  # float64 [3]: POS_F's columns
    d0: float  # the fastest front end's delay: an arrival reaches the router d0 s after it arrives
    horizon: float  # nothing at or after it happens (inf: none)
    timeout: float  # client deadline after arrival (inf: none)
    stop: float  # closed-loop clients send nothing at or after this (workload.duration_s; inf: none)


class State(NamedTuple):
    """A run's whole kernel state."""

    rp: Replicas
    rq: Requests
    run: Run
    rt: Routing
    ho: Handoff
    net: Network
    clk: Clock


def new_run(bins: np.ndarray, G: np.ndarray, GI: np.ndarray, ts_cap: int, pb_cap: int, ts_on: bool) -> Run:
    """The Run group with buffers of at least 16 rows."""
    return Run(bins, G, GI, np.empty(max(ts_cap, 16), np.float64), np.empty((max(ts_cap, 16), SAMPLE.n), np.int32),
               np.empty((max(pb_cap, 16), POWER_ROW.n), np.float64), ts_on)
