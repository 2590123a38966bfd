#!/usr/bin/env python3
"""tools/atlas_ray.py on a real Ray cluster, with a worker and a featvis killed mid-run.

A head (no CPUs) and two worker nodes with one CPU each, started with
`ray start` on this machine; an atlas of conv1_1 and conv2_1, channels 0-3,
one channel per group (8 groups), 4 shards. While it runs, the test SIGKILLs
the Ray worker that runs one shard (its featvis must die with it) and, in
another shard, featvis itself between its two groups. It checks that both
shards were retried (the second one resuming after its done group), that
every channel has exactly one record, that every PNG equals a
single-process `featvis atlas` of the same settings byte for byte, and that
the site was written.

The whole test runs in a network namespace of its own with only the
loopback interface (`unshare --net`), so the cluster can reach nothing but
itself, and it is the subreaper of everything it starts: at the end it
kills the process groups of its `ray start`s and reaps them (never `ray
stop`, which would stop every Ray instance of the machine).

    tools/atlas_ray.py setup && python3 tests/ray/atlas_ray_test.py
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RAY = REPO / ".ray-venv" / "bin" / "ray"
PYTHON = REPO / ".ray-venv" / "bin" / "python"
FEATVIS = Path(os.environ.get("FEATVIS", REPO / "target/release/featvis"))
WEIGHTS = REPO / "www/weights/vgg16-imagenet-f16.safetensors"
LAYERS = ["conv1_1", "conv2_1"]
CHANNELS = 4
SHARDS = 4
ATLAS = ["--layers", ",".join(LAYERS), "--channels", f"0-{CHANNELS - 1}", "--batch", "1",
         "--size", "32", "--steps", "40", "--seed", "1", "--weights", str(WEIGHTS)]
DEADLINE_S = 150


class Failed(Exception):
    pass


def check(ok: bool, message: str) -> None:
    if not ok:
        raise Failed(message)


def loopback_only() -> None:
    """Re-run this test in a new network namespace (only `lo`, brought up here)."""
    if os.environ.get("FEATVIS_RAY_NETNS") != "1":
        unshare = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--net"]
        env = {**os.environ, "FEATVIS_RAY_NETNS": "1"}
        try:
            sys.exit(subprocess.run([*unshare, sys.executable, __file__], env=env).returncode)
        except FileNotFoundError:
            raise Failed("`unshare` (util-linux) is needed to give the test cluster a network of its own") from None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    siocsifflags, iff_up, iff_loopback, iff_running = 0x8914, 0x1, 0x8, 0x40
    fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", iff_up | iff_loopback | iff_running))
    sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in "ZX"


def featvis_shards(out: Path) -> dict[int, int]:
    """Running `featvis atlas --out OUT` processes: pid → shard number."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        ours = len(argv) > 3 and argv[1] == "atlas" and "--out" in argv and argv[argv.index("--out") + 1] == str(out)
        if ours and alive(int(entry.name)):
            found[int(entry.name)] = int(argv[argv.index("--shard") + 1].split("/")[0])
    return found


def channel_done(out: Path, layer: str, shard: int) -> bool:
    # One channel per group, so shard I renders channel I-1 of each layer.
    return (out / layer / f"{shard - 1}.json").exists()


def kill_during_run(driver: subprocess.Popen[bytes], out: Path) -> tuple[int, int]:
    """SIGKILL one shard's Ray worker, then another shard's featvis between its
    two groups; the two shards."""
    worker_killed = featvis_killed = 0
    deadline = time.monotonic() + DEADLINE_S
    while driver.poll() is None and time.monotonic() < deadline and not featvis_killed:
        running = featvis_shards(out)
        if not worker_killed and running:
            pid, shard = next(iter(running.items()))
            stat = proc_stat(pid)
            worker = stat[1] if stat else 0
            if worker and Path(f"/proc/{worker}/cmdline").read_bytes().startswith(b"ray::"):
                os.kill(worker, signal.SIGKILL)
                worker_killed = shard
                gone = time.monotonic() + 10
                while alive(pid) and time.monotonic() < gone:
                    time.sleep(0.02)
                check(not alive(pid), f"featvis (pid {pid}) outlived its killed Ray worker (pid {worker})")
                print(f"  killed the Ray worker (pid {worker}) of shard {shard}/{SHARDS}; its featvis (pid {pid}) died with it")
        elif worker_killed:
            for pid, shard in running.items():
                if shard != worker_killed and channel_done(out, LAYERS[0], shard) and not channel_done(out, LAYERS[1], shard):
                    os.kill(pid, signal.SIGKILL)
                    featvis_killed = shard
                    print(f"  killed featvis (pid {pid}) of shard {shard}/{SHARDS} after its first group")
                    break
        time.sleep(0.01)
    check(worker_killed > 0, "no featvis of the atlas was seen running: nothing was killed")
    check(featvis_killed > 0, "no featvis was caught between its two groups: the resume was not exercised")
    return worker_killed, featvis_killed


def compare(ray_dir: Path, single_dir: Path) -> int:
    """Every channel once, and the same PNG bytes as the single process; the PNGs compared."""
    pngs = 0
    for layer in LAYERS:
        records = sorted(p.name for p in (ray_dir / layer).glob("*.json") if p.stem.isdigit())
        check(records == [f"{c}.json" for c in range(CHANNELS)], f"{layer}: channel records {records}")
        names = sorted(p.name for p in (ray_dir / layer).glob("*.png"))
        want = sorted(p.name for p in (single_dir / layer).glob("*.png"))
        check(names == want, f"{layer}: PNGs {names}, single process {want}")
        for name in names:
            same = (ray_dir / layer / name).read_bytes() == (single_dir / layer / name).read_bytes()
            check(same, f"{layer}/{name} differs from the single-process atlas")
            pngs += 1
    check((ray_dir / "index.html").exists(), "the site (index.html) was not written")
    return pngs


