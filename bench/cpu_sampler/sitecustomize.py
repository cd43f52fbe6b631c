"""A CPU-time-weighted stack sampler for every Python process started with this directory on
PYTHONPATH and ``WS_SAMPLE_DIR`` set (the bench process and the `worldstream serve` process it
starts alike; no py-spy on the 2-core box).

Every 4 ms a daemon thread reads each other thread's stack (``sys._current_frames``, file and
function names, innermost first, at most 40 frames) and weights it by the CPU seconds that
thread used since the last sample (``pthread_getcpuclockid``), so threads waiting for a lock,
a socket or a core count nothing. Compiled (numba) and C code show as their Python caller.
Samples go to ``$WS_SAMPLE_DIR/s<pid>.jsonl`` once a second as [wall time s, thread name, CPU
s, [frames]]; ``report.py`` sums them over a window. The sampler's own thread costs ~3 % of a
core (it is named "sampler" and not sampled).

    PYTHONPATH=bench/cpu_sampler:. WS_SAMPLE_DIR=/tmp/sd python bench/realtime_trace.py earth --json /tmp/t.json
    python bench/cpu_sampler/report.py /tmp/t.json /tmp/sd
"""

import os

if os.environ.get("WS_SAMPLE_DIR"):
    import json
    import sys
    import threading
    import time

    _DIR = os.environ["WS_SAMPLE_DIR"]
    _PERIOD_S = 0.004

    def _run() -> None:
        me = threading.get_ident()
        path = os.path.join(_DIR, f"s{os.getpid()}.jsonl")
        buf: list = []
        cpu: dict = {}
        last = time.time()
        while True:
            time.sleep(_PERIOD_S)
            now = time.time()
            names = {t.ident: t.name for t in threading.enumerate()}
            for tid, frame in sys._current_frames().items():
                if tid == me:
                    continue
                try:
                    c = time.clock_gettime(time.pthread_getcpuclockid(tid))
                except OSError:  # the thread ended
                    continue
                used = c - cpu.get(tid, c)
                cpu[tid] = c
                if used <= 0:
                    continue
                stack = []
                while frame is not None and len(stack) < 40:
                    stack.append(f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_code.co_name}")
                    frame = frame.f_back
                buf.append((now, names.get(tid, str(tid)), used, stack))
            if now - last > 1.0:
                with open(path, "a") as fh:
                    fh.writelines(json.dumps(r) + "\n" for r in buf)
                buf.clear()
                last = now

    threading.Thread(target=_run, daemon=True, name="sampler").start()
