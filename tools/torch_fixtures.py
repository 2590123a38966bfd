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
VERSION = 2


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


# --- torch.save's format, without torch -------------------------------------

def fake_torch():
    """Stand-ins registered as torch, torch._utils so that pickle writes (and
    can verify) the same GLOBAL names torch.save does."""
    import types
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks):
        raise RuntimeError("stand-in: never called")

    def _rebuild_tensor(storage, storage_offset, size, stride):
        raise RuntimeError("stand-in: never called")

    for f in (_rebuild_tensor_v2, _rebuild_tensor):
        f.__module__ = "torch._utils"
        f.__qualname__ = f.__name__
        setattr(utils, f.__name__, f)
    for name in ("FloatStorage", "HalfStorage"):
        cls = type(name, (), {"__module__": "torch", "__qualname__": name})
        setattr(torch, name, cls)
    torch._utils = utils
    sys.modules["torch"] = torch
    sys.modules["torch._utils"] = utils
    return torch, utils


class Storage:
    def __init__(self, cls, key, fmt, values):
        self.cls, self.key, self.values = cls, key, list(values)
        self.data = struct.pack("<%d%s" % (len(self.values), fmt), *self.values)


class Tensor:
    """Pickles as torch.Tensor.__reduce_ex__ does for a state dict entry
    (torch >= 0.4); with old=True as torch 0.3's _TensorBase.__reduce__ did."""

    def __init__(self, storage, offset, size, stride, old=False):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)
        self.old = old

    def __reduce_ex__(self, protocol):
        from collections import OrderedDict
        utils = sys.modules["torch._utils"]
        if self.old:
            return (utils._rebuild_tensor, (self.storage, self.offset, self.size, self.stride))
        return (utils._rebuild_tensor_v2, (self.storage, self.offset, self.size, self.stride, False, OrderedDict()))


def torch_pickle(obj):
    import io
    import pickle

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                return ("storage", o.cls, o.key, "cpu", len(o.values))
            return None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)  # torch's DEFAULT_PROTOCOL is 2
    return buf.getvalue()


MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
PROTOCOL_VERSION = 1001


def torch_legacy(obj):
    """torch.serialization._legacy_save: magic number, protocol version and
    sys_info pickles, the object (persistent ids with view_metadata None), the
    sorted list of storage keys, then per key an int64 element count and the
    storage's bytes."""
    import io
    import pickle
    serialized = {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                serialized[o.key] = o
                return ("storage", o.cls, o.key, "cpu", len(o.values), None)
            return None

    f = io.BytesIO()
    sys_info = dict(protocol_version=PROTOCOL_VERSION, little_endian=sys.byteorder == "little",
                    type_sizes=dict(short=2, int=4, long=8))
    pickle.dump(MAGIC_NUMBER, f, protocol=2)
    pickle.dump(PROTOCOL_VERSION, f, protocol=2)
    pickle.dump(sys_info, f, protocol=2)
    Pickler(f, protocol=2).dump(obj)
    keys = sorted(serialized.keys())
    pickle.dump(keys, f, protocol=2)
    for key in keys:
        st = serialized[key]
        f.write(struct.pack("<q", len(st.values)))
        f.write(st.data)
    return f.getvalue()


def torch_zip(prefix, records, zip64=True):
    """A zip as torch's PyTorchStreamWriter lays it out: stored members whose
    data start on 64-byte boundaries (padding in an "FB" extra field), then
    the central directory; with zip64=True every data member's central entry
    carries zip64 sizes/offset and the archive ends with the zip64 end record
    and locator before the classic end record."""
    out = bytearray()
    central = bytearray()
    for name, data in records:
        full = (prefix + "/" + name).encode()
        crc = zlib.crc32(data) & 0xFFFFFFFF
        offset = len(out)
        pad = (-(offset + 30 + len(full) + 4)) % 64
        extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, crc, len(data), len(data), len(full), len(extra))
        out += full + extra
        assert len(out) % 64 == 0
        out += data
        big = zip64 and name.startswith("data/")
        if big:
            cextra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
            csize = usize = off = 0xFFFFFFFF
        else:
            cextra, csize, usize, off = b"", len(data), len(data), offset
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45 if big else 20, 20, 0, 0, 0, 0x21, crc,
                               csize, usize, len(full), len(cextra), 0, 0, 0, 0, off)
        central += full + cextra
    cd_offset = len(out)
    out += central
    n = len(records)
    if zip64:
        z64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(central), cd_offset)
        out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), cd_offset, 0)
    return bytes(out)


