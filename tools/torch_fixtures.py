#!/usr/bin/env python3
"""Writes the committed fixtures of tests/inflate.rs and tests/weights_torch.rs
into tests/fixtures/torch/. Needs only the Python standard library (zlib,
pickle, struct, zipfile): torch is NOT installed here and is not needed. The
.pth fixtures mimic torch.save's byte format (zip of stored members aligned to
64 bytes, pickle protocol 2 with persistent ids) using stand-in classes whose
pickled names are torch's own.

Run from the repository root:  python3 tools/torch_fixtures.py
The output is deterministic; rerunning it must leave git clean.
"""
import os
import struct
import sys
import zlib

OUT = os.path.join("tests", "fixtures", "torch")
VERSION = 1


def lcg(seed):
    """The generator tests/inflate.rs reproduces: x = x * 1103515245 + 12345 mod 2^31."""
    x = seed
    while True:
        x = (x * 1103515245 + 12345) % (1 << 31)
        yield x >> 16


def words_text(n, seed=12345):
    words = [b"feature", b"visualization", b"of", b"vgg16", b"conv", b"layer", b"channel",
             b"neuron", b"the", b"a", b"gradient", b"fourier"]
    g = lcg(seed)
    out = bytearray()
    for i in range(n):
        out += words[next(g) % len(words)]
        out += b"\n" if i % 13 == 12 else b" "
    return bytes(out)


def noise(n, seed=777):
    g = lcg(seed)
    return bytes(next(g) & 0xFF for _ in range(n))


def inflate_inputs():
    """Same as `inputs()` in tests/inflate.rs."""
    text = words_text(6000)
    return {
        "empty": b"",
        "noise": noise(4000),
        "text": text,
        "mixed": noise(300) + bytes(5000) + text[:3000] + noise(200, 5) + b"ab" * 700,
    }


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def inflate_fixtures():
    manifest = [f"# featvis inflate fixtures, version {VERSION}, written by tools/torch_fixtures.py",
                f"# python {sys.version.split()[0]}, zlib {zlib.ZLIB_VERSION}",
                "# file  input  kind  level  strategy  compressed-bytes"]
    strategies = {"default": zlib.Z_DEFAULT_STRATEGY, "fixed": zlib.Z_FIXED,
                  "huffman": zlib.Z_HUFFMAN_ONLY, "rle": zlib.Z_RLE}
    for name, data in inflate_inputs().items():
        for level, sname in ((0, "default"), (1, "default"), (9, "default"), (9, "fixed"),
                             (6, "huffman"), (6, "rle")):
            for kind, wbits in (("zlib", 15), ("raw", -15)):
                if kind == "raw" and not (level == 9 and sname == "default"):
                    continue
                c = zlib.compressobj(level, zlib.DEFLATED, wbits, 8, strategies[sname])
                z = c.compress(data) + c.flush()
                fname = f"{name}-{kind}-{level}-{sname}.z"
                write(fname, z)
                manifest.append(f"{fname} {name} {kind} {level} {sname} {len(z)}")
    with open(os.path.join(OUT, "inflate-manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    inflate_fixtures()


if __name__ == "__main__":
    main()