def teardown(groups: list[int]) -> list[int]:
    """Stop the cluster: SIGTERM, then SIGKILL, to each `ray start`'s process
    group, and reap every process (this one is their subreaper). The groups left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, sig)
        until = time.monotonic() + 5
        while time.monotonic() < until and any(alive_group(g) for g in groups):
            reap()
            time.sleep(0.05)
    until = time.monotonic() + 5
    while reap() and time.monotonic() < until:
        time.sleep(0.05)
    return [g for g in groups if alive_group(g)]


def reap() -> bool:
    """Reap the children that have ended; whether any child is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def alive_group(group: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group and fields[0] not in "ZX":
                return True
    return False


def main() -> int:
    began = time.monotonic()
    loopback_only()
    check(FEATVIS.exists(), f"{FEATVIS} is missing: cargo build --release --bin featvis")
    check(WEIGHTS.exists(), f"{WEIGHTS} is missing: featvis fetch-weights")
    check(RAY.exists(), "Ray is not installed: tools/atlas_ray.py setup")
    ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: the Ray daemons stay our children
    # Under /tmp whatever TMPDIR says: Ray's socket paths under it must stay short.
    tmp = Path(tempfile.mkdtemp(prefix="fvray-", dir="/tmp")).resolve()
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    groups: list[int] = []
    passed = False
    try:
        t = time.monotonic()
        single = tmp / "single"
        subprocess.run([str(FEATVIS), "atlas", *ATLAS, "--out", str(single), "--quiet"], check=True)
        print(f"  single-process featvis atlas: {time.monotonic() - t:.1f} s")

        t = time.monotonic()
        port = free_port()
        common = ["--object-store-memory=80000000", "--disable-usage-stats"]
        starts = [[str(RAY), "start", "--head", f"--port={port}", "--num-cpus=0", f"--temp-dir={tmp / 'ray'}",
                   "--include-dashboard=false", *common]]
        starts += [[str(RAY), "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", *common]] * 2
        for argv in starts:
            start = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            groups.append(start.pid)
            _, err = start.communicate(timeout=120)
            check(start.returncode == 0, f"{' '.join(argv[1:3])} failed:\n{err.decode()[-2000:]}")
        print(f"  Ray cluster: a head and two 1-CPU worker nodes on 127.0.0.1:{port} in {time.monotonic() - t:.1f} s")

        t = time.monotonic()
        out = tmp / "ray-atlas"
        with (tmp / "driver.out").open("wb") as stdout, (tmp / "driver.err").open("wb") as stderr:
            driver = subprocess.Popen(
                [str(PYTHON), str(REPO / "tools/atlas_ray.py"), "run", "--address", f"127.0.0.1:{port}",
                 "--shards", str(SHARDS), "--max-retries", "3", "--json", *ATLAS, "--out", str(out)],
                stdout=stdout, stderr=stderr,
            )
        try:
            worker_shard, featvis_shard = kill_during_run(driver, out)
            driver.wait(timeout=max(1.0, DEADLINE_S - (time.monotonic() - t)))
        except subprocess.TimeoutExpired:
            raise Failed(f"atlas_ray.py run did not finish in {DEADLINE_S} s") from None
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
        said = (tmp / "driver.err").read_text()
        check(driver.returncode == 0, f"atlas_ray.py run exited {driver.returncode}:\n{said[-3000:]}")
        summary = json.loads((tmp / "driver.out").read_text())
        print(f"  atlas_ray.py run, {SHARDS} shards, 2 kills: {time.monotonic() - t:.1f} s "
              f"(its own count: {summary['seconds']} s, {summary['retries']} retries)")

        outcomes = {(a["shard"], a["outcome"]) for a in summary["attempts"]}
        check((f"{worker_shard}/{SHARDS}", None) in outcomes, f"shard {worker_shard}'s lost attempt is not in {outcomes}")
        killed = (f"{featvis_shard}/{SHARDS}", "featvis killed by SIGKILL")
        check(killed in outcomes, f"shard {featvis_shard}'s killed featvis is not in {outcomes}")
        check(summary["retries"] == 2, f"{summary['retries']} retries, not 2")
        done = {r["shard"]: r for r in summary["shard_results"]}
        check(sorted(done) == [f"{i}/{SHARDS}" for i in range(1, SHARDS + 1)], f"shards done: {sorted(done)}")
        resumed = done[f"{featvis_shard}/{SHARDS}"]
        check(resumed["skipped"] == 1 and resumed["rendered"] == 1, f"shard {featvis_shard} did not resume: {resumed}")
        check(summary["channels"] == len(LAYERS) * CHANNELS, f"{summary['channels']} channels")
        check(not featvis_shards(out), "a featvis of the atlas is still running")
        pngs = compare(out, single)
        print(f"  {summary['channels']} channels once each; {pngs} PNGs byte-equal to the single process; site written")
        passed = True
    finally:
        left = teardown(groups)
        if left:
            print(f"  processes of the Ray cluster are still running (process groups {left})", file=sys.stderr)
        if passed:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"  the atlases, the driver's output and Ray's logs are in {tmp}", file=sys.stderr)
    check(not left, "the Ray cluster did not stop")
    print(f"atlas_ray test passed in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as e:
        print(f"atlas_ray test FAILED: {e}", file=sys.stderr)
        sys.exit(1)
