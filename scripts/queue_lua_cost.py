"""Redis-side cost of the Redis queue's scripts, per job: batches of 16 enqueues, then takes of 16 and acks of
16, against a steady backlog, as measured by Redis itself (INFO commandstats: the EVALSHA time, which excludes
the network and the client). Two script directories are run interleaved, chunk by chunk, so that both see the
same machine; use it to compare a change to the scripts with the committed ones.

Usage: python3 scripts/queue_lua_cost.py REDIS_URL LUA_DIR_A [LUA_DIR_B] [ROUNDS]
(LUA_DIR is a copy of rei-adapters/src/redis/lua; RESETSTAT is sent to that Redis: use a throwaway server.)
"""

import sys
import time

from redis import Redis

CHUNK = 1600  # jobs per round and per directory
BATCH = 16


class Scripts:
    def __init__(self, redis: Redis, lua_dir: str) -> None:
        def read(name: str) -> str:
            with open(f"{lua_dir}/{name}") as f:
                return f.read()

        self.lua_dir = lua_dir
        self.enqueue = redis.register_script(read("enqueue_many.lua"))
        self.ack_take = redis.register_script(
            read("queue_prelude.lua") + "\n" + read("take_many.lua") + read("ack_many.lua") + read("ack_dequeue_many.lua")
        )
        ns = f"rei-lua-cost-{time.time_ns()}"
        sets = [f"{ns}:ready:{r}" for r in range(4)] + [f"{ns}:waiting:{r}" for r in range(4)]
        rest = [f"{ns}:{k}" for k in ("in_flight", "tickets", "leases", "lease_seq", "dead", "dead_info", "dead_seq")]
        self.keys = sets + rest
        self.seq = 0
        self.jobs = 0
        self.us = {"enqueue": 0, "take": 0, "ack": 0}


def evalsha_us(redis: Redis) -> int:
    return redis.info("commandstats").get("cmdstat_evalsha", {}).get("usec", 0)


def enqueue(redis: Redis, s: Scripts, now: int) -> None:
    redis.config_resetstat()
    for _ in range(CHUNK // BATCH):
        args = [10_000_000]
        for _ in range(BATCH):
            s.seq += 1
            rank = 1 + s.seq % 3
            # job, the KEYS index of its ready set, its score there, its ticket text
            args += ["%032x" % s.seq, 2 + rank, now, f"{rank} {now} {now}"]
        s.enqueue(keys=[s.keys[9]] + s.keys[0:8], args=args)
    s.us["enqueue"] += evalsha_us(redis)


def drain(redis: Redis, s: Scripts, now: int, jobs: int) -> None:
    done = 0
    while done < jobs:
        redis.config_resetstat()
        _, taken = s.ack_take(keys=s.keys[0:12], args=[0, now, now + 60_000, "w", 0, 12345, 64, BATCH])
        s.us["take"] += evalsha_us(redis)
        held = [(taken[i], taken[i + 2]) for i in range(0, len(taken), 3)]
        args = [len(held)]
        for job, lease in held:
            args += [job, lease]
        args += [now, now + 60_000, "w", 0, 12345, 64, 0]
        redis.config_resetstat()
        lost, _ = s.ack_take(keys=s.keys[0:12], args=args)
        s.us["ack"] += evalsha_us(redis)
        if lost:
            raise SystemExit(f"{s.lua_dir}: leases lost at ack: {lost}")
        done += len(held)


def main() -> None:
    url, dirs = sys.argv[1], [a for a in sys.argv[2:] if not a.isdigit()]
    rounds = int(next((a for a in sys.argv[2:] if a.isdigit()), "20"))
    redis = Redis.from_url(url)
    now = int(time.time() * 1000)
    variants = [Scripts(redis, d) for d in dirs]
    for s in variants:  # a backlog, so that takes read from deep sets
        for _ in range(8):
            enqueue(redis, s, now)
        s.us["enqueue"] = 0
    for _ in range(rounds):
        for s in variants:
            enqueue(redis, s, now)
            drain(redis, s, now, CHUNK)
            s.jobs += CHUNK
    for s in variants:
        per = {k: v / s.jobs for k, v in s.us.items()}
        print(
            f"{s.lua_dir}: enqueue {per['enqueue']:.2f}  take {per['take']:.2f}  ack {per['ack']:.2f}  "
            f"total {sum(per.values()):.2f} us/job"
        )
        redis.delete(*s.keys)


if __name__ == "__main__":
    main()
