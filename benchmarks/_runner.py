"""What the Glow benchmarks share: a step timed in a fresh process, its peak memory (the
child's resident memory polled, the child killed at a limit), and the results written
(JSON, markdown tables, figures) with the command that writes them.

A child prints one JSON line (its result) last; ``child`` runs it, watches it and returns its
row with a ``status``: ``ok``, ``out of memory`` (killed at the limit, an allocation refused,
or killed by the system), ``timeout`` or ``failed (rc N): <last line of stderr>``.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"
ENTRY = "python benchmarks/glow.py"
# The scripts the entry point replaced, for command text recorded in results files before it.
REPLACED = {"glow_step.py": "step", "glow_sweep.py": "sweep", "glow_headline.py": "headline",
            "glow_ratio.py": "ratio", "cpu_cores.py": "cores", "profile_step.py": "profile",
            "glow3d.py": "volumes"}
OOM = ("RESOURCE_EXHAUSTED", "out of memory", "MemoryError", "DefaultCPUAllocator")


def command(sub: str, *args) -> str:
    """The command line of a subcommand, as the results files name it."""
    return " ".join([ENTRY, sub, *map(str, args)])


def current(text: str) -> str:
    """``text`` with the replaced scripts' command lines in the entry point's words."""
    for script, sub in REPLACED.items():
        text = text.replace(f"python benchmarks/{script}", f"{ENTRY} {sub}")
    return text


# ---------------------------------------------------------------- in the child

def rss_mib(pid="self") -> float:
    """Resident memory of a process now (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def release():
    """Give memory that is freed but kept by the allocator back to the system."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


def timed(step, steps):
    """Median seconds of ``steps`` steps after a warm-up step (of the warm-up step alone if 0)."""
    t = time.perf_counter()
    step()  # warm-up
    if steps == 0:
        return time.perf_counter() - t, []
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


# ---------------------------------------------------------------- in the parent

def child(cmd, row=None, *, limit_gib=None, timeout=None, env=None) -> dict:
    """Run ``cmd`` in a fresh process, watched: its resident memory is polled and it is killed
    past ``limit_gib`` (None: never) or ``timeout`` seconds. ``row`` updated with the child's
    JSON line and ``status`` "ok", or with why not and the memory it had reached."""
    row = dict(row or {})
    start, seen, status = time.perf_counter(), 0.0, None
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    while proc.poll() is None:
        seen = max(seen, rss_mib(proc.pid))
        if limit_gib is not None and seen > limit_gib * 1024:
            status = "out of memory"
        elif timeout is not None and time.perf_counter() - start > timeout:
            status = "timeout"
        if status:
            proc.kill()
            break
        time.sleep(0.1)
    out, err = proc.communicate()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if status is None and proc.returncode == 0 and lines:
        row.update(json.loads(lines[-1]), status="ok")
        return row
    if status is None:
        oom = any(m in err for m in OOM)
        last = err.strip().splitlines()[-1] if err.strip() else ""
        status = "out of memory" if oom or proc.returncode == -9 else f"failed (rc {proc.returncode}): {last[:300]}"
        if not oom:
            print(f"{' '.join(map(str, cmd[1:]))}: {status}\n{err[-2000:]}", file=sys.stderr, flush=True)
    row.update(status=status, peak_rss_mib=seen, wall_s=time.perf_counter() - start)
    return row


def step_cmd(impl, size, depth, *extra) -> list:
    """The command of one 2D Glow step (``glow.py step``) in a fresh Python."""
    return [sys.executable, str(HERE / "glow.py"), "step", "--impl", impl, "--size", str(size), "--depth", str(depth),
            *map(str, extra)]


def run_step(impl, size, depth, *extra) -> dict:
    """One 2D Glow step in a fresh process; its result, or SystemExit saying why it failed."""
    row = child(step_cmd(impl, size, depth, *extra))
    if row["status"] != "ok":
        raise SystemExit(f"{impl} {size}x{size} depth {depth}: {row['status']}")
    return row


def ram_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def machine_info() -> dict:
    info = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    from importlib.metadata import PackageNotFoundError, version

    for package in ("jax", "jaxlib", "equinox", "invjax", "torch", "normflows"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = None
    return info


# ---------------------------------------------------------------- results

def write_json(path: pathlib.Path, data, newline=True):
    path.write_text(json.dumps(data, indent=1) + ("\n" if newline else ""))


def write_text(path: pathlib.Path, text: str, echo=True):
    """Write a results file (a table) and say so, or print it."""
    path.write_text(text)
    if echo:
        print(f"wrote {path}")


def md_table(header, rows, align=None) -> list:
    """A markdown table's lines; ``align`` the separator cells (default ``---``)."""
    return (["| " + " | ".join(header) + " |", "|" + "|".join(align or ["---"] * len(header)) + "|"]
            + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def pyplot():
    """matplotlib's pyplot, drawing to files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fmt(v, unit="", spec=".3g"):
    """A number with its unit, ``-`` where there is none."""
    if v in (None, "", "nan", "None"):
        return "-"
    return f"{float(v):{spec}} {unit}".strip()