# A narrow VGG16: same layers and key names, fewer channels (see
# NARROW in tests/weights_torch.rs).
NARROW_WIDTHS = [4, 4, 6, 6, 8, 8, 8, 8, 8, 8, 8, 8, 8]
NARROW_FC = [16, 16, 10]
FEATURES = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def narrow_state_dict():
    """(name, shape, values) in torchvision's layout, values rounded to f32."""
    import random
    rng = random.Random(2024)
    f32 = lambda v: struct.unpack("<f", struct.pack("<f", v))[0]
    tensors = []
    cin = 3
    for idx, cout in zip(FEATURES, NARROW_WIDTHS):
        tensors.append((f"features.{idx}.weight", (cout, cin, 3, 3), [f32(rng.gauss(0, 0.3)) for _ in range(cout * cin * 9)]))
        tensors.append((f"features.{idx}.bias", (cout,), [f32(rng.gauss(0, 0.1)) for _ in range(cout)]))
        cin = cout
    inputs = cin * 49
    for idx, outputs in zip((0, 3, 6), NARROW_FC):
        tensors.append((f"classifier.{idx}.weight", (outputs, inputs), [f32(rng.gauss(0, 0.05)) for _ in range(outputs * inputs)]))
        tensors.append((f"classifier.{idx}.bias", (outputs,), [f32(rng.gauss(0, 0.1)) for _ in range(outputs)]))
        inputs = outputs
    return tensors


def half(v):
    return struct.unpack("<e", struct.pack("<e", v))[0]


def narrow_pth_state_dict(torch, old=False):
    """The narrow state dict as stand-in tensors, with the cases a real file
    can hold: two biases sharing one storage at different offsets, a
    transposed (non-contiguous) weight, a half tensor. old=False: as torch
    >= 0.4 saves it (storage keys "0", "1", …, _rebuild_tensor_v2, the
    OrderedDict's _metadata); old=True: as torch 0.3 did (keys are the
    storages' addresses, _rebuild_tensor, no _metadata)."""
    from collections import OrderedDict
    tensors = narrow_state_dict()
    sd = OrderedDict()
    meta = OrderedDict([("", {"version": 1}), ("features", {"version": 1}), ("classifier", {"version": 1})])
    storages = []
    expected = []
    shared = None
    mk = lambda *a: Tensor(*a, old=old)
    for name, shape, values in tensors:
        key = str(94_000_000_000_000 + 73_728 * (len(storages) * 7919 % 41)) if old else str(len(storages))
        if name == "features.0.bias":
            # features.0.bias and features.2.bias live in one storage.
            nxt = next(t for t in tensors if t[0] == "features.2.bias")
            st = Storage(torch.FloatStorage, key, "f", values + nxt[2])
            storages.append(st)
            shared = st
            t = mk(st, 0, shape, (1,))
        elif name == "features.2.bias":
            t = mk(shared, len(tensors[1][2]), shape, (1,))
        elif name == "classifier.3.weight":
            # Stored as its transpose: size (out, in), stride (1, out).
            out_, in_ = shape
            tr = [values[o * in_ + i] for i in range(in_) for o in range(out_)]
            st = Storage(torch.FloatStorage, key, "f", tr)
            storages.append(st)
            t = mk(st, 0, shape, (1, out_))
        elif name == "classifier.6.bias":
            values = [half(v) for v in values]
            st = Storage(torch.HalfStorage, key, "e", values)
            storages.append(st)
            t = mk(st, 0, shape, (1,))
        else:
            st = Storage(torch.FloatStorage, key, "f", values)
            storages.append(st)
            stride = []
            acc = 1
            for d in reversed(shape):
                stride.insert(0, acc)
                acc *= d
            t = mk(st, 0, shape, stride)
        sd[name] = t
        expected.append((name, shape, values))
    if not old:
        sd._metadata = meta
    return sd, storages, expected


def pth_fixture(torch):
    """narrow-vgg16.pth (zip format), narrow-vgg16-legacy.pth (legacy format,
    torch 1.x) and narrow-vgg16-legacy-0.3.pth (legacy format, torch 0.3 as
    torchvision's vgg16-397923af.pth): the same tensors."""
    sd, storages, expected = narrow_pth_state_dict(torch)
    write("narrow-vgg16-legacy.pth", torch_legacy(sd))
    sd_old, _, expected_old = narrow_pth_state_dict(torch, old=True)
    assert expected_old == expected
    write("narrow-vgg16-legacy-0.3.pth", torch_legacy(sd_old))
    pkl = torch_pickle(sd)
    records = [("data.pkl", pkl), (".format_version", b"1"), (".storage_alignment", b"64"), ("byteorder", b"little")]
    records += [(f"data/{st.key}", st.data) for st in storages]
    records += [("version", b"3\n"), (".data/serialization_id", b"0123456789012345678901234567890123456789")]
    write("narrow-vgg16.pth", torch_zip("vgg16-397923af", records, zip64=True))
    return expected


