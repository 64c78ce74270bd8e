"""The RQ baseline of `rei bench queue`: JOBS no-op jobs spread over three queues, drained by one SimpleWorker
in burst mode on the same Redis. Prints one JSON line: {"jobs": n, "seconds": s, "jobs_per_sec": x}.

Usage: python3 scripts/rq_bench.py REDIS_URL JOBS
"""

import json
import sys
import time

from redis import Redis
from rq import Queue, SimpleWorker


def main() -> None:
    url, jobs = sys.argv[1], int(sys.argv[2])
    redis = Redis.from_url(url)
    queues = [Queue(name, connection=redis) for name in ("rei-bench-high", "rei-bench-default", "rei-bench-low")]
    for q in queues:
        q.empty()
    started = time.perf_counter()
    for i in range(jobs):
        # A builtin as the job: importable by the worker, and it does nothing worth measuring.
        queues[i % 3].enqueue("builtins.abs", i, result_ttl=0)
    worker = SimpleWorker(queues, connection=redis)
    worker.work(burst=True, logging_level="ERROR")
    seconds = time.perf_counter() - started
    print(json.dumps({"jobs": jobs, "seconds": round(seconds, 3), "jobs_per_sec": int(jobs / seconds)}))


if __name__ == "__main__":
    main()
