"""``glow.py profile``: where a Glow training step's time goes, the XLA operations that take the longest.

    python benchmarks/glow.py profile --size 256 --depth 16 --out benchmarks/results/profile.md
    python benchmarks/glow.py profile --size 32 --depth 2          # a quick look
    python benchmarks/glow.py profile --volume --size 64 --depth 8 --hidden 32 --batch 2   # the 3D Glow of volumes

The step is ``glow.py step``'s (``--impl invjax``: ``ij.nets.Glow``, loss, gradient and an
Adam update, the parameters and optimizer state donated) on JAX's single host device (no
``ij.use_cpu_cores``). It is compiled, run once to warm up, timed over ``--steps`` steps,
then run ``--steps`` more times under ``jax.profiler.trace``. XLA:CPU's thunk runtime
records one event per operation it runs (``hlo_op`` in the event's arguments; an
operation inside a loop once per iteration), so an operation's time per step is the sum
of its events divided by ``--steps``. ``while``/``call``/``conditional`` events only
contain other operations' events and are left out.

Each operation is matched by name with the compiled HLO (``compiled.as_text()``) for its
kind: the opcode, or for a fusion what it computes (the first of convolution, dot,
custom-call, scatter, gather, ..., reduce found inside; else ``copy/transpose/slice`` if
it only moves data, ``elementwise`` or ``elementwise + transpose``). A convolution whose
window is larger than 7 has an image-sized "kernel": it is a kernel gradient
(``conv (kernel grad)``). ``loops`` is how many ``while`` loops enclose the operation
(the depth stacks' scans are one; a loop inside them, two); ``JAX op`` is its
``op_name`` (``transpose(jvp())`` is the backward pass). Tables: the ten operations
with the most time; time by kind; by kind and loop depth; by part of the step; by part
and JAX operation.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import pathlib
import re
import shutil
import statistics
import tempfile
import time

import _runner as run
from _glow2d import glow_training_step
from _runner import release

CONTAINERS = {"while", "call", "conditional"}
# For a fusion: the first of these found inside names its kind; else data movement only
# (copy/transpose/slice) or, with any arithmetic on arrays, elementwise (+ transpose if one is inside).
TELLING = ["convolution", "dot", "custom-call", "scatter", "gather", "triangular-solve", "sort", "reduce-window",
           "reduce"]
MOVES = {"copy", "transpose", "bitcast", "broadcast", "reshape", "slice", "parameter", "constant", "iota", "tuple",
         "get-tuple-element", "convert", "bitcast-convert", "dynamic-slice", "dynamic-update-slice", "concatenate",
         "pad", "reverse", "select"}


def build_step(size, depth, levels, hidden, batch, volume=False):
    """``glow.py step``'s JAX step (``glow_training_step``; with ``volume`` ``glow.py volumes``', on
    one-channel volumes), compiled for one device."""
    import jax

    if volume:
        from _glow3d import glow3d_training_step as build
    else:
        build = glow_training_step
    flow, x, params, state, step = build(levels, depth, hidden, batch, size)

    jax.clear_caches()
    release()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, x).compile()
    carry = [params, state]

    def one():
        carry[0], carry[1], loss = compiled(carry[0], carry[1], x)
        jax.block_until_ready(loss)

    return compiled, one


def parse_hlo(text):
    """Instruction name -> kind, loops (enclosing ``while``s), result shape and JAX op name, from the HLO text."""
    comps, caller, inst = {}, {}, {}  # computation -> opcodes inside; computation -> its caller; name -> info
    current = None
    for line in text.splitlines():
        head = re.match(r"^(?:ENTRY )?%([\w.\-]+) .*\{$", line)
        if head:
            current = head.group(1)
            comps[current] = []
            continue
        m = re.match(r"^\s+(?:ROOT )?%([\w.\-]+) = (.*?)\s([a-z][\w\-]*)\((.*)$", line)
        if not m or current is None:
            continue
        name, shape, opcode, rest = m.groups()
        if not re.fullmatch(r"(s|u)\d+\[\]|pred\[\]", shape):  # index arithmetic is not what a fusion computes
            comps[current].append(opcode)
        for called in re.findall(r"(?:calls|body|condition|to_apply|branch_computations)=\{?%([\w.\-]+)", rest):
            caller[called] = name
        window = re.search(r"window=\{size=([\dx]+)", rest)
        op_name = re.search(r'op_name="([^"]*)"', rest)
        target = re.search(r'custom_call_target="([^"]*)"', rest)
        inst[name] = dict(opcode=opcode, comp=current, calls=re.search(r"calls=%([\w.\-]+)", rest),
                          target=target.group(1) if target else "",
                          window=max(map(int, window.group(1).split("x"))) if window else 0,
                          shape=re.sub(r"\{[\d,]*\}", "", shape), op_name=op_name.group(1) if op_name else "")

    def kind_of(info):
        op = info["opcode"]
        if op == "fusion" and info["calls"]:
            inside = comps.get(info["calls"].group(1), [])
            moves = "copy/transpose/slice" if set(inside) <= MOVES else None
            op = next((k for k in TELLING if k in inside),
                      moves or ("elementwise + transpose" if "transpose" in inside else "elementwise"))
            if op == "convolution":  # the window is on the convolution inside
                inner = [i for i in inst.values() if i["comp"] == info["calls"].group(1) and i["opcode"] == op]
                return kind_of(inner[0])
        if op == "convolution":
            return "conv (kernel grad)" if info["window"] > 7 else "convolution"
        if op == "custom-call":
            return f"custom-call {info['target']}"
        return "copy/transpose/slice" if op in MOVES else op

    out = {}
    for name, info in inst.items():
        loops, comp = 0, info["comp"]
        while comp in caller:
            loops += inst[caller[comp]]["opcode"] == "while"
            comp = inst[caller[comp]]["comp"]
        op_name = info["op_name"].removeprefix("jit(step)/").replace("while/body/closed_call/", "while/")
        out[name] = dict(kind=kind_of(info), loops=loops, shape=info["shape"], op_name=op_name,
                         jax_op=re.sub(r"^(transpose\(jvp\(\)\)|jvp\(\))/while/(body/)?", "", op_name),
                         part="backward" if op_name.startswith("transpose(") else
                              "forward" if op_name.startswith("jvp(") else "loss, Adam, other")
    return out


def op_times(logdir, module):
    """Per HLO op name: microseconds summed over its events, the number of events; and every event's span."""
    path = sorted(glob.glob(f"{logdir}/**/perfetto_trace.json.gz", recursive=True))[-1]
    with gzip.open(path) as f:
        events = json.load(f)["traceEvents"]
    total, count, spans = collections.Counter(), collections.Counter(), []
    for e in events:
        args = e.get("args", {})
        if e.get("ph") == "X" and args.get("hlo_module") == module and "hlo_op" in args:
            total[args["hlo_op"]] += e["dur"]
            count[args["hlo_op"]] += 1
            spans.append((e["ts"], e["ts"] + e["dur"], args["hlo_op"]))
    return total, count, spans


