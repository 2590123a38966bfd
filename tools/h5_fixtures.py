#!/usr/bin/env python3
"""Writes the committed fixtures of tests/weights_h5.rs into tests/fixtures/h5/.
Needs h5py and numpy (no keras, no tensorflow): the files reproduce the
layouts Keras writes (`model.save_weights(...h5)`, `model.save(...h5)` with
the weights under `model_weights/`, the Keras 1 names of the downloadable
vgg16_weights_tf_dim_ordering_tf_kernels*.h5, keras_vggface's VGG16) with
random weights and narrow channels, and one file of another architecture.

Run from the repository root:  python3 tools/h5_fixtures.py
(h5py 3.16 in a virtual environment: python3 -m venv /tmp/h5venv &&
/tmp/h5venv/bin/pip install h5py==3.16.0 numpy). The output is deterministic
(fixed seeds, no timestamps); rerunning it must leave git clean.
"""
import hashlib
import json
import os

import h5py
import numpy as np

OUT = os.path.join("tests", "fixtures", "h5")
VERSION = 1
NARROW = [4, 4, 6, 6, 8, 8, 8, 8, 8, 8, 8, 8, 8]
NARROW_FC = [16, 16, 10]
KERAS_CONVS = ["block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1", "block3_conv2",
               "block3_conv3", "block4_conv1", "block4_conv2", "block4_conv3", "block5_conv1", "block5_conv2",
               "block5_conv3"]
FACE_CONVS = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2",
              "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
OURS = FACE_CONVS
POOL_AFTER = {1, 3, 6, 9, 12}
MANIFEST = []


def weights(seed, widths, fc, dtype=np.float32):
    """[(conv or fc index, kernel, bias)] of a VGG16 with the given widths, Keras layouts."""
    rng = np.random.default_rng(seed)
    out = []
    cin = 3
    for cout in widths:
        out.append((rng.standard_normal((3, 3, cin, cout)).astype(dtype) * 0.5, rng.standard_normal(cout).astype(dtype)))
        cin = cout
    if fc:
        inputs = cin * 49
        for outputs in fc:
            out.append((rng.standard_normal((inputs, outputs)).astype(dtype) * 0.1, rng.standard_normal(outputs).astype(dtype)))
            inputs = outputs
    return out


def keras_layers(conv_names, fc_names, pool_names, top):
    """The layer list of a Keras functional VGG16: (name, weighted index or None)."""
    layers = [("input_1", None)]
    for i, n in enumerate(conv_names):
        layers.append((n, i))
        if i in POOL_AFTER:
            layers.append((pool_names[len([p for p in POOL_AFTER if p < i])], None))
    if top:
        layers.append(("flatten", None))
        for j, n in enumerate(fc_names):
            layers.append((n, 13 + j))
    return layers


def record(fname, path, ours, arr):
    a = np.asarray(arr, dtype=np.float64)
    flat = a.reshape(-1)
    bits = np.asarray(arr, dtype=np.float32).reshape(-1).view(np.uint32)
    MANIFEST.append(f"{fname} {path} {ours} {'x'.join(map(str, a.shape)) or '-'} {bits[0]:08x} {bits[-1]:08x} "
                    f"{repr(float(flat.sum()))}")


def write_keras(fname, layers, ws, weight_name, where="", libver=None, ds_opts=lambda i, part: {},
                ours_names=None, extra_root_attrs=None, str_attrs_vlen=False):
    """`where`: "" for save_weights, "model_weights" for model.save."""
    kwargs = {"libver": libver} if libver else {}
    with h5py.File(os.path.join(OUT, fname), "w", track_order=None, **kwargs) as f:
        if extra_root_attrs:
            for k, v in extra_root_attrs.items():
                f.attrs[k] = v
        g = f.create_group(where) if where else f
        g.attrs["backend"] = b"tensorflow"
        g.attrs["keras_version"] = b"2.11.0"
        g.attrs["layer_names"] = np.array([n.encode() for n, _ in layers])
        for name, wi in layers:
            lg = g.create_group(name)
            if wi is None:
                lg.attrs["weight_names"] = np.zeros(0)  # what Keras writes for []
                continue
            kernel, bias = ws[wi]
            names = [weight_name(name, "kernel"), weight_name(name, "bias")]
            lg.attrs["weight_names"] = np.array([n.encode() for n in names])
            ours = (ours_names or OURS + ["fc6", "fc7", "fc8"])[wi]
            for part, wname, arr in [("kernel", names[0], kernel), ("bias", names[1], bias)]:
                lg.create_dataset(wname, data=arr, **ds_opts(wi, part))
                record(fname, f"{where + '/' if where else ''}{name}/{wname}", f"{ours}.{'weight' if part == 'kernel' else 'bias'}", arr)


