#!/usr/bin/env python3
"""Queue-speed benchmark: runs a fastlane standalone (release build) and
measures, side by side with the limits they approach:

- the server's own HTTP ceiling (an unmatched route) and its durable
  submission rate (`POST /tasks/bench`), with latency and CPU per submission;
- the submission rate again once many jobs are queued;
- jobs per second through the batch route (1,000 jobs a request);
- firing lateness of 1,000 jobs due in the same second;
- RSS idle and with the queue full, and RSS holding 10,000 cron schedules
  and 100,000 delayed jobs;
- with --networked: the same ceiling and submission rate of a `fastlane api`
  on PostgreSQL (a fresh schema) and Redis, the production topology;
- with an engine (--engine unix:///…sock): the engine's own time for N
  containers (create, start, wait, logs, remove through its Docker API at
  the same parallelism) next to fastlane's drain time for N jobs; and the
  worker path of one job at a time with a free slot: from the job's
  creation to the container's (the engine's `Created`), and from the
  container's exit (its `State.FinishedAt`) to the result stored (the
  execution's `finishedAt`, set as the result is written).

Nothing runs during the submission rounds: the only host is blacklisted.
Prints a markdown table. Reproduce with scripts/bench.sh (see BENCHMARKS.md).
"""

import argparse
import concurrent.futures
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