def table(header, rows):
    return "\n".join(run.md_table(header, rows))


def busy_us(spans):
    """Length of the union of the intervals."""
    busy, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > end:
            busy += b - max(a, end)
            end = b
    return busy


def profile_arguments(p):
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=2, help="timed steps, then as many profiled steps")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--out", help="also write the tables to this markdown file")
    p.add_argument("--volume", action="store_true", help="the 3D Glow of glow.py volumes (one channel) instead")


def profile(args):
    """Compile, warm up, time ``--steps`` steps, trace as many, and print (``--out``: write) the tables."""
    import jax

    import invjax

    compiled, one = build_step(args.size, args.depth, args.levels, args.hidden, args.batch, args.volume)
    hlo = compiled.as_text()
    module = re.match(r"HloModule (\S+?),", hlo).group(1)
    ops = parse_hlo(hlo)
    one()  # warm-up
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        one()
        times.append(time.perf_counter() - start)
    wall = statistics.median(times)
    logdir = tempfile.mkdtemp(prefix="invjax_profile_")
    with jax.profiler.trace(logdir, create_perfetto_trace=True):
        start = time.perf_counter()
        for _ in range(args.steps):
            one()
        traced = (time.perf_counter() - start) / args.steps
    total, count, spans = op_times(logdir, module)
    shutil.rmtree(logdir)

    leaves = {n: us / args.steps / 1e3 for n, us in total.items() if ops.get(n, {}).get("kind") not in CONTAINERS}
    step_ms = sum(leaves.values())
    busy = busy_us([s[:2] for s in spans if s[2] in leaves]) / args.steps / 1e3
    unknown = sorted(n for n in leaves if n not in ops)
    info = lambda n: ops.get(n, dict(kind="?", loops="?", shape="?", op_name="?", part="?", jax_op="?"))  # noqa: E731
    top = sorted(leaves, key=leaves.get, reverse=True)[:args.top]
    rows = [(f"`{n}`", info(n)["kind"], f"`{info(n)['shape'][:40]}`", info(n)["loops"], count[n] // args.steps,
             f"{leaves[n]:.1f}", f"{100 * leaves[n] / step_ms:.1f}%", f"`{info(n)['op_name'][-70:]}`") for n in top]

    def grouped(*keys):
        ms, num = collections.Counter(), collections.Counter()
        for n, t in leaves.items():
            ms[tuple(info(n)[k] for k in keys)] += t
            num[tuple(info(n)[k] for k in keys)] += 1
        return [(*k, num[k], f"{t:.1f}", f"{100 * t / step_ms:.1f}%") for k, t in ms.most_common()]

    text = "\n\n".join([
        f"`{args.command_line}`: jax {jax.__version__}, {jax.devices()[0].device_kind}, one device; invjax from "
        f"`{pathlib.Path(invjax.__file__).parent}`",
        f"Step wall time {1e3 * wall:.0f} ms (median of {args.steps} untraced steps), {1e3 * traced:.0f} ms traced. "
        f"Per traced step the operations' events sum to {step_ms:.0f} ms and their union covers {busy:.0f} ms; "
        f"{len(leaves)} operations ran"
        + (f", {len(unknown)} not found in the HLO" if unknown else ""),
        table(["operation", "kind", "shape", "loops", "events/step", "ms/step", "share", "JAX op"], rows),
        table(["kind", "operations", "ms/step", "share"], grouped("kind")),
        table(["kind", "loops", "operations", "ms/step", "share"], grouped("kind", "loops")[:15]),
        table(["part", "operations", "ms/step", "share"], grouped("part")),
        table(["part", "JAX op (loop prefix dropped)", "operations", "ms/step", "share"],
              [(a, f"`{b}`", *r) for a, b, *r in grouped("part", "jax_op")[:12]]),
    ])
    print(text)
    if args.out:
        pathlib.Path(args.out).write_text(text + "\n")
