#!/usr/bin/env python3
"""`featvis atlas` on a Ray cluster: one Ray task per shard.

    tools/atlas_ray.py setup     # ray into .ray-venv/ (pinned); `run` re-executes itself there
    tools/atlas_ray.py run --layers conv1_2,conv3_3 --channels 0-7 --size 48 --steps 32 \\
                           --out DIR --shards 4 [--address ray://head:10001] [--json]
    tools/atlas_ray.py estimate --gpus 1,8,64 --tflops 67 --efficiency 0.3

`run` starts a local Ray instance unless --address or RAY_ADDRESS names a
cluster. Each task runs `featvis atlas --shard I/N --json --quiet …` as a
subprocess on a worker, against DIR on a filesystem every node shares.
`featvis atlas` is resumable, so a retry (Ray's, after a worker or node
died, or after featvis itself was killed by a signal) only renders what is
missing. Then a last task checks that every chosen channel has exactly one
record and writes the site with `featvis atlas-index DIR`.

`estimate` prints the FLOP model's time for an atlas (DESIGN.md §6): a step
of one image costs the forward pass to the layer plus the gradient back to
the input, 2 × 2 × the MACs of the convs up to the layer (pools, the image
parameterization and Adam are left out).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".ray-venv"
RAY_VERSION = "2.60.0"
# Ray's core, plus grpcio for Ray Client (`--address ray://head:10001`).
RAY_REQUIREMENT = f"ray[client]=={RAY_VERSION}"

# VGG16's conv layers: (name, input channels, output channels, block); block
# k sees the image halved k-1 times by the 2×2 max pools.
CONVS: list[tuple[str, int, int, int]] = [
    ("conv1_1", 3, 64, 1),
    ("conv1_2", 64, 64, 1),
    ("conv2_1", 64, 128, 2),
    ("conv2_2", 128, 128, 2),
    ("conv3_1", 128, 256, 3),
    ("conv3_2", 256, 256, 3),
    ("conv3_3", 256, 256, 3),
    ("conv4_1", 256, 512, 4),
    ("conv4_2", 512, 512, 4),
    ("conv4_3", 512, 512, 4),
    ("conv5_1", 512, 512, 5),
    ("conv5_2", 512, 512, 5),
    ("conv5_3", 512, 512, 5),
]
CHANNELS = {name: cout for name, _, cout, _ in CONVS}

# fp32 peak (non-tensor) TFLOP/s of the vendors' data sheets.
GPUS: list[tuple[str, float]] = [
    ("H100 SXM", 67.0),
    ("A100", 19.5),
    ("RTX 4090", 82.6),
    ("A10G", 31.2),
    ("T4", 8.1),
]


def fail(message: str) -> SystemExit:
    return SystemExit(f"atlas_ray: {message}")


# ---------------------------------------------------------------- channels


def layer_names(text: str) -> list[str]:
    """`all` or a comma list of conv layers, as `featvis atlas --layers` reads it."""
    if text.strip() == "all":
        return [name for name, *_ in CONVS]
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in CHANNELS]
    if unknown:
        raise fail(f"unknown layer `{unknown[0]}`; use conv layers ({', '.join(CHANNELS)}) or `all`")
    return names


def channel_list(text: str, count: int) -> list[int]:
    """`all` or a list like 0-7,12 (featvis's `--channels`), sorted, without repeats."""
    if text.strip() == "all":
        return list(range(count))
    chosen: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.partition("-")
        chosen.update(range(int(first), int(last) + 1) if dash else [int(first)])
    return sorted(chosen)


def groups(layers: list[str], channels: str, batch: int) -> list[tuple[str, list[int]]]:
    """The atlas's groups in featvis's order: up to `batch` chosen channels of a layer each."""
    out: list[tuple[str, list[int]]] = []
    for layer in layers:
        chosen = channel_list(channels, CHANNELS[layer])
        out.extend((layer, chosen[k : k + batch]) for k in range(0, len(chosen), batch))
    return out


# ---------------------------------------------------------------- estimate


def step_flops(layer: str, size: int) -> float:
    """FLOPs of one Adam step of one image: forward to `layer`, gradient back to the input."""
    macs = 0
    for name, cin, cout, block in CONVS:
        side = size >> (block - 1)
        macs += side * side * 9 * cin * cout
        if name == layer:
            break
    return 2.0 * 2.0 * macs


def duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def estimate(args: argparse.Namespace) -> int:
    plan = groups(layer_names(args.layers), args.channels, args.batch)
    cost = [len(chans) * args.steps * step_flops(layer, args.size) for layer, chans in plan]
    total = sum(cost)
    counts = [int(n) for n in args.gpus.split(",")]
    rates = [("this rate", args.tflops)] if args.tflops else GPUS
    channels = sum(len(chans) for _, chans in plan)
    flops = f"{total / 1e15:.1f} PFLOP" if total >= 1e15 else f"{total / 1e12:.2f} TFLOP"
    print(f"{channels} channels in {len(plan)} groups of up to {args.batch}, {args.size} px, {args.steps} steps: "
          f"{flops} (conv forward to each layer + gradient to the input)")
    print(f"at {args.efficiency:.0%} of each GPU's fp32 peak (an assumption until measured); "
          "shard I of N takes groups I-1 mod N, so the slowest shard sets the time\n")
    head = " | ".join(f"{n} GPU{'s' if n > 1 else ''}" for n in counts)
    print(f"| GPU | fp32 peak TFLOP/s | assumed TFLOP/s | {head} |")
    print("| --- | --- | --- |" + " --- |" * len(counts))
    for name, peak in rates:
        rate = peak * 1e12 * args.efficiency
        cells = []
        for n in counts:
            wall = max(sum(cost[k::n]) for k in range(min(n, len(plan)))) / rate
            cells.append(duration(wall) if n == 1 else f"{duration(wall)} ({n * wall / 3600:.1f} GPU-h)")
        print(f"| {name} | {peak:.3g} | {peak * args.efficiency:.3g} | {' | '.join(cells)} |")
    return 0


# ---------------------------------------------------------------- setup


def setup(_: argparse.Namespace) -> int:
    """Create .ray-venv/ and install the pinned Ray into it (skipped when it is there)."""
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"atlas_ray: creating {VENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    versions = "import importlib.metadata as m; m.version('grpcio'); print(m.version('ray'))"
    probe = subprocess.run([str(python), "-c", versions], capture_output=True, text=True)
    if probe.stdout.strip() != RAY_VERSION:
        print(f"atlas_ray: pip install {RAY_REQUIREMENT} into {VENV}", file=sys.stderr)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", RAY_REQUIREMENT]
        subprocess.run(pip, check=True)
    print(f"atlas_ray: {RAY_REQUIREMENT} in {VENV}")
    return 0


def import_ray() -> Any:
    """Ray from .ray-venv/ (re-executing this script with its python), else from this python."""
    python = VENV / "bin" / "python"
    if python.exists() and Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(python, [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])
    try:
        import ray
    except ImportError:
        raise fail(f"Ray is not installed: run `tools/atlas_ray.py setup` ({RAY_REQUIREMENT} into {VENV})") from None
    return ray


# ---------------------------------------------------------------- the tasks
# These run on the workers: Ray pickles them by value (they live in __main__).


class FeatvisKilled(Exception):
    """featvis ended by a signal (preempted, out of memory, killed): Ray retries the task."""


@dataclass
class Attempt:
    shard: str
    node: str
    pid: int
    outcome: str | None = None  # None: the worker or its node died during the attempt


class AttemptLog:
    """A Ray actor: every attempt of every shard, so the driver can count retries."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []

    def start(self, shard: str, node: str, pid: int) -> int:
        self.attempts.append(Attempt(shard, node, pid))
        return len(self.attempts) - 1

    def finish(self, k: int, outcome: str) -> None:
        self.attempts[k].outcome = outcome

    def all(self) -> list[Attempt]:
        return self.attempts


@dataclass
class ShardResult:
    shard: str
    node: str
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)  # featvis atlas --json
    record: dict[str, Any] | None = None  # DIR/shards/I-of-N.json


def node_name() -> str:
    import ray

    return f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"


def die_with_parent() -> Callable[[], None] | None:
    """For Popen's preexec_fn: SIGKILL the child when the Ray worker dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGKILL)


def run_shard(argv: list[str], shard: str, out: str, log: Any) -> ShardResult:
    import ray

    node = node_name()
    attempt = ray.get(log.start.remote(shard, node, os.getpid()))
    if not os.access(argv[0], os.X_OK):
        error = f"the featvis binary {argv[0]} is missing on node {node}: build it there or pass --featvis PATH"
        ray.get(log.finish.remote(attempt, "error"))
        return ShardResult(shard, node, error=error)
    proc = subprocess.run(argv, capture_output=True, text=True, preexec_fn=die_with_parent())
    if proc.returncode < 0:
        outcome = f"featvis killed by {signal.Signals(-proc.returncode).name}"
        ray.get(log.finish.remote(attempt, outcome))
        raise FeatvisKilled(f"shard {shard} on {node}: {outcome}")
    if proc.returncode != 0:
        ray.get(log.finish.remote(attempt, f"exit {proc.returncode}"))
        message = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"featvis exited {proc.returncode}"
        return ShardResult(shard, node, error=message)
    ray.get(log.finish.remote(attempt, "done"))
    i, n = shard.split("/")
    record_path = Path(out) / "shards" / f"{i}-of-{n}.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else None
    return ShardResult(shard, node, summary=json.loads(proc.stdout.strip().splitlines()[-1]), record=record)


@dataclass
class Check:
    channels: int = 0
    site: str = ""
    errors: list[str] = field(default_factory=list)


def finish_atlas(featvis: str, out: str, layers: list[str], records: list[dict[str, Any]]) -> Check:
    """Every chosen channel exactly once (its record, its PNGs; no shard rendered
    it twice), then `featvis atlas-index DIR`."""
    root = Path(out)
    check = Check()
    chosen = json.loads((root / "atlas.json").read_text()).get("channels", "all")
    for layer in layers:
        want = set(channel_list(chosen, CHANNELS[layer]))
        have = {int(p.stem) for p in (root / layer).glob("*.json") if p.stem.isdigit()}
        check.channels += len(want & have)
        check.errors += [f"{layer} channel {c} has no record {layer}/{c}.json" for c in sorted(want - have)]
        check.errors += [f"{layer}/{c}.json is not one of the chosen channels ({chosen})" for c in sorted(have - want)]
        for c in sorted(want & have):
            rec = json.loads((root / layer / f"{c}.json").read_text())
            if (rec.get("layer"), rec.get("channel")) != (layer, c):
                check.errors.append(f"{layer}/{c}.json records {rec.get('layer')} channel {rec.get('channel')}")
            check.errors += [f"{layer}/{f} is missing" for f in rec.get("files", []) if not (root / layer / f).exists()]
    seen: dict[tuple[str, int], str] = {}
    for rec in records:
        for layer, c, *_ in rec.get("channels", []):
            if (layer, c) in seen:
                check.errors.append(f"{layer} channel {c} was rendered by shard {seen[layer, c]} and shard {rec['shard']}")
            seen[layer, c] = rec["shard"]
    if check.errors:
        return check
    proc = subprocess.run([featvis, "atlas-index", out], capture_output=True, text=True)
    if proc.returncode != 0:
        check.errors.append(proc.stderr.strip() or f"featvis atlas-index exited {proc.returncode}")
    check.site = str(root / "index.html")
    return check


# ---------------------------------------------------------------- run


def featvis_argv(args: argparse.Namespace, featvis: Path, out: Path, shard: str) -> list[str]:
    argv = [str(featvis), "atlas", "--out", str(out), "--shard", shard, "--json", "--quiet"]
    if args.random_weights:
        argv.append("--random-weights")
    else:
        argv += ["--weights", str(Path(args.weights).resolve())]
    for name in ("layers", "channels", "size", "steps", "seed", "batch", "preset", "transforms", "param", "lr"):
        value = getattr(args, name)
        if value is not None:
            argv += [f"--{name}", str(value)]
    return argv


def run(args: argparse.Namespace) -> int:
    began = time.monotonic()
    ray = import_ray()
    # Ray prints its workers' errors (a worker died, a task is retried) on
    # stdout: they go to stderr, so that stdout holds the summary alone.
    with contextlib.redirect_stdout(sys.stderr):
        summary = run_on_ray(args, ray)
    summary["seconds"] = round(time.monotonic() - began, 2)
    if args.json:
        print(json.dumps(summary))
    else:
        retried = [a for a in summary["attempts"] if a["outcome"] != "done"]
        why = "; ".join(f"shard {a['shard']} on {a['node']}: {a['outcome'] or 'worker or node died'}" for a in retried)
        print(f"atlas {summary['out']}: {summary['channels']} channels of {', '.join(summary['layers'])} "
              f"in {summary['shards']} shards on {plural(len(summary['nodes']), 'node')}, {plural(summary['retries'], 'retry')}"
              f"{f' ({why})' if why else ''}, {summary['seconds']:.1f} s; site {summary['site']}")
    return 0


def run_on_ray(args: argparse.Namespace, ray: Any) -> dict[str, Any]:
    """Connect to (or start) Ray, run the shards, check the atlas, write its site: the summary."""
    featvis = Path(args.featvis).resolve()
    out = Path(args.out).resolve()
    layers = layer_names(args.layers or "all")
    address = args.address or ("auto" if os.environ.get("RAY_ADDRESS") else None)
    if address is None:
        # A local instance: the binary is checked here, before Ray starts.
        if not os.access(featvis, os.X_OK):
            raise fail(f"featvis binary {featvis} is missing: `cargo build --release --bin featvis`, or pass --featvis PATH")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(address="local", object_store_memory=128 << 20, include_dashboard=False,
                 log_to_driver=False, logging_level="WARNING")
    else:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    try:
        resources = ray.cluster_resources()
        have_gpus = resources.get("GPU", 0)
        gpus = args.gpus_per_task if args.gpus_per_task is not None else (1.0 if have_gpus > 0 else 0.0)
        n = args.shards or max(1, int(have_gpus // gpus) if gpus else int(resources.get("CPU", 1)))
        if gpus > have_gpus:
            say(args, f"the cluster has {have_gpus:g} GPUs now: the tasks wait for the autoscaler to add some")
        log = ray.remote(AttemptLog).options(num_cpus=0).remote()
        # The task returns featvis's own errors (bad settings, a refused DIR: a
        # retry would fail the same way) and raises FeatvisKilled, which is retried.
        # (retry_exceptions=True: Ray Client cannot unpickle a list of classes from __main__.)
        task = ray.remote(run_shard).options(
            num_cpus=1, num_gpus=gpus, max_retries=args.max_retries, retry_exceptions=True
        )
        shards = [f"{i}/{n}" for i in range(1, n + 1)]
        pending = {task.remote(featvis_argv(args, featvis, out, s), s, str(out), log): s for s in shards}
        say(args, f"{n} shards of {out} on {plural(len(ray.nodes()), 'Ray node')} ({gpus:g} GPU per task)")
        results: list[ShardResult] = []
        errors: dict[str, list[str]] = {}  # message → its shards
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            shard = pending.pop(ref)
            try:
                result: ShardResult = ray.get(ref)
            except ray.exceptions.RayError as e:
                last = str(e).strip().splitlines()[-1]
                errors.setdefault(f"gave up after {args.max_retries} retries: {last}", []).append(shard)
                continue
            if result.error:
                errors.setdefault(result.error, []).append(shard)
                continue
            results.append(result)
            s = result.summary
            say(args, f"shard {shard} done on {result.node}: {plural(s['channels'], 'channel')} "
                      f"({s['rendered']} rendered, {s['skipped']} done before) in {s['seconds']:.1f} s")
        if errors:
            # The same refusal (settings, weights) from every shard is said once.
            raise fail("\n".join(f"shard{'s' * (len(ids) > 1)} {', '.join(sorted(ids))}: {m}" for m, ids in errors.items()))
        attempts: list[Attempt] = ray.get(log.all.remote())
        finish = ray.remote(finish_atlas).options(num_cpus=0, max_retries=args.max_retries)
        check: Check = ray.get(finish.remote(str(featvis), str(out), layers, [r.record for r in results if r.record]))
    finally:
        ray.shutdown()
    expected = sum(r.summary["channels"] for r in results)
    if check.channels != expected:
        check.errors.append(f"the shards report {expected} channels but {out} holds {check.channels} of them")
    if check.errors:
        raise fail(f"{out} is incomplete:\n" + "\n".join(check.errors))
    return {
        "out": str(out),
        "layers": layers,
        "channels": check.channels,
        "shards": n,
        "nodes": sorted({r.node for r in results}),
        "retries": len(attempts) - n,
        "attempts": [asdict(a) for a in attempts],
        "shard_results": [{"shard": r.shard, "node": r.node, **r.summary} for r in results],
        "site": check.site,
    }


def plural(k: int, noun: str) -> str:
    return f"{k} {noun}" if k == 1 else f"{k} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"


def say(args: argparse.Namespace, line: str) -> None:
    if not args.quiet:
        print(f"atlas_ray: {line}", file=sys.stderr)


# ---------------------------------------------------------------- command line


def natural(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expects a whole number, got `{text}`")
    return int(text)


def positive(text: str) -> int:
    if natural(text) == 0:
        raise argparse.ArgumentTypeError("expects a number of at least 1")
    return int(text)


def main() -> int:
    parser = argparse.ArgumentParser(prog="tools/atlas_ray.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("setup", help=f"install {RAY_REQUIREMENT} into {VENV.name}/").set_defaults(func=setup)

    p = commands.add_parser("run", help="render an atlas with one Ray task per shard")
    p.set_defaults(func=run)
    p.add_argument("--out", required=True, metavar="DIR", help="the atlas folder, on a filesystem every node shares")
    p.add_argument("--shards", type=positive, metavar="N", help="[default: the tasks the cluster runs at once]")
    p.add_argument("--address", help="Ray cluster (host:port or ray://host:10001) [default: RAY_ADDRESS, else a local instance]")
    p.add_argument("--gpus-per-task", type=float, metavar="G", help="[default: 1 when the cluster has GPUs, else 0]")
    p.add_argument("--featvis", default=str(REPO / "target/release/featvis"), metavar="PATH",
                   help="the featvis binary, same path on every node [default: %(default)s]")
    p.add_argument("--max-retries", type=natural, default=3, metavar="N",
                   help="retries of a shard whose worker, node or featvis died [default: 3]")
    p.add_argument("--json", action="store_true", help="one JSON summary on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    f = p.add_argument_group("featvis atlas options, passed on (featvis's defaults where left out)")
    f.add_argument("--weights", default=str(REPO / "www/weights/vgg16-imagenet.safetensors"), metavar="FILE",
                   help="same path on every node [default: %(default)s]")
    f.add_argument("--random-weights", action="store_true")
    f.add_argument("--layers")
    f.add_argument("--channels")
    for name in ("size", "steps", "batch"):
        f.add_argument(f"--{name}", type=positive)
    f.add_argument("--seed", type=natural)
    f.add_argument("--preset", choices=["distill", "lucid"])
    f.add_argument("--transforms", choices=["distill", "lucid", "none"])
    f.add_argument("--param", choices=["fft", "pixel"])
    f.add_argument("--lr", type=float)

    e = commands.add_parser("estimate", help="the FLOP model's time for an atlas on N GPUs")
    e.set_defaults(func=estimate)
    e.add_argument("--gpus", default="1,8,64", help="comma list of GPU counts [default: %(default)s]")
    e.add_argument("--tflops", type=float, help="one GPU's fp32 peak TFLOP/s [default: a table of common GPUs]")
    e.add_argument("--efficiency", type=float, default=0.3, help="share of the peak the kernels reach [default: %(default)s]")
    e.add_argument("--layers", default="all")
    e.add_argument("--channels", default="all")
    e.add_argument("--size", type=int, default=128, help="[default: %(default)s, the atlas's]")
    e.add_argument("--steps", type=int, default=2560, help="[default: %(default)s, the distill preset's]")
    e.add_argument("--batch", type=int, default=16, help="[default: %(default)s]")

    args = parser.parse_args()
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
