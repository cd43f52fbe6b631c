"""cProfile in every Python process of a bench run, for finding where a server's CPU goes
across its processes (main, generator workers, backend processes); nothing here is imported
by the product.

On the PYTHONPATH of a process whose environment names ``WORLDSTREAM_BENCH_PROFILE=DIR``,
Python imports this module at start-up (``site``). The process profiles its main thread with
``cProfile`` while the file ``DIR/window`` exists (bench/throughput.py makes it for its
uncached phase when that variable is set) and, when the window closes, writes the statistics
to ``DIR/<pid>.prof`` and a line to ``DIR/<pid>.json``: the CPU seconds of the process in
the window (``time.process_time()``, all its threads), the window's wall seconds, parent pid
and argv. Start and stop run in the main thread (a SIGUSR1 the process sends itself from a
thread that looks for the file every 0.2 s). Python 3.11's cProfile sees the main thread only
(other threads show as its waits); from 3.12 (sys.monitoring) it sees every thread, the hook's
own 0.2 s sleeps included. ``python bench/server_profile/report.py DIR`` prints the summary.
"""

import os

DIR = os.environ.get("WORLDSTREAM_BENCH_PROFILE")


def _start() -> None:
    import cProfile
    import json
    import signal
    import sys
    import threading
    import time

    pid = os.getpid()
    window = os.path.join(DIR, "window")
    state = {"on": False, "t0": 0.0, "cpu0": 0.0, "prof": None}

    def toggle(*_):
        if not state["on"]:
            state.update(on=True, t0=time.perf_counter(), cpu0=time.process_time(), prof=cProfile.Profile())
            state["prof"].enable()
            return
        prof = state["prof"]
        prof.disable()
        state["on"] = False
        prof.dump_stats(os.path.join(DIR, f"{pid}.prof"))
        with open(os.path.join(DIR, f"{pid}.json"), "w") as f:
            json.dump({"pid": pid, "ppid": os.getppid(), "cpu_s": time.process_time() - state["cpu0"],
                       "wall_s": time.perf_counter() - state["t0"], "argv": sys.argv[:6]}, f)

    signal.signal(signal.SIGUSR1, toggle)

    def watch():
        while True:
            time.sleep(0.2)
            if os.path.exists(window) != state["on"]:
                os.kill(pid, signal.SIGUSR1)
                time.sleep(0.2)  # the main thread's turn

    threading.Thread(target=watch, name="bench-profile", daemon=True).start()


if DIR:
    os.makedirs(DIR, exist_ok=True)
    _start()