BODY = '{"image": "busybox:latest", "command": "true"}'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A fastlane standalone (or `command`) in a fresh data directory."""

    def __init__(self, binary, hosts, extra_env=None, command="standalone"):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="fastlane-bench-")
        env = dict(os.environ)
        env.update(
            {
                "FASTLANE_DATA_DIR": os.path.join(self.dir, "data"),
                "DOCKER_HOSTS": json.dumps(hosts),
                "RUST_LOG": "warn",
            }
        )
        env.update(extra_env or {})
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        self.proc = subprocess.Popen(
            [binary, command, "-b", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/healthcheck", timeout=2)
                return
            except Exception:
                time.sleep(0.1)
        raise SystemExit(f"the server did not start: see {self.log.name}")

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read()
            return json.loads(text) if text else None

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def duration(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        return float("nan")
    value, unit = match.groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def wrk(url, seconds, connections, script=None):
    """Requests per second, p50 and p99 in ms, and the request count."""
    lua = None
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        lua.write(script)
        lua.close()
        command += ["-s", lua.name]
    out = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    if lua:
        os.unlink(lua.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = duration(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = duration(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    count = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rate": rate,
        "p50": p50,
        "p99": p99,
        "count": count,
        "errors": int(errors.group(1)) if errors else 0,
    }


SUBMIT = (
    'wrk.method = "POST"\n'
    'wrk.headers["Content-Type"] = "application/json"\n'
    f"wrk.body = '{BODY}'\n"
)


BATCH = 1000
SUBMIT_BATCH = (
    'wrk.method = "POST"\n'
    'wrk.headers["Content-Type"] = "application/json"\n'
    "wrk.body = '{\"jobs\": [" + ", ".join([BODY] * BATCH) + "]}'\n"
)


def batches(binary, seconds):
    """Jobs per second through the batch route (1,000 jobs a request)."""
    server = Server(binary, [{"match": "", "hosts": ["127.0.0.1:9"]}])
    try:
        server.request("POST", "/docker-executor/blacklist", {"host": "127.0.0.1:9"})
        time.sleep(1)
        result = wrk(server.url + "/tasks/bench/batch", seconds, 4, SUBMIT_BATCH)
        result["jobs"] = result["rate"] * BATCH
        return result
    finally:
        server.stop()


def big_task(binary, jobs, stopped):
    """Response times of what the admin UI reads, with one task of `jobs`
    jobs (nothing runs: the only host is blacklisted) of which `stopped`
    were stopped through the API (so they ended within the last hour), and
    another task of as many jobs delayed by a day (scheduled jobs): a
    task's page of jobs (first, last, filtered by status), the tasks page,
    /status and /status/activity (the overview), and the whole-task listing
    the UI no longer reads, each the median of five."""
    server = Server(binary, [{"match": "", "hosts": ["127.0.0.1:9"]}])
    try:
        server.request("POST", "/docker-executor/blacklist", {"host": "127.0.0.1:9"})
        job = json.loads(BODY)
        ids = []
        for _ in range(jobs // 1000):
            made = server.request("POST", "/tasks/big/batch", {"jobs": [job] * 1000})
            ids.extend(j["jobId"] for j in made["jobs"])
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: server.request("POST", f"/tasks/big/jobs/{i}/stop"), ids[:stopped]))
        # As many delayed jobs, due in a day: /status lists the soonest.
        later = dict(job, startIn="1d")
        for _ in range(jobs // 1000):
            server.request("POST", "/tasks/later/batch", {"jobs": [later] * 1000})
        first = server.request("GET", "/tasks/big/jobs")
        timed = {}
        for name, path in [
            ("task page 1", "/tasks/big/jobs?page=1"),
            (f"task page {first['pages']} (the last)", f"/tasks/big/jobs?page={first['pages']}"),
            ("task page 1, status=enqueued", "/tasks/big/jobs?page=1&status=enqueued"),
            ("task page 1, status=stopped", "/tasks/big/jobs?page=1&status=stopped"),
            ("task page 1, status=failed (none)", "/tasks/big/jobs?page=1&status=failed"),
            ("/tasks (the tasks page, with the last run)", "/tasks"),
            (f"/status ({jobs:,} scheduled jobs, the 100 soonest listed)", "/status"),
            ("/status/activity", "/status/activity"),
            ("GET /tasks/big (every job)", "/tasks/big"),
        ]:
            times = []
            for _ in range(5):
                start = time.perf_counter()
                server.request("GET", path)
                times.append((time.perf_counter() - start) * 1000)
            timed[name] = sorted(times)[2]
        return first["total"], timed
    finally:
        server.stop()


def held(binary, crons, delayed):
    """RSS of a standalone holding `crons` cron schedules (due once a year,
    so none fires) and `delayed` jobs due in a day, all through the batch
    route; nothing runs (the only host is blacklisted)."""
    server = Server(binary, [{"match": "", "hosts": ["127.0.0.1:9"]}])
    try:
        server.request("POST", "/docker-executor/blacklist", {"host": "127.0.0.1:9"})
        time.sleep(1)
        idle = server.rss_mb()
        job = json.loads(BODY)
        for task, body, count in [
            ("cron", dict(job, cron="0 0 1 1 *"), crons),
            ("later", dict(job, startIn="1d"), delayed),
        ]:
            for start in range(0, count, 1000):
                server.request("POST", f"/tasks/{task}/batch", {"jobs": [body] * min(1000, count - start)})
        time.sleep(2)
        status = server.request("GET", "/status")
        return {"idle": idle, "held": server.rss_mb(), "crons": crons, "delayed": delayed,
                "scheduled": status["jobs"]["scheduledCount"]}
    finally:
        server.stop()


def queued(server):
    status = server.request("GET", "/status")
    return status.get("queues", {}).get("jobs", {}).get("length") or sum(
        q.get("length", 0) for q in status.get("queues", {}).values() if isinstance(q, dict)
    )


def submissions(binary, seconds, connections, fill):
    server = Server(binary, [{"match": "", "hosts": ["127.0.0.1:9"]}])
    try:
        server.request("POST", "/docker-executor/blacklist", {"host": "127.0.0.1:9"})
        time.sleep(1)
        idle = server.rss_mb()
        ceiling = wrk(server.url + "/bench-unmatched", seconds, connections)
        cpu = server.cpu_seconds()
        first = wrk(server.url + "/tasks/bench", seconds, connections, SUBMIT)
        cpu = (server.cpu_seconds() - cpu) / max(first["count"], 1) * 1000
        total = first["count"]
        while total < fill:
            total += wrk(server.url + "/tasks/bench", seconds, connections, SUBMIT)["count"]
        later = wrk(server.url + "/tasks/bench", seconds, connections, SUBMIT)
        total += later["count"]
        return {
            "ceiling": ceiling,
            "first": first,
            "later": later,
            "queued_before_later": total - later["count"],
            "cpu_ms": cpu,
            "rss_idle": idle,
            "rss_full": server.rss_mb(),
            "queued": total,
        }
    finally:
        server.stop()


def fresh_schema(postgres_url):
    """A new, empty schema on `postgres_url`, as a STORE_URL."""
    schema = f"bench_{os.getpid()}_{int(time.time())}"
    subprocess.run(["psql", postgres_url, "-X", "-q", "-c", f"CREATE SCHEMA {schema}"], check=True)
    joiner = "&" if "?" in postgres_url else "?"
    return f"{postgres_url}{joiner}options=-csearch_path%3D{schema}"


def flush_redis(redis_url):
    """Empties the Redis database `redis_url` names (redis://host:port/db)."""
    match = re.fullmatch(r"redis://([^:/]+):(\d+)/(\d+)", redis_url)
    if not match:
        raise SystemExit(f"--redis-url must be redis://host:port/db, not {redis_url}")
    host, port, db = match.groups()
    subprocess.run(["redis-cli", "-h", host, "-p", port, "-n", db, "FLUSHDB"], check=True,
                   capture_output=True)


def networked(binary, seconds, connections, postgres_url, redis_url):
    """Ceiling and durable submissions of a `fastlane api` on PostgreSQL and
    Redis (no worker: nothing runs)."""
    flush_redis(redis_url)
    env = {"STORE_URL": fresh_schema(postgres_url), "REDIS_URL": redis_url}
    server = Server(binary, [{"match": "", "hosts": ["127.0.0.1:9"]}], env, command="api")
    try:
        time.sleep(1)
        ceiling = wrk(server.url + "/bench-unmatched", seconds, connections)
        cpu = server.cpu_seconds()
        first = wrk(server.url + "/tasks/bench", seconds, connections, SUBMIT)
        cpu = (server.cpu_seconds() - cpu) / max(first["count"], 1) * 1000
        return {"ceiling": ceiling, "first": first, "cpu_ms": cpu}
    finally:
        server.stop()
        flush_redis(redis_url)


def lateness(binary, jobs):
    server = Server(binary, [{"match": "", "hosts": ["127.0.0.1:9"]}])
    try:
        server.request("POST", "/docker-executor/blacklist", {"host": "127.0.0.1:9"})
        due = int(time.time()) + 4
        body = {"image": "busybox:latest", "command": "true", "startAt": due}
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            created = list(pool.map(lambda _: server.request("POST", "/tasks/late", body), range(jobs)))
        if time.time() >= due:
            raise SystemExit("submitting the jobs took longer than their delay")
        time.sleep(max(0, due - time.time()) + 3)

        def late(job):
            view = server.request("GET", f"/tasks/late/jobs/{job['jobId']}")
            runs = view["job"].get("executions") or []
            if not runs:
                return None
            at = runs[0]["createdAt"]
            stamp = time.mktime(time.strptime(at[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            fraction = float("0" + at[19:].rstrip("Z").split("+")[0]) if at[19:20] == "." else 0.0
            return (stamp + fraction - due) * 1000

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            values = list(pool.map(late, created))
        fired = sorted(v for v in values if v is not None)
        return {"fired": len(fired), "jobs": jobs, "first": pct(fired, 0), "p50": pct(fired, 50),
                "p99": pct(fired, 99)}
    finally:
        server.stop()


def pct(values, p):
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=300)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def engine_call(sock, method, path, body=None):
    conn = UnixConnection(sock)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if resp.status >= 400:
        raise RuntimeError(f"{method} {path}: {resp.status} {data[:200]!r}")
    return data


def engine_floor(sock, containers, parallel):
    """The engine's own time for `containers` echo containers, `parallel` at once."""

    def one(i):
        name = f"fastlane-bench-{os.getpid()}-{i}"
        created = json.loads(
            engine_call(sock, "POST", f"/containers/create?name={name}",
                        {"Image": "busybox:latest", "Cmd": ["echo", "hello"]})
        )
        cid = created["Id"]
        engine_call(sock, "POST", f"/containers/{cid}/start")
        engine_call(sock, "POST", f"/containers/{cid}/wait")
        engine_call(sock, "GET", f"/containers/{cid}/logs?stdout=1&stderr=1")
        engine_call(sock, "DELETE", f"/containers/{cid}?force=1")

    start = time.time()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(containers)))
    return time.time() - start


def status_reads(binary, hosts, calls, running):
    """`/status` asked `calls` times in a row while `running` `sleep` jobs run
    on `hosts` (unix:// sockets), and each host's own listing of its running
    fastlane containers, timed the same way: the call `/status` made per host
    before the Docker executor kept them from the event stream."""
    socks = [h.removeprefix("unix://") for h in hosts]
    server = Server(binary, [{"match": "", "hosts": hosts, "maxRunning": 100}])
    try:
        for _ in range(running):
            server.request("POST", "/tasks/status-bench", {"image": "busybox:latest", "command": "sleep 300"})
        deadline = time.time() + 120
        while time.time() < deadline:
            status = server.request("GET", "/status")
            if sum(h["running"] for h in status["hosts"]) >= running:
                break
            time.sleep(0.5)
        fastlane = []
        for _ in range(calls):
            began = time.perf_counter()
            server.request("GET", "/status")
            fastlane.append((time.perf_counter() - began) * 1000)
        query = urllib.parse.quote(json.dumps({"label": ["fastlane.execution"], "status": ["running"]}))
        own = []
        for _ in range(calls):
            slowest = 0.0
            for sock in socks:
                began = time.perf_counter()
                engine_call(sock, "GET", f"/containers/json?filters={query}")
                slowest = max(slowest, (time.perf_counter() - began) * 1000)
            own.append(slowest)
    finally:
        server.stop()
        label = urllib.parse.quote(json.dumps({"label": ["fastlane.task=status-bench"]}))
        for sock in socks:
            for c in json.loads(engine_call(sock, "GET", f"/containers/json?all=1&filters={label}")):
                try:
                    engine_call(sock, "DELETE", f"/containers/{c['Id']}?force=1")
                except RuntimeError:
                    pass  # gone already
    return sorted(fastlane), sorted(own)


def drain(binary, engine, jobs, parallel):
    server = Server(binary, [{"match": "", "hosts": [engine], "maxRunning": parallel}])
    try:
        body = {"image": "busybox:latest", "command": "echo hello"}
        start = time.time()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            created = list(pool.map(lambda _: server.request("POST", "/tasks/drain", body), range(jobs)))
        # Waited for in the order they were submitted, one request at a time
        # (asking after every pending job each pass took a core from the
        # engine being measured).
        pending = [c["jobId"] for c in created]
        while pending and time.time() - start < 1800:
            view = server.request("GET", f"/tasks/drain/jobs/{pending[0]}")
            runs = view["job"].get("executions") or []
            if runs and runs[0].get("status") in ("done", "failed", "timedout", "expired", "stopped"):
                pending.pop(0)
            else:
                time.sleep(0.05)
        return time.time() - start, len(pending)
    finally:
        server.stop()


def engine_time(text):
    """An engine's RFC 3339 time (nanoseconds, any offset) in seconds since the epoch."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        raise ValueError(f"not a time: {text!r}")
    whole, frac, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    seconds = datetime.datetime.fromisoformat(whole + zone).timestamp()
    return seconds + (float("0" + frac) if frac else 0.0)


def engine_lags(sock, containers):
    """The engine's own lags, in milliseconds (sorted lists), one container
    at a time: from the create request sent to the container's `Created`,
    and from its exit (`State.FinishedAt`) to its Docker API `wait`
    returning."""
    to_create, to_wait = [], []
    for i in range(containers):
        name = f"fastlane-bench-lag-{os.getpid()}-{i}"
        sent = time.time()
        cid = json.loads(engine_call(sock, "POST", f"/containers/create?name={name}",
                                     {"Image": "busybox:latest", "Cmd": ["echo", "hello"]}))["Id"]
        engine_call(sock, "POST", f"/containers/{cid}/start")
        engine_call(sock, "POST", f"/containers/{cid}/wait")
        returned = time.time()
        info = json.loads(engine_call(sock, "GET", f"/containers/{cid}/json"))
        to_create.append(1000 * (engine_time(info["Created"]) - sent))
        to_wait.append(1000 * (returned - engine_time(info["State"]["FinishedAt"])))
        engine_call(sock, "DELETE", f"/containers/{cid}?force=1")
    return sorted(to_create), sorted(to_wait)


def worker_path(binary, engine, jobs):
    """One job at a time on a free slot: job created → container created, and
    container exited → result stored, in milliseconds (sorted lists)."""
    sock = engine.removeprefix("unix://")
    server = Server(binary, [{"match": "", "hosts": [engine], "maxRunning": 10}])
    to_create, to_store = [], []
    try:
        body = {"image": "busybox:latest", "command": "echo hello"}
        for _ in range(jobs):
            created = server.request("POST", "/tasks/path", body)
            execution_url = created["executionUrl"].replace(server.url, "")
            deadline = time.time() + 60
            while time.time() < deadline:
                view = server.request("GET", execution_url)["execution"]
                if view.get("finishedAt"):
                    break
                time.sleep(0.02)
            # Renamed defunct-… once its result is stored, a moment later.
            name = f"fastlane-job-{created['executionId']}"
            try:
                container = json.loads(engine_call(sock, "GET", f"/containers/{name}/json"))
            except RuntimeError:
                container = json.loads(engine_call(sock, "GET", f"/containers/defunct-{name}/json"))
            to_create.append(1000 * (engine_time(container["Created"]) - engine_time(view["createdAt"])))
            to_store.append(
                1000 * (engine_time(view["finishedAt"]) - engine_time(container["State"]["FinishedAt"]))
            )
        return sorted(to_create), sorted(to_store)
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/release/fastlane")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--fill", type=int, default=25000, help="jobs queued before the later round")
    parser.add_argument("--late-jobs", type=int, default=1000)
    parser.add_argument("--engine", help="unix:///path.sock of a Docker API engine for the drain rows")
    parser.add_argument("--drain-jobs", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=10)
    parser.add_argument("--path-jobs", type=int, default=30, help="jobs for the worker-path rows")
    parser.add_argument("--only-path", action="store_true", help="measure only the worker-path rows")
    parser.add_argument("--only-status", action="store_true",
                        help="measure only `/status` against the hosts' own listings (--status-hosts)")
    parser.add_argument("--status-hosts", default="unix:///run/fastlane/podman.sock,unix:///run/fastlane/docker.sock")
    parser.add_argument("--status-calls", type=int, default=200)
    parser.add_argument("--status-running", type=int, default=20)
    parser.add_argument("--only-drain", action="store_true", help="measure only the drain row")
    parser.add_argument("--only-late", action="store_true", help="measure only the firing lateness")
    parser.add_argument("--only-batch", action="store_true", help="measure only the batch route")
    parser.add_argument("--only-held", action="store_true",
                        help="measure only the RSS holding --held-crons cron schedules and --held-delayed delayed jobs")
    parser.add_argument("--held-crons", type=int, default=10000)
    parser.add_argument("--held-delayed", type=int, default=100000)
    parser.add_argument("--only-ui", action="store_true",
                        help="measure only what the admin UI reads, on a task of --ui-jobs jobs")
    parser.add_argument("--ui-jobs", type=int, default=100000)
    parser.add_argument("--ui-stopped", type=int, default=20000,
                        help="with --only-ui: how many of the jobs to stop (they end within the hour)")
    parser.add_argument("--networked", action="store_true",
                        help="also measure a `fastlane api` on PostgreSQL and Redis")
    parser.add_argument("--only-networked", action="store_true", help="measure only the networked rows")
    parser.add_argument("--postgres-url",
                        default=os.environ.get("FASTLANE_TEST_POSTGRES_URL",
                                               "postgres://fastlane:fastlane@127.0.0.1:5433/fastlane"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6390/9",
                        help="a Redis database the benchmark may empty")
    args = parser.parse_args()
    if args.only_networked:
        print_rows(args, networked_rows(args))
        return 0
    if args.only_batch:
        b = batches(args.binary, args.seconds)
        print(f"batch route, {BATCH:,} jobs a request: {b['jobs']:,.0f} jobs/s, p50 {b['p50']:.0f} ms, "
              f"p99 {b['p99']:.0f} ms ({b['errors']} non-2xx)")
        return 0
    if args.only_held:
        print_rows(args, [held_row(args)])
        return 0
    if args.only_ui:
        total, timed = big_task(args.binary, args.ui_jobs, args.ui_stopped)
        print(f"one task of {total:,} jobs, {args.ui_stopped:,} of them stopped, median of five:")
        for name, ms in timed.items():
            print(f"  {name}: {ms:.0f} ms")
        return 0
    if args.only_late:
        late = lateness(args.binary, args.late_jobs)
        print(f"{late['jobs']:,} jobs due in the same second: firing lateness first {late['first']:.0f} ms, "
              f"p50 {late['p50']:.0f} ms, p99 {late['p99']:.0f} ms ({late['fired']} fired)")
        return 0
    if args.only_drain:
        if not args.engine:
            raise SystemExit("--only-drain needs --engine")
        print_rows(args, [drain_row(args)])
        return 0
    if args.only_status:
        hosts = args.status_hosts.split(",")
        fl, own = status_reads(args.binary, hosts, args.status_calls, args.status_running)
        print(f"`GET /status`, {len(hosts)} hosts, {args.status_running} jobs running, {args.status_calls} calls "
              f"one after another: p50 {pct(fl, 50):.1f} ms, p99 {pct(fl, 99):.1f} ms")
        print(f"the hosts' own listing of their running fastlane containers (the slowest host each time): "
              f"p50 {pct(own, 50):.1f} ms, p99 {pct(own, 99):.1f} ms")
        return 0
    if args.only_path:
        if not args.engine:
            raise SystemExit("--only-path needs --engine")
        to_create, to_store = worker_path(args.binary, args.engine, args.path_jobs)
        print(f"job created → container created: p50 {pct(to_create, 50):.1f} ms, "
              f"p99 {pct(to_create, 99):.1f} ms; all {[round(v, 1) for v in to_create]}")
        print(f"container exited → result stored: p50 {pct(to_store, 50):.1f} ms, "
              f"p99 {pct(to_store, 99):.1f} ms; all {[round(v, 1) for v in to_store]}")
        own_create, own_wait = engine_lags(args.engine.removeprefix("unix://"), args.path_jobs)
        print(f"the engine's own create request → created: p50 {pct(own_create, 50):.1f} ms, "
              f"p99 {pct(own_create, 99):.1f} ms")
        print(f"the engine's own exit → wait returned: p50 {pct(own_wait, 50):.1f} ms, "
              f"p99 {pct(own_wait, 99):.1f} ms")
        return 0

    s = submissions(args.binary, args.seconds, args.connections, args.fill)
    batch = batches(args.binary, args.seconds)
    late = lateness(args.binary, args.late_jobs)
    kept = held_row(args)
    c, f, l = s["ceiling"], s["first"], s["later"]
    rows = [
        ("HTTP ceiling (unmatched route)", f"{c['rate']:,.0f}/s, p50 {c['p50']:.1f} ms, p99 {c['p99']:.1f} ms", "—"),
        ("`POST /tasks/bench` durable submissions",
         f"{f['rate']:,.0f}/s, p50 {f['p50']:.1f} ms, p99 {f['p99']:.1f} ms ({f['errors']} non-2xx)",
         "≥ 10,000/s, p99 ≤ 20 ms"),
        ("submissions as a share of the ceiling", f"**{100 * f['rate'] / c['rate']:.1f} %**", "≥ 30 %"),
        (f"rate after {s['queued_before_later']:,} jobs are queued",
         f"{l['rate']:,.0f}/s ({100 * (l['rate'] / f['rate'] - 1):+.0f} %), p99 {l['p99']:.1f} ms",
         "flat within 10 %"),
        ("CPU per submission", f"{s['cpu_ms']:.3f} ms", "≤ 0.1 ms"),
        (f"`POST /tasks/bench/batch`, {BATCH:,} jobs a request (4 connections)",
         f"{batch['jobs']:,.0f} jobs/s, p50 {batch['p50']:.0f} ms, p99 {batch['p99']:.0f} ms "
         f"({batch['errors']} non-2xx)", "≥ 100,000 jobs/s"),
        (f"{late['jobs']:,} jobs due in the same second: firing lateness",
         f"p50 {late['p50']:.0f} ms, p99 {late['p99']:.0f} ms ({late['fired']} fired)", "p99 ≤ 100 ms"),
        ("RSS", f"{s['rss_idle']:.0f} MB idle, {s['rss_full']:.0f} MB with {s['queued']:,} queued",
         "≤ 30 MB idle"),
        kept,
    ]
    if args.engine:
        sock = args.engine.removeprefix("unix://")
        rows.append(drain_row(args))
        to_create, to_store = worker_path(args.binary, args.engine, args.path_jobs)
        own_create, own_wait = engine_lags(sock, args.path_jobs)
        rows.append((f"job created → its container created ({args.path_jobs} jobs, one at a time)",
                     f"p50 {pct(to_create, 50):.1f} ms, p99 {pct(to_create, 99):.1f} ms; the engine's own "
                     f"create request → created: p50 {pct(own_create, 50):.1f} ms",
                     "p50 ≤ 5 ms"))
        rows.append(("container exited → result stored",
                     f"p50 {pct(to_store, 50):.1f} ms, p99 {pct(to_store, 99):.1f} ms; the engine's own "
                     f"exit → `wait` returned: p50 {pct(own_wait, 50):.1f} ms, p99 {pct(own_wait, 99):.1f} ms",
                     "p50 ≤ 50 ms"))
    if args.networked:
        rows += networked_rows(args)
    print_rows(args, rows)


def held_row(args):
    h = held(args.binary, args.held_crons, args.held_delayed)
    return (f"RSS holding {h['crons']:,} cron schedules and {h['delayed']:,} delayed jobs",
            f"**{h['held']:.0f} MB** ({h['idle']:.0f} MB before them; `/status` counts {h['scheduled']:,} scheduled)",
            "≤ 200 MB")


def drain_row(args):
    floor = engine_floor(args.engine.removeprefix("unix://"), args.drain_jobs, args.parallel)
    took, left = drain(args.binary, args.engine, args.drain_jobs, args.parallel)
    return (f"{args.drain_jobs} `echo` jobs drained ({args.parallel} at once)",
            f"{took:.1f} s = **{took / floor:.2f}×** the engine's own {floor:.1f} s"
            + (f" ({left} unfinished)" if left else ""), "≤ 1.10×")


def networked_rows(args):
    n = networked(args.binary, args.seconds, args.connections, args.postgres_url, args.redis_url)
    c, f = n["ceiling"], n["first"]
    return [
        ("`fastlane api` on PostgreSQL + Redis: HTTP ceiling",
         f"{c['rate']:,.0f}/s, p50 {c['p50']:.1f} ms, p99 {c['p99']:.1f} ms", "—"),
        ("`fastlane api` on PostgreSQL + Redis: durable submissions",
         f"**{f['rate']:,.0f}/s** ({100 * f['rate'] / c['rate']:.1f} % of its ceiling), "
         f"p50 {f['p50']:.1f} ms, p99 {f['p99']:.1f} ms, {n['cpu_ms']:.3f} ms CPU in fastlane each "
         f"({f['errors']} non-2xx)", "≥ 5,000/s"),
    ]


def print_rows(args, rows):
    print(f"fastlane {args.binary}, wrk -t2 -c{args.connections} -d{args.seconds}s, "
          f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores\n")
    print("| | measured | goal |\n|---|---|---|")
    for name, value, goal in rows:
        print(f"| {name} | {value} | {goal} |")


if __name__ == "__main__":
    sys.exit(main())