def main():
    os.makedirs(OUT, exist_ok=True)
    keras_top = keras_layers(KERAS_CONVS, ["fc1", "fc2", "predictions"],
                             ["block1_pool", "block2_pool", "block3_pool", "block4_pool", "block5_pool"], True)
    keras_notop = keras_layers(KERAS_CONVS, [], ["block1_pool", "block2_pool", "block3_pool", "block4_pool", "block5_pool"], False)

    # 1. save_weights, old-style groups, contiguous, names "…/kernel:0".
    write_keras("keras-vgg16-top.h5", keras_top, weights(1, NARROW, NARROW_FC), lambda l, p: f"{l}/{p}:0")

    # 2. model.save: weights under model_weights/, a JSON model_config (variable-length
    #    string in the global heap), chunked + gzip (+ shuffle on kernels), names without ":0".
    def chunked(i, part):
        if i % 3 != 0:
            return {}
        return {"chunks": True, "compression": "gzip", "compression_opts": 6, "shuffle": part == "kernel"}
    config = json.dumps({"class_name": "Functional", "config": {"name": "vgg16", "layers": [n for n, _ in keras_notop]}})
    write_keras("keras-vgg16-notop-model.h5", keras_notop, weights(2, NARROW, None), lambda l, p: f"{l}/{p}",
                where="model_weights", ds_opts=chunked,
                extra_root_attrs={"model_config": config, "keras_version": "2.11.0", "backend": "tensorflow"})

    # 3. libver="latest": superblock v3, object header v2, link messages, layout
    #    v4; Keras 1 names as in vgg16_weights_tf_dim_ordering_tf_kernels.h5.
    def mixed(i, part):
        if i % 3 == 1:
            return {"chunks": True, "compression": "gzip"}  # fixed-array chunk index
        if i % 3 == 2 and part == "kernel":
            return {"chunks": tuple(1 for _ in range(2 if i >= 13 else 4))[:-1] + ((NARROW + NARROW_FC)[i],),
                    "compression": "gzip", "compression_opts": 1}
        return {}
    write_keras("keras-vgg16-latest.h5", keras_top, weights(3, NARROW, NARROW_FC),
                lambda l, p: f"{l}_{'W' if p == 'kernel' else 'b'}_1:0", libver="latest", ds_opts=mixed)

    # 4. keras_vggface VGG16: conv1_1 … fc8, with relu/softmax layers named
    #    "fc6/relu" (groups nested in fc6), fc8 of 10 classes.
    face = [("input_1", None)]
    pools = iter(["pool1", "pool2", "pool3", "pool4", "pool5"])
    for i, n in enumerate(FACE_CONVS):
        face.append((n, i))
        if i in POOL_AFTER:
            face.append((next(pools), None))
    face += [("flatten", None), ("fc6", 13), ("fc6/relu", None), ("fc7", 14), ("fc7/relu", None), ("fc8", 15),
             ("fc8/softmax", None)]
    write_keras("vggface-vgg16.h5", face, weights(4, NARROW, NARROW_FC), lambda l, p: f"{l}/{p}:0",
                ds_opts=lambda i, part: {"chunks": True, "compression": "gzip"} if i == 13 else {})

    # 5. Another architecture (ResNet-like names).
    res = [("input_1", None), ("conv1", 0), ("bn_conv1", None), ("res2a_branch2a", 1), ("fc1000", 13)]
    ws = weights(5, NARROW, NARROW_FC)
    write_keras("resnet-like.h5", res, ws, lambda l, p: f"{l}/{p}:0",
                ours_names=["conv1", "res2a_branch2a"] + [""] * 11 + ["fc1000"])

    # 6. Full-size VGG16 trunk (Keras names), libver latest, one chunk per tensor
    #    (single-chunk index) + gzip, patterned values
    #    that compress ~1000:1 so the file stays small.
    full = []
    cin = 3
    for i, cout in enumerate([64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]):
        n = 9 * cin * cout
        # A constant per layer, every 4099th value different (runs compress well).
        idx = np.arange(n, dtype=np.int64)
        k = np.where(idx % 4099 == 0, (idx // 4099 % 97 - 48) / 32, (i - 6) / 16).astype(np.float32)
        b = ((np.arange(cout, dtype=np.int64) * 3 + i) % 11 - 5).astype(np.float32) / 8
        full.append((k.reshape(3, 3, cin, cout), b))
        cin = cout
    write_keras("keras-vgg16-full-notop.h5", keras_notop, full, lambda l, p: f"{l}/{p}:0", libver="latest",
                ds_opts=lambda i, part: {"chunks": full[i][0 if part == "kernel" else 1].shape, "compression": "gzip",
                                         "compression_opts": 9})

    # 7. The Keras 3 `.weights.h5` layout (layers/<name>/vars/0 kernel, 1 bias), trunk only.
    fname = "keras3-vgg16-notop.weights.h5"
    with h5py.File(os.path.join(OUT, fname), "w") as f:
        f.attrs["keras_version"] = "3.3.3"
        layers = f.create_group("layers")
        for name, wi in keras_notop:
            g = layers.create_group(name).create_group("vars")
            if wi is None:
                continue
            for j, arr in enumerate(weights(7, NARROW, None)[wi]):
                g.create_dataset(str(j), data=arr)
                record(fname, f"layers/{name}/vars/{j}", f"{OURS[wi]}.{'weight' if j == 0 else 'bias'}", arr)
        f.create_group("optimizer").create_group("vars")
        f.create_group("vars")

    # 8. Datatypes, layouts and attributes the reader supports (and some it refuses).
    fname = "types.h5"
    with h5py.File(os.path.join(OUT, fname), "w") as f:
        v = (np.arange(24, dtype=np.float64).reshape(2, 3, 4) - 11.5) / 3
        f.create_dataset("f32le", data=v.astype("<f4"))
        f.create_dataset("f32be", data=v.astype(">f4"))
        f.create_dataset("f16", data=v.astype("<f2"))
        f.create_dataset("f64", data=v)
        f.create_dataset("f64be_chunked", data=v.astype(">f8"), chunks=(1, 2, 3), compression="gzip", shuffle=True)
        f.create_dataset("f32_fletcher", data=v.astype("<f4"), chunks=(2, 3, 2), fletcher32=True)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        dcpl.set_obj_track_times(False)
        space = h5py.h5s.create_simple((2, 3, 4))
        h5py.h5d.create(f.id, b"compact", h5py.h5t.IEEE_F32LE, space, dcpl=dcpl).write(
            h5py.h5s.ALL, h5py.h5s.ALL, v.astype("<f4"))
        f.create_dataset("i32", data=np.arange(6, dtype=np.int32))
        f.create_dataset("empty", shape=(0, 4), dtype="<f4")
        f.create_dataset("unwritten", shape=(3,), dtype="<f4", chunks=(2,))
        f.attrs["fixed"] = np.array([b"alpha", b"be", b"gamma_delta"])
        f.attrs["vlen"] = ["one", "two", "three\u00e9"]
        f.attrs["scalar_str"] = "hello"
        f.attrs["scalar_bytes"] = np.bytes_(b"abc")
        f.attrs["floats"] = np.array([1.5, -2.25], dtype=np.float32)
        f["sub/deeper/x"] = np.float32([7.0])
        f["soft"] = h5py.SoftLink("/sub/deeper/x")
        for name in ["f32le", "f32be", "f16", "f64", "f64be_chunked", "f32_fletcher", "compact"]:
            record(fname, name, "-", f[name][()])

    with open(os.path.join(OUT, "h5-manifest.txt"), "w") as m:
        m.write(f"# featvis h5 fixtures, version {VERSION}, written by tools/h5_fixtures.py\n")
        m.write(f"# h5py {h5py.__version__}, HDF5 {h5py.version.hdf5_version}, numpy {np.__version__}\n")
        m.write("# file  dataset-path  our-name  shape  first  last (f32 bits, hex)  sum (f64 of the stored values)\n")
        for line in MANIFEST:
            m.write(line + "\n")
        m.write("# sha256 of each fixture\n")
        for fn in sorted(os.listdir(OUT)):
            if fn.endswith(".h5"):  # also .weights.h5
                with open(os.path.join(OUT, fn), "rb") as fh:
                    m.write(f"# {fn} {hashlib.sha256(fh.read()).hexdigest()}\n")


if __name__ == "__main__":
    main()
