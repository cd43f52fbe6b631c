"""Summarise bench/server_profile's dumps: per process (CPU seconds, wall, its top functions by
own time and by cumulative time), busiest first.

    python bench/server_profile/report.py DIR [--top 20]
"""

from __future__ import annotations

import argparse
import io
import json
import pstats
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args(argv)
    rows = []
    for meta in sorted(Path(args.dir).glob("*.json")):
        info = json.loads(meta.read_text())
        prof = meta.with_suffix(".prof")
        if prof.exists():
            rows.append((info, prof))
    rows.sort(key=lambda r: -r[0]["cpu_s"])
    print(f"{len(rows)} processes; CPU s total {sum(r[0]['cpu_s'] for r in rows):.1f}")
    busiest = max((r[0]["cpu_s"] for r in rows), default=0.0)
    for info, prof in rows:
        if info["cpu_s"] < 0.1 * busiest:  # idle ones (the bench's spare processes)
            continue
        out = io.StringIO()
        st = pstats.Stats(str(prof), stream=out)
        print(f"\n== pid {info['pid']} (parent {info['ppid']}) cpu {info['cpu_s']:.1f} s wall {info['wall_s']:.1f} s "
              f"profiled {st.total_tt:.1f} s  argv {' '.join(map(str, info['argv']))[:100]}")
        for order in ("tottime", "cumulative"):
            out.seek(0)
            out.truncate()
            st.sort_stats(order).print_stats(args.top)
            text = out.getvalue()
            print(f"-- by {order}")
            print(text[text.find("   ncalls"):].rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
