"""Sum ``sitecustomize.py``'s samples over the window from a traced flight's teleport to its
complete view (bench/realtime_trace.py ``--json``; or ``--from S --to S`` seconds after the
jump): CPU seconds per process and thread, then per function, self (innermost frame) and
inclusive (anywhere on the stack).

    python bench/cpu_sampler/report.py TRACE.json SAMPLE_DIR [--from 0 --to 2] [--top 40]
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path


def window(trace: list, start: float | None, end: float | None) -> tuple[float, float]:
    """Wall-clock (time.time) seconds of the window, from the trace's clock event."""
    clock = next(e for e in trace if e[0] == "clock")
    offset = clock[2] - clock[1]  # time.time - perf_counter
    jump = next(e[1] for e in trace if e[0] == "jump")
    done = next((e[1] for e in trace if e[0] == "complete" and e[1] >= jump), None)
    t0 = jump + offset + (start or 0.0)
    t1 = jump + offset + end if end is not None else (done + offset if done is not None else float("inf"))
    return t0, t1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("samples")
    ap.add_argument("--from", dest="start", type=float, default=None, help="seconds after the jump")
    ap.add_argument("--to", dest="end", type=float, default=None, help="seconds after the jump")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args(argv)
    t0, t1 = window(json.loads(Path(args.trace).read_text()), args.start, args.end)
    print(f"window {t1 - t0:.2f} s")
    for f in sorted(Path(args.samples).glob("s*.jsonl")):
        threads, own, incl = collections.Counter(), collections.Counter(), collections.Counter()
        for line in f.read_text().splitlines():
            t, name, cpu, stack = json.loads(line)
            if not t0 <= t <= t1:
                continue
            threads[name] += cpu
            own[stack[0]] += cpu
            for fn in set(stack):
                incl[fn] += cpu
        print(f"== {f.name}: " + ", ".join(f"{k} {v:.2f}" for k, v in threads.most_common()))
        for title, c in (("self", own), ("inclusive", incl)):
            print(f"  {title}:")
            for k, v in c.most_common(args.top):
                print(f"    {v:7.3f}  {k}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
