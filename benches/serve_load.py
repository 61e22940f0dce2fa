#!/usr/bin/env python3
"""Load client for `trun serve` (see serve_load.sh): N runs of a workflow
created by C concurrent clients, then checks that none was lost, none ran
twice and every one finished, and prints create latency and throughput.
Standard library only."""

import json
import sys
import threading
import time
import urllib.request
import uuid


def request(base, method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, json.loads(r.read())


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main():
    base, total, clients, workflow = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    latencies, ids, errors = [], [], []
    lock = threading.Lock()
    per_client = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]

    def client(n):
        for _ in range(n):
            t0 = time.monotonic()
            try:
                status, body = request(base, "POST", "/api/v1/runs", {"workflow": workflow},
                                       {"Idempotency-Key": str(uuid.uuid4())})
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(repr(e))
                continue
            dt = time.monotonic() - t0
            with lock:
                latencies.append(dt)
                if status == 201:
                    ids.append(body["id"])
                else:
                    errors.append(f"status {status}")

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in per_client]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    created_in = time.monotonic() - started

    def listing():
        runs, page = [], 1
        while True:
            _, body = request(base, "GET", f"/api/v1/runs?per_page=100&page={page}")
            runs += body["runs"]
            if page * 100 >= body["total"]:
                return runs
            page += 1

    deadline = time.monotonic() + 3600
    while True:
        runs = listing()
        done = [r for r in runs if r["status"] not in ("queued", "running")]
        if len(done) == len(runs) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    finished_in = time.monotonic() - started

    listed = {r["id"]: r for r in runs}
    lost = [i for i in ids if i not in listed]
    store_ids = [r["store_run_id"] for r in runs if r["store_run_id"] is not None]
    twice = len(store_ids) - len(set(store_ids))
    not_success = [r for r in runs if r["status"] != "success"]
    # Every run's record: three jobs, each once.
    job_runs = 0
    for r in runs:
        _, detail = request(base, "GET", f"/api/v1/runs/{r['id']}")
        job_runs += len(detail["run"]["jobs"]) if detail["run"] else 0

    print(f"created         {len(ids)} of {total} ({len(errors)} errors) by {clients} clients in {created_in:.1f}s")
    print(f"create latency  p50 {percentile(latencies, 50) * 1000:.1f} ms   p99 {percentile(latencies, 99) * 1000:.1f} ms   max {max(latencies) * 1000:.1f} ms")
    print(f"finished        {len(runs) - len(not_success)} success of {len(runs)} listed in {finished_in:.1f}s: {len(runs) / finished_in:.1f} runs/s")
    print(f"lost            {len(lost)}")
    print(f"run twice       {twice} (distinct store runs {len(set(store_ids))}, job records {job_runs})")
    ok = not errors and not lost and twice == 0 and not not_success and len(runs) == total and job_runs == 3 * total
    print("RESULT          " + ("ok" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
