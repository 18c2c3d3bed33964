#!/usr/bin/env python3
"""Fair shares under a burst: 10 tenants (tasks) share one pool of slots;
one sends 90 % of the jobs. Measured three ways in one run, each on a fresh
standalone server with the same submissions:

- `unloaded`: the small tenants alone (their wait without the burst);
- `fair`: everyone, `ADMISSION_ORDER=fair`;
- `fifo`: everyone, `ADMISSION_ORDER=fifo` (first come first served).

The big tenant's burst is submitted first, then the small tenants' jobs.
Reported: the small tenants' p50/p95 wait (created → started), censored at
the window (a job not started by then counts as waiting the whole window),
and the Jain fairness index of the running slots across the 10 tenants,
sampled from `/status` while every tenant has work waiting.

Runs use the example local executor (`fastlane-local-plugin`, processes on
this machine) with a pool of `--slots`, so that 20,000 jobs take minutes,
not hours, and the engine's own pace does not hide the line's order.

    cargo build --release -p fastlane-server --bins && cargo build --release -p fastlane-local-plugin --lib
    python3 scripts/bench_fairness.py --binary target/release/fastlane \
        --plugin target/release/libfastlane_local_plugin.so
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Server, pct  # noqa: E402


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def submit(server, task, count, command, batch=1000):
    created = []
    left = count
    while left:
        n = min(batch, left)
        body = {"jobs": [{"image": "none", "command": command}] * n}
        created += server.request("POST", f"/tasks/{task}/batch", body)["jobs"]
        left -= n
    return created


def jain(values):
    total = sum(values)
    squares = sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares else float("nan")


def run(args, mode, tenants, big_jobs, small_jobs):
    workdir = tempfile.mkdtemp(prefix="fastlane-fair-")
    env = {
        "PLUGINS": json.dumps([{"path": args.plugin,
                                "config": {"workdir": workdir, "maxRunning": args.slots}}]),
        "EXECUTORS": json.dumps([{"match": "", "executor": "local"}]),
        "ADMISSION_ORDER": "fifo" if mode == "fifo" else "fair",
        "WORKER_CONCURRENCY": str(args.slots * 2),
        "EXECUTION_LOG_MAX_BYTES": "1024",
    }
    server = Server(args.binary, [{"match": "", "hosts": ["127.0.0.1:9"]}], env)
    try:
        big, small = tenants[0], tenants[1:]
        start = time.time()
        if mode != "unloaded":
            submit(server, big, big_jobs, args.command)
        created = {t: submit(server, t, small_jobs, args.command) for t in small}
        submitted = time.time()
        samples, stop = [], threading.Event()

        def sample():
            while not stop.is_set():
                limits = server.request("GET", "/status")["limits"]
                by_gate = {l["gate"]: l for l in limits}
                rows = [by_gate.get(f"task:{t}", {"running": 0, "waiting": 0}) for t in tenants]
                samples.append(rows)
                stop.wait(0.25)

        sampler = threading.Thread(target=sample)
        sampler.start()
        deadline = submitted + args.window
        small_ids = [(t, c) for t in small for c in created[t]]

        def started(item):
            task, job = item
            view = server.request("GET", f"/tasks/{task}/jobs/{job['jobId']}")
            run_ = (view["job"].get("executions") or [{}])[0]
            return parse_time(run_["createdAt"]) if run_.get("createdAt") else None, (
                parse_time(run_["startedAt"]) if run_.get("startedAt") else None)

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            while True:
                time.sleep(2)
                times = list(pool.map(started, small_ids))
                if all(s is not None for _, s in times) or time.time() > deadline:
                    break
        stop.set()
        sampler.join()
        end = min(time.time(), deadline)
        waits = sorted((s if s is not None else end) - c for c, s in times)
        not_started = sum(1 for _, s in times if s is None)
        backlogged = [s for s in samples if mode != "unloaded" and all(r["waiting"] > 0 for r in s)]
        fairness = [jain([r["running"] for r in s]) for s in backlogged
                    if sum(r["running"] for r in s) > 0]
        return {
            "mode": mode,
            "p50": pct(waits, 50),
            "p95": pct(waits, 95),
            "not_started": not_started,
            "small": len(small_ids),
            "jain": sum(fairness) / len(fairness) if fairness else float("nan"),
            "samples": len(fairness),
            "submit_s": submitted - start,
        }
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="target/release/fastlane")
    parser.add_argument("--plugin", default="target/release/libfastlane_local_plugin.so")
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--big-share", type=float, default=0.9)
    parser.add_argument("--slots", type=int, default=20)
    parser.add_argument("--command", default="sleep 0.2")
    parser.add_argument("--window", type=float, default=90, help="seconds a run may take")
    args = parser.parse_args()
    args.plugin = os.path.abspath(args.plugin)
    tenants = [f"tenant-{i}" for i in range(args.tenants)]
    big_jobs = int(args.jobs * args.big_share)
    small_jobs = (args.jobs - big_jobs) // (args.tenants - 1)
    results = [run(args, mode, tenants, big_jobs, small_jobs) for mode in ("unloaded", "fair", "fifo")]
    base = results[0]["p95"]
    print(f"{args.tenants} tenants, {big_jobs:,} jobs from one and {small_jobs:,} from each other, "
          f"a pool of {args.slots} slots, `{args.command}`, window {args.window:.0f} s, "
          f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores\n")
    print("| order | small tenants' wait p50 / p95 | p95 ÷ unloaded p95 | not started in the window "
          "| Jain index of running slots (all backlogged) |")
    print("|---|---|---|---|---|")
    for r in results:
        ratio = "—" if r["mode"] == "unloaded" else f"{r['p95'] / base:.2f}×"
        jain_text = "—" if r["mode"] == "unloaded" else f"{r['jain']:.3f} ({r['samples']} samples)"
        print(f"| {r['mode']} | {r['p50']:.1f} s / {r['p95']:.1f} s | {ratio} | "
              f"{r['not_started']} of {r['small']:,} | {jain_text} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