def contiguous_pth(torch, tensors, prefix, legacy=False, fmt="f", raw=None):
    """A zip-format (or legacy) .pth of contiguous tensors, one storage each.
    `raw(values)` gives a storage's bytes when the values are not a list."""
    from collections import OrderedDict
    sd = OrderedDict()
    storages = []
    for i, (name, shape, values) in enumerate(tensors):
        st = Storage.__new__(Storage)
        st.cls, st.key = torch.FloatStorage, str(i)
        st.values = values
        st.data = raw(values) if raw else struct.pack("<%d%s" % (len(values), fmt), *values)
        storages.append(st)
        stride, acc = [], 1
        for d in reversed(shape):
            stride.insert(0, acc)
            acc *= d
        sd[name] = Tensor(st, 0, shape, stride)
    sd._metadata = OrderedDict([("", {"version": 1})])
    if legacy:
        return torch_legacy(sd)
    records = [("data.pkl", torch_pickle(sd)), (".format_version", b"1"), (".storage_alignment", b"64"),
               ("byteorder", b"little")]
    records += [(f"data/{st.key}", st.data) for st in storages]
    records += [("version", b"3\n"), (".data/serialization_id", b"0123456789012345678901234567890123456789")]
    return torch_zip(prefix, records, zip64=True)


def full_size(folder):
    """Full-size torchvision vgg16 files with random values, for timing."""
    import numpy as np
    torch, _ = fake_torch()
    rng = np.random.default_rng(16)
    tensors = []
    cin = 3
    for idx, cout in zip(FEATURES, [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]):
        tensors.append((f"features.{idx}.weight", (cout, cin, 3, 3)))
        tensors.append((f"features.{idx}.bias", (cout,)))
        cin = cout
    for idx, (o, i) in zip((0, 3, 6), ((4096, 25088), (4096, 4096), (1000, 4096))):
        tensors.append((f"classifier.{idx}.weight", (o, i)))
        tensors.append((f"classifier.{idx}.bias", (o,)))
    arrays = []
    for name, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        arrays.append((name, shape, (rng.standard_normal(n, dtype=np.float32) * 0.01)))
    total = sum(a.size for _, _, a in arrays)
    assert total == 138_357_544, total

    class Values(list):
        """len() of the array without materializing a list."""
        def __init__(self, a):
            self.a = a

        def __len__(self):
            return self.a.size

    items = [(n, s, Values(a)) for n, s, a in arrays]
    raw = lambda v: v.a.astype("<f4").tobytes()
    os.makedirs(folder, exist_ok=True)
    for fname, legacy in (("vgg16-legacy.pth", True), ("vgg16-zip.pth", False)):
        data = contiguous_pth(torch, items, "vgg16-397923af", legacy=legacy, raw=raw)
        with open(os.path.join(folder, fname), "wb") as f:
            f.write(data)
        print(f"{folder}/{fname}: {len(data)} bytes, {total} parameters")


def safetensors_bytes(tensors, metadata):
    import json
    header = {}
    data = bytearray()
    for name, shape, values in tensors:
        begin = len(data)
        data += struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [begin, len(data)]}
    header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + bytes(data)


def torch_fixtures():
    torch, _ = fake_torch()
    expected = pth_fixture(torch)
    # The same tensors, torchvision-named, as plain safetensors: the expected
    # values of narrow-vgg16.pth, and the torchvision-named safetensors case.
    write("narrow-vgg16-torchvision.safetensors", safetensors_bytes(expected, {"format": "pt"}))
    # timm's naming: the classifier as pre_logits.fc1 (a 7×7 convolution),
    # pre_logits.fc2 (1×1) and head.fc.
    timm = []
    for name, shape, values in expected:
        if name == "classifier.0.weight":
            name, shape = "pre_logits.fc1.weight", (shape[0], shape[1] // 49, 7, 7)
        elif name == "classifier.0.bias":
            name = "pre_logits.fc1.bias"
        elif name == "classifier.3.weight":
            name, shape = "pre_logits.fc2.weight", (shape[0], shape[1], 1, 1)
        elif name == "classifier.3.bias":
            name = "pre_logits.fc2.bias"
        elif name.startswith("classifier.6."):
            name = "head.fc." + name.split(".")[-1]
        timm.append((name, shape, values))
    write("narrow-vgg16-timm.safetensors", safetensors_bytes(timm, {"format": "pt"}))
    write("narrow-vgg16-timm.pth", contiguous_pth(torch, timm, "vgg16_timm"))
    lines = [f"# featvis torch fixtures, version {VERSION}, written by tools/torch_fixtures.py (torch not needed)",
             "# narrow-vgg16.pth: features.N / classifier.N of a narrow vgg16, widths " + ",".join(map(str, NARROW_WIDTHS))
             + " fc " + ",".join(map(str, NARROW_FC)),
             "# narrow-vgg16-legacy.pth, narrow-vgg16-legacy-0.3.pth: the same tensors in torch's legacy format"
             " (torch 1.x _legacy_save; torch 0.3 with _rebuild_tensor and address keys)",
             "# narrow-vgg16-timm.pth: the same tensors with timm's names (pre_logits.fc1/fc2 as convolutions, head.fc)",
             "# name shape first-value"]
    for name, shape, values in expected:
        lines.append(f"{name} {'x'.join(map(str, shape))} {values[0]!r}")
    with open(os.path.join(OUT, "torch-manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--full":
        full_size(sys.argv[2])
        return
    os.makedirs(OUT, exist_ok=True)
    inflate_fixtures()
    torch_fixtures()


if __name__ == "__main__":
    main()
