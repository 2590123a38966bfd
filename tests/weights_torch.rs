//! torchvision .pth state dicts and torchvision/timm-named safetensors →
//! the project's VGG16 weights. The .pth files are written here (zip +
//! pickle bytes, stored and deflated members; the legacy pre-1.6 sequence of
//! pickles) or by tools/torch_fixtures.py,
//! which mimics torch.save's exact byte format without torch. No file system
//! access: fixtures are compiled in, so this also builds for wasm.

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

#[macro_use]
mod weights_common;

use weights_common::{Rng, NARROW, NARROW_FC};

use featvis::model::CONVS;
use featvis::weights::archive;
use featvis::weights::safetensors::{self, Dtype, TensorOut};
use featvis::weights::torch::{self, pickle, RawTensor, FEATURE_INDICES};
use featvis::weights::{convert, NamedTensor, Preprocessing, WeightsError, WeightsFile};

const PY_PTH: &[u8] = include_bytes!("fixtures/torch/narrow-vgg16.pth");
const PY_TORCHVISION_ST: &[u8] = include_bytes!("fixtures/torch/narrow-vgg16-torchvision.safetensors");
const PY_TIMM_ST: &[u8] = include_bytes!("fixtures/torch/narrow-vgg16-timm.safetensors");
const PY_LEGACY: &[u8] = include_bytes!("fixtures/torch/narrow-vgg16-legacy.pth");
const PY_LEGACY_03: &[u8] = include_bytes!("fixtures/torch/narrow-vgg16-legacy-0.3.pth");
const PY_TIMM_PTH: &[u8] = include_bytes!("fixtures/torch/narrow-vgg16-timm.pth");
const PY_MANIFEST: &str = include_str!("fixtures/torch/torch-manifest.txt");

/// A torchvision-layout state dict with the given conv widths (and head when given).
fn state_dict(seed: u64, widths: &[usize; 13], fc: Option<[usize; 3]>) -> Vec<RawTensor> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let mut cin = 3;
    for (&idx, &cout) in FEATURE_INDICES.iter().zip(widths) {
        out.push((format!("features.{idx}.weight"), vec![cout, cin, 3, 3], rng.vec(cout * cin * 9)));
        out.push((format!("features.{idx}.bias"), vec![cout], rng.vec(cout)));
        cin = cout;
    }
    if let Some(fc) = fc {
        let mut inputs = cin * 49;
        for (&idx, &outputs) in [0, 3, 6].iter().zip(&fc) {
            out.push((format!("classifier.{idx}.weight"), vec![outputs, inputs], rng.vec(outputs * inputs)));
            out.push((format!("classifier.{idx}.bias"), vec![outputs], rng.vec(outputs)));
            inputs = outputs;
        }
    }
    out
}

// ---------------------------------------------------------------- writers --

#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl BitWriter {
    fn put(&mut self, v: u32, k: u32) {
        for i in 0..k {
            self.acc |= ((v >> i) & 1) << self.n;
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc as u8);
                self.acc = 0;
                self.n = 0;
            }
        }
    }

    fn put_code(&mut self, v: u32, k: u32) {
        for i in (0..k).rev() {
            self.put((v >> i) & 1, 1);
        }
    }

    fn literal(&mut self, sym: u32) {
        match sym {
            0..=143 => self.put_code(0x30 + sym, 8),
            144..=255 => self.put_code(0x190 + sym - 144, 9),
            256..=279 => self.put_code(sym - 256, 7),
            _ => self.put_code(0xc0 + sym - 280, 8),
        }
    }
}

/// A raw DEFLATE stream of one fixed-Huffman block, greedy LZ77 matches
/// through a 3-byte hash (enough to exercise lengths and distances).
fn deflate_fixed(data: &[u8]) -> Vec<u8> {
    const LBASE: [u32; 29] =
        [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
    const LEXTRA: [u32; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
    const DBASE: [u32; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289,
        16385, 24577,
    ];
    const DEXTRA: [u32; 30] = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
    let mut w = BitWriter::default();
    w.put(1, 1);
    w.put(1, 2);
    let mut last = std::collections::HashMap::new();
    let mut i = 0;
    while i < data.len() {
        let mut len = 0;
        let mut dist = 0;
        if i + 3 <= data.len() {
            let key = [data[i], data[i + 1], data[i + 2]];
            if let Some(&j) = last.get(&key) {
                if i - j <= 32768 {
                    let mut l = 0;
                    while l < 258 && i + l < data.len() && data[j + l] == data[i + l] {
                        l += 1;
                    }
                    if l >= 3 {
                        len = l;
                        dist = i - j;
                    }
                }
            }
            last.insert(key, i);
        }
        if len >= 3 {
            let li = LBASE.iter().rposition(|&b| b as usize <= len).unwrap();
            w.literal(257 + li as u32);
            w.put(len as u32 - LBASE[li], LEXTRA[li]);
            let di = DBASE.iter().rposition(|&b| b as usize <= dist).unwrap();
            w.put_code(di as u32, 5);
            w.put(dist as u32 - DBASE[di], DEXTRA[di]);
            for k in i + 1..(i + len).min(data.len().saturating_sub(2)) {
                last.insert([data[k], data[k + 1], data[k + 2]], k);
            }
            i += len;
        } else {
            w.literal(data[i] as u32);
            i += 1;
        }
    }
    w.literal(256);
    if w.n > 0 {
        w.out.push(w.acc as u8);
    }
    w.out
}

/// A zip archive (no zip64); `deflate` picks the members to compress.
fn write_zip(members: &[(String, Vec<u8>)], deflate: impl Fn(&str) -> bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in members {
        let crc = crc32fast::hash(data);
        let (method, body) = if deflate(name) { (8u16, deflate_fixed(data)) } else { (0u16, data.clone()) };
        let offset = out.len() as u32;
        let header = |sig: u32, central_entry: bool| {
            let mut h = Vec::new();
            h.extend(sig.to_le_bytes());
            if central_entry {
                h.extend(20u16.to_le_bytes());
            }
            h.extend(20u16.to_le_bytes());
            h.extend(0u16.to_le_bytes()); // flags
            h.extend(method.to_le_bytes());
            h.extend([0u8; 4]); // time, date
            h.extend(crc.to_le_bytes());
            h.extend((body.len() as u32).to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra
            if central_entry {
                h.extend([0u8; 6]); // comment, disk, internal attributes
                h.extend([0u8; 4]); // external attributes
                h.extend(offset.to_le_bytes());
            }
            h.extend(name.as_bytes());
            h
        };
        let local = header(0x0403_4b50, false);
        let entry = header(0x0201_4b50, true);
        out.extend(local);
        out.extend(&body);
        central.extend(entry);
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// Pickle opcodes as torch.save (protocol 2) writes them.
#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.0.push(b'c');
        self.0.extend(format!("{module}\n{name}\n").bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.bytes());
        self
    }
    fn int(&mut self, v: u64) -> &mut Self {
        match v {
            0..=255 => self.op(&[b'K', v as u8]),
            256..=65535 => self.op(&[b'M', v as u8, (v >> 8) as u8]),
            0x8000_0000.. => {
                self.0.extend([0x8a, 8]);
                self.0.extend(v.to_le_bytes());
                self
            }
            _ => {
                self.0.push(b'J');
                self.0.extend((v as u32).to_le_bytes());
                self
            }
        }
    }
    fn ints(&mut self, v: &[u64]) -> &mut Self {
        self.op(b"(");
        for &x in v {
            self.int(x);
        }
        self.op(b"t")
    }
}

/// One state-dict entry: a view of storage `key`.
struct Entry<'a> {
    name: &'a str,
    storage_class: &'a str,
    key: &'a str,
    numel: usize,
    offset: usize,
    size: Vec<u64>,
    stride: Vec<u64>,
}

/// The legacy format's view_metadata, appended to an entry's persistent id.
type ViewMeta<'a> = Option<(&'a str, u64, u64)>;

fn contiguous(size: &[usize]) -> Vec<u64> {
    let mut s = vec![1; size.len()];
    for d in (0..size.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * size[d + 1] as u64;
    }
    s
}

/// The pickle of an OrderedDict of tensors, opcode for opcode as torch.save writes it.
fn state_dict_pickle(entries: &[Entry<'_>]) -> Vec<u8> {
    state_dict_pickle_views(entries, &[])
}

/// As [`state_dict_pickle`], entry `i`'s persistent id carrying `views[i]`
/// (legacy format: None, or (view key, offset, numel)).
fn state_dict_pickle_views(entries: &[Entry<'_>], views: &[ViewMeta<'_>]) -> Vec<u8> {
    let mut p = Pickle::default();
    p.op(&[0x80, 2]).global("collections", "OrderedDict").op(&[b'q', 0]).op(b")R").op(&[b'q', 1]).op(b"(");
    for (i, e) in entries.iter().enumerate() {
        p.str(e.name).global("torch._utils", "_rebuild_tensor_v2").op(b"((");
        p.str("storage").global("torch", e.storage_class).str(e.key).str("cpu").int(e.numel as u64);
        match views.get(i) {
            Some(Some((k, off, n))) => {
                p.str(k).int(*off).int(*n).op(&[0x87]);
            }
            Some(None) => {
                p.op(b"N");
            }
            None => {}
        }
        p.op(b"tQ");
        p.int(e.offset as u64).ints(&e.size).ints(&e.stride).op(&[0x89]).global("collections", "OrderedDict").op(b")Rt").op(b"R");
    }
    // SETITEMS, then the state ({'_metadata': {}}) BUILD, STOP.
    p.op(b"u}").str("_metadata").op(b"}s").op(b"b.");
    p.0
}

/// A .pth of `tensors` (f32, one storage each), with the archive folder `prefix`.
fn write_pth(tensors: &[RawTensor], prefix: &str, deflate: impl Fn(&str) -> bool) -> Vec<u8> {
    let keys: Vec<String> = (0..tensors.len()).map(|i| i.to_string()).collect();
    let entries: Vec<Entry<'_>> = tensors
        .iter()
        .zip(&keys)
        .map(|((name, shape, values), key)| Entry {
            name,
            storage_class: "FloatStorage",
            key,
            numel: values.len(),
            offset: 0,
            size: shape.iter().map(|&d| d as u64).collect(),
            stride: contiguous(shape),
        })
        .collect();
    let mut members = vec![(format!("{prefix}/data.pkl"), state_dict_pickle(&entries))];
    members.push((format!("{prefix}/byteorder"), b"little".to_vec()));
    for ((_, _, values), key) in tensors.iter().zip(&keys) {
        members.push((format!("{prefix}/data/{key}"), values.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    members.push((format!("{prefix}/version"), b"3\n".to_vec()));
    write_zip(&members, deflate)
}

/// The four pickles torch's legacy format puts around the object: magic
/// number, protocol version and sys_info before, the key list after.
fn legacy_head(little_endian: bool) -> Vec<u8> {
    let mut p = Pickle::default();
    p.op(&[0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]).op(b".");
    p.op(&[0x80, 2]).int(1001).op(b".");
    p.op(&[0x80, 2]).op(b"}(").str("protocol_version").int(1001).str("little_endian");
    p.op(&[if little_endian { 0x88 } else { 0x89 }]).op(b"u.");
    p.0
}

fn key_list(keys: &[&str]) -> Vec<u8> {
    let mut p = Pickle::default();
    p.op(&[0x80, 2]).op(b"](");
    for k in keys {
        p.str(k);
    }
    p.op(b"e.");
    p.0
}

/// A legacy-format file: `object` pickle, then `(key, element count, bytes)` in order.
fn legacy_file(object: Vec<u8>, storages: &[(&str, u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = legacy_head(true);
    out.extend(object);
    out.extend(key_list(&storages.iter().map(|s| s.0).collect::<Vec<_>>()));
    for (_, count, bytes) in storages {
        out.extend(count.to_le_bytes());
        out.extend(bytes);
    }
    out
}

/// A legacy .pth of `tensors` (f32, one storage each; view_metadata None).
fn write_legacy(tensors: &[RawTensor]) -> Vec<u8> {
    let keys: Vec<String> = (0..tensors.len()).map(|i| format!("{}", 140_000_000 + 4096 * i)).collect();
    let entries: Vec<Entry<'_>> = tensors
        .iter()
        .zip(&keys)
        .map(|((name, shape, values), key)| Entry {
            name,
            storage_class: "FloatStorage",
            key,
            numel: values.len(),
            offset: 0,
            size: shape.iter().map(|&d| d as u64).collect(),
            stride: contiguous(shape),
        })
        .collect();
    let object = state_dict_pickle_views(&entries, &vec![None; entries.len()]);
    let storages: Vec<(&str, u64, Vec<u8>)> =
        tensors.iter().zip(&keys).map(|((_, _, v), k)| (k.as_str(), v.len() as u64, f32_bytes(v))).collect();
    legacy_file(object, &storages)
}

fn find<'a>(t: &'a [NamedTensor], name: &str) -> &'a NamedTensor {
    t.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no tensor {name}"))
}

fn assert_same(got: &[RawTensor], expected: &[RawTensor]) {
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(g.0, e.0);
        assert_eq!(g.1, e.1, "{}", g.0);
        if let Some(i) = (0..e.2.len()).find(|&i| g.2[i].to_bits() != e.2[i].to_bits()) {
            panic!("{}: index {i}: got {}, expected {}", g.0, g.2[i], e.2[i]);
        }
        assert_eq!(g.2.len(), e.2.len(), "{}", g.0);
    }
}

/// The mapping, checked element by element against indices written out by hand.
fn check_mapping(raw: &[RawTensor], mapped: &[NamedTensor], widths: &[usize; 13], fc: [usize; 3]) {
    assert_eq!(raw.len(), mapped.len());
    let get = |n: &str| &raw.iter().find(|t| t.0 == n).unwrap().2;
    let mut cin = 3;
    for (i, (&idx, &cout)) in FEATURE_INDICES.iter().zip(widths).enumerate() {
        let name = CONVS[i].0;
        let w = find(mapped, &format!("{name}.weight"));
        assert_eq!(w.shape, vec![3, 3, cin, cout]);
        let torch_w = get(&format!("features.{idx}.weight"));
        for o in 0..cout {
            for c in 0..cin {
                for ky in 0..3 {
                    for kx in 0..3 {
                        let t = torch_w[((o * cin + c) * 3 + ky) * 3 + kx];
                        let ours = w.values[((ky * 3 + kx) * cin + c) * cout + o];
                        assert_eq!(t, ours, "{name} o={o} c={c} ky={ky} kx={kx}");
                    }
                }
            }
        }
        assert_eq!(&find(mapped, &format!("{name}.bias")).values, get(&format!("features.{idx}.bias")));
        cin = cout;
    }
    // fc6: torch's input column c·49 + y·7 + x is our row (y·7 + x)·C + c.
    let c5 = cin;
    let fc6 = find(mapped, "fc6.weight");
    assert_eq!(fc6.shape, vec![49 * c5, fc[0]]);
    let t6 = get("classifier.0.weight");
    let (o, c, y, x) = (fc[0] - 3, c5 - 2, 2, 6);
    assert_eq!(fc6.values[((y * 7 + x) * c5 + c) * fc[0] + o], t6[o * 49 * c5 + c * 49 + y * 7 + x]);
    for o in 0..fc[0] {
        for c in 0..c5 {
            for p in 0..49 {
                assert_eq!(fc6.values[(p * c5 + c) * fc[0] + o], t6[o * 49 * c5 + c * 49 + p], "fc6 o={o} c={c} p={p}");
            }
        }
    }
    for (layer, torch_name, inputs, outputs) in [("fc7", "classifier.3", fc[0], fc[1]), ("fc8", "classifier.6", fc[1], fc[2])] {
        let w = find(mapped, &format!("{layer}.weight"));
        assert_eq!(w.shape, vec![inputs, outputs]);
        let t = get(&format!("{torch_name}.weight"));
        for o in 0..outputs {
            for i in 0..inputs {
                assert_eq!(w.values[i * outputs + o], t[o * inputs + i], "{layer} in={i} out={o}");
            }
        }
        assert_eq!(&find(mapped, &format!("{layer}.bias")).values, get(&format!("{torch_name}.bias")));
    }
}

// ------------------------------------------------------------------ tests --

test! {
fn rust_written_pth_round_trip() {
    let sd = state_dict(1, &NARROW, Some(NARROW_FC));
    // Stored members; deflated storages and pickle; a `module.` prefix.
    let stored = write_pth(&sd, "archive", |_| false);
    let deflated = write_pth(&sd, "vgg16-397923af", |n| n.ends_with(".pkl") || n.ends_with("/3") || n.ends_with("/30"));
    assert!(deflated.len() < stored.len(), "the deflated members should be smaller");
    for bytes in [&stored, &deflated] {
        let raw = torch::read_state_dict(bytes).unwrap();
        assert_same(&raw, &sd);
        let mapped = torch::torchvision_tensors(raw.clone()).unwrap();
        check_mapping(&raw, &mapped, &NARROW, NARROW_FC);
    }
    let prefixed: Vec<RawTensor> = sd.iter().map(|(n, s, v)| (format!("module.{n}"), s.clone(), v.clone())).collect();
    let raw = torch::read_state_dict(&write_pth(&prefixed, "archive", |_| true)).unwrap();
    assert_same(&raw, &prefixed);
    let mapped = torch::torchvision_tensors(raw).unwrap();
    check_mapping(&sd, &mapped, &NARROW, NARROW_FC);
}
}

test! {
fn narrow_network_is_refused_by_the_vgg16_loader() {
    let bytes = write_pth(&state_dict(2, &NARROW, Some(NARROW_FC)), "archive", |_| false);
    let e = torch::convert_pth(&bytes).unwrap_err();
    match &e {
        WeightsError::Shape { tensor, expected, got } => {
            assert_eq!(tensor, "conv1_1.weight");
            assert_eq!(expected, &vec![3, 3, 3, 64]);
            assert_eq!(got, &vec![3, 3, 3, 4]);
        }
        other => panic!("expected a shape error, got {other}"),
    }
}
}

test! {
fn full_size_trunk_through_the_loader() {
    // The real VGG16 widths (conv trunk only: 14.7 M parameters).
    let widths: [usize; 13] = CONVS.map(|c| c.2);
    let sd = state_dict(3, &widths, None);
    let bytes = write_pth(&sd, "archive", |n| n.ends_with("/1"));
    let via_detect = convert::convert(&bytes, None).unwrap();
    let file = torch::convert_pth(&bytes).unwrap();
    assert_eq!(file.preprocessing, Preprocessing::torchvision());
    assert_eq!(file.parameter_count(), 14_714_688);
    assert_eq!(via_detect.weights.convs[12].bias, file.weights.convs[12].bias);
    // Through the project's file and back.
    let back = WeightsFile::from_bytes(&file.to_bytes(false)).unwrap();
    assert_eq!(back.preprocessing, Preprocessing::torchvision());
    assert_eq!(back.source, torch::TORCHVISION_SOURCE);
    for (i, &(name, cin, cout)) in CONVS.iter().enumerate() {
        let t = &sd[2 * i].2;
        let w = &back.weights.convs[i].w_hwio;
        // A few spread-out elements, index by hand: torch (o, c, ky, kx) → ours (ky, kx, c, o).
        for (o, c, ky, kx) in [(0, 0, 0, 0), (cout - 1, cin - 1, 2, 2), (cout / 2, cin / 3, 1, 2), (7 % cout, 2, 2, 0)] {
            assert_eq!(w[((ky * 3 + kx) * cin + c) * cout + o], t[((o * cin + c) * 3 + ky) * 3 + kx], "{name}");
        }
        assert_eq!(back.weights.convs[i].bias, sd[2 * i + 1].2, "{name}");
    }
}
}

test! {
fn python_fixture_mimicking_torch_save() {
    // Stored members at 64-byte boundaries, zip64 records, "vgg16-397923af/"
    // folder, two biases sharing one storage, a transposed weight, a half bias.
    let raw = torch::read_state_dict(PY_PTH).unwrap();
    let expected = torch::read_safetensors(PY_TORCHVISION_ST).unwrap();
    assert_same(&raw, &expected);
    // First values as Python printed them.
    let mut lines = PY_MANIFEST.lines().filter(|l| !l.starts_with('#'));
    for (name, shape, values) in &raw {
        let line = lines.next().unwrap();
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[0], name);
        let dims: Vec<usize> = parts[1].split('x').map(|d| d.parse().unwrap()).collect();
        assert_eq!(&dims, shape);
        assert_eq!(values[0], parts[2].parse::<f64>().unwrap() as f32, "{name}");
    }
    assert_eq!(lines.next(), None);
    let mapped = torch::torchvision_tensors(raw.clone()).unwrap();
    check_mapping(&raw, &mapped, &NARROW, NARROW_FC);
}
}

test! {
fn timm_and_torchvision_safetensors() {
    let tv = torch::torchvision_tensors(torch::read_safetensors(PY_TORCHVISION_ST).unwrap()).unwrap();
    let timm = torch::torchvision_tensors(torch::read_safetensors(PY_TIMM_ST).unwrap()).unwrap();
    assert_eq!(tv, timm);
    check_mapping(&torch::read_safetensors(PY_TORCHVISION_ST).unwrap(), &timm, &NARROW, NARROW_FC);
    // Full size, trunk only, written here: features.N names, OIHW.
    let widths: [usize; 13] = CONVS.map(|c| c.2);
    let sd = state_dict(4, &widths, None);
    let outs: Vec<TensorOut<'_>> = sd.iter().map(|(n, s, v)| TensorOut { name: n, shape: s.clone(), values: v }).collect();
    let bytes = safetensors::write(&outs, &[("format".into(), "pt".into())], Dtype::F32);
    let file = torch::convert_torch_safetensors(&bytes).unwrap();
    assert_eq!(file.preprocessing, Preprocessing::torchvision());
    let (cin, cout) = (CONVS[4].1, CONVS[4].2);
    let (o, c, ky, kx) = (200, 77, 2, 1);
    assert_eq!(file.weights.convs[4].w_hwio[((ky * 3 + kx) * cin + c) * cout + o], sd[8].2[((o * cin + c) * 3 + ky) * 3 + kx]);
    let e = torch::convert_torch_safetensors(PY_TIMM_ST).unwrap_err();
    assert!(matches!(e, WeightsError::Shape { .. }), "{e}");
}
}

/// A small .pth: two tensors.
fn tiny_pth() -> (Vec<RawTensor>, Vec<u8>) {
    let sd = vec![
        ("features.0.bias".to_string(), vec![4], vec![0.5, -1.0, 2.0, 0.25]),
        ("classifier.6.bias".to_string(), vec![3], vec![1.0, 2.0, 3.0]),
    ];
    let bytes = write_pth(&sd, "archive", |n| n.ends_with(".pkl"));
    (sd, bytes)
}

fn pth_with_pickle(pickle: Vec<u8>, storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut members = vec![("archive/data.pkl".to_string(), pickle)];
    for (k, d) in storages {
        members.push((format!("archive/data/{k}"), d.clone()));
    }
    write_zip(&members, |_| false)
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn err_of(bytes: &[u8]) -> String {
    match torch::read_state_dict(bytes) {
        Ok(t) => panic!("expected an error, read {} tensors", t.len()),
        Err(e) => e.to_string(),
    }
}

test! {
fn every_truncation_is_an_error() {
    let (sd, bytes) = tiny_pth();
    assert_same(&torch::read_state_dict(&bytes).unwrap(), &sd);
    for n in 0..bytes.len() {
        if let Ok(t) = torch::read_state_dict(&bytes[..n]) {
            panic!("cut to {n} of {} bytes, read {} tensors", bytes.len(), t.len());
        }
    }
    for n in (0..PY_PTH.len()).step_by(997) {
        assert!(torch::read_state_dict(&PY_PTH[..n]).is_err(), "python fixture cut to {n}");
    }
}
}

test! {
fn forbidden_global_is_refused() {
    let mut p = Pickle::default();
    p.op(&[0x80, 2]).global("os", "system").str("echo hi").op(&[0x85]).op(b"R.");
    let e = err_of(&pth_with_pickle(p.0, &[]));
    assert!(e.contains("os.system") && e.contains("not") && e.contains("allowed"), "{e}");
    // Same through STACK_GLOBAL (protocol 4).
    let mut p = Pickle::default();
    p.op(&[0x80, 4]).str("builtins").str("eval").op(&[0x93]).str("1").op(&[0x85]).op(b"R.");
    let e = err_of(&pth_with_pickle(p.0, &[]));
    assert!(e.contains("builtins.eval"), "{e}");
}
}

test! {
fn corrupt_member_fails_its_crc() {
    let (_, bytes) = tiny_pth();
    // The last storage's data ("archive/data/1", 12 bytes) sits right before
    // the version member; flip one of its bits.
    let at = bytes.windows(4).position(|w| w == 2.0f32.to_le_bytes()).unwrap();
    let mut bad = bytes.clone();
    bad[at] ^= 0x40;
    let e = err_of(&bad);
    assert!(e.contains("CRC-32") && e.contains("archive/data/"), "{e}");
}
}

/// `bytes` (a zip from [`write_zip`]) with member `name`'s uncompressed size
/// rewritten in its local and central headers.
fn lie_about_size(bytes: &[u8], name: &str, size: u32) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (sig, at_size, at_name) in [(b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)] {
        let pos = (0..bytes.len() - 4)
            .find(|&i| &bytes[i..i + 4] == sig && bytes[i + at_name..].starts_with(name.as_bytes()))
            .expect("the member's header");
        out[pos + at_size..pos + at_size + 4].copy_from_slice(&size.to_le_bytes());
    }
    out
}

test! {
fn deflated_members_inflate_to_their_declared_size_only() {
    let (sd, bytes) = tiny_pth();
    assert_same(&torch::read_state_dict(&bytes).unwrap(), &sd);
    let pkl = archive::Zip::parse(&bytes).unwrap().read("archive/data.pkl").unwrap().len() as u32;
    // Smaller than what it inflates to: refused, whatever the CRC says.
    let e = err_of(&lie_about_size(&bytes, "archive/data.pkl", pkl - 1));
    assert!(e.contains("archive/data.pkl"), "{e}");
    // Far more than its compressed bytes can hold: refused before any allocation.
    let e = err_of(&lie_about_size(&bytes, "archive/data.pkl", 4_000_000_000));
    assert!(e.contains("archive/data.pkl") && e.contains("4000000000"), "{e}");
}
}

test! {
fn malformed_state_dicts() {
    let entry = |name, key, numel, offset, size: Vec<u64>, stride: Vec<u64>| Entry {
        name,
        storage_class: "FloatStorage",
        key,
        numel,
        offset,
        size,
        stride,
    };
    // Storage file shorter than its numel.
    let p = state_dict_pickle(&[entry("features.0.bias", "0", 8, 0, vec![8], vec![1])]);
    let e = err_of(&pth_with_pickle(p, &[("0", f32_bytes(&[1.0; 4]))]));
    assert!(e.contains("features.0.bias") && e.contains("storage"), "{e}");
    // Offset and stride reach past the storage.
    let p = state_dict_pickle(&[entry("features.0.bias", "0", 4, 2, vec![3], vec![1])]);
    let e = err_of(&pth_with_pickle(p, &[("0", f32_bytes(&[1.0; 4]))]));
    assert!(e.contains("past its storage"), "{e}");
    // Missing storage member.
    let p = state_dict_pickle(&[entry("features.0.bias", "7", 4, 0, vec![4], vec![1])]);
    let e = err_of(&pth_with_pickle(p, &[("0", f32_bytes(&[1.0; 4]))]));
    assert!(e.contains("archive/data/7"), "{e}");
    // A storage key that tries to leave the folder.
    let p = state_dict_pickle(&[entry("features.0.bias", "../x", 4, 0, vec![4], vec![1])]);
    let e = err_of(&pth_with_pickle(p, &[("0", f32_bytes(&[1.0; 4]))]));
    assert!(e.contains("plain name"), "{e}");
    // Non-contiguous view, gathered: a 2×3 view with strides (1, 2) of 6 values.
    let p = state_dict_pickle(&[entry("classifier.6.weight", "0", 6, 0, vec![2, 3], vec![1, 2])]);
    let got = torch::read_state_dict(&pth_with_pickle(p, &[("0", f32_bytes(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))])).unwrap();
    assert_eq!(got[0].2, vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
    // A size-1 dimension with a huge stride in a non-contiguous view.
    let p = state_dict_pickle(&[entry("classifier.6.weight", "0", 4, 0, vec![2, 1, 2], vec![1, 1 << 62, 2])]);
    let got = torch::read_state_dict(&pth_with_pickle(p, &[("0", f32_bytes(&[0.0, 1.0, 2.0, 3.0]))])).unwrap();
    assert_eq!(got[0].2, vec![0.0, 2.0, 1.0, 3.0]);
    // Expanded view (more elements than storage) is refused.
    let p = state_dict_pickle(&[entry("features.0.bias", "0", 1, 0, vec![64], vec![0])]);
    let e = err_of(&pth_with_pickle(p, &[("0", f32_bytes(&[1.0]))]));
    assert!(e.contains("expanded"), "{e}");
    // A dict without tensors, and one with a value that is not a tensor.
    let mut p = Pickle::default();
    p.op(&[0x80, 2]).op(b"}").str("features.0.bias").int(3).op(b"s.");
    let e = err_of(&pth_with_pickle(p.0, &[]));
    assert!(e.contains("no tensors"), "{e}");
    let mut p = Pickle(state_dict_pickle(&[entry("features.0.bias", "0", 4, 0, vec![4], vec![1])]));
    p.0.truncate(p.0.len() - 1); // before STOP: the dict is on the stack
    p.str("epoch").int(3).op(b"s.");
    let e = err_of(&pth_with_pickle(p.0, &[("0", f32_bytes(&[1.0; 4]))]));
    assert!(e.contains("epoch") && e.contains("not a tensor"), "{e}");
    // Values nested without end.
    let mut p = Pickle::default();
    p.op(&[0x80, 2]).op(b")");
    for _ in 0..100 {
        p.op(&[0x85]);
    }
    p.op(b".");
    let e = err_of(&pth_with_pickle(p.0, &[]));
    assert!(e.contains("nest"), "{e}");
    // Unknown opcode (protocol 0 INT).
    let e = err_of(&pth_with_pickle(b"\x80\x02I1\n.".to_vec(), &[]));
    assert!(e.contains("opcode"), "{e}");
    // A pickle that is not torch's, and files that are not zips at all.
    let e = err_of(b"\x80\x02\x8a\x0alZ\xfc\x9cF\xf9 j\xa8P\x19.");
    assert!(e.contains("not one torch.save wrote"), "{e}");
    assert!(err_of(b"hello").contains("not a zip"));
    // No data.pkl.
    let e = err_of(&write_zip(&[("archive/version".into(), b"3\n".to_vec())], |_| false));
    assert!(e.contains("data.pkl"), "{e}");
    // A key of batch-norm VGG is named in the error.
    let sd = vec![("features.1.running_mean".to_string(), vec![4], vec![0.0; 4])];
    let e = torch::torchvision_tensors(sd).unwrap_err().to_string();
    assert!(e.contains("features.1.running_mean"), "{e}");
}
}

test! {
fn garbage_and_bit_flips_never_panic() {
    let (_, bytes) = tiny_pth();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..bytes.len() {
        for _ in 0..3 {
            let mut bad = bytes.clone();
            bad[i] ^= 1 << (rng.next() % 8);
            let _ = torch::read_state_dict(&bad);
        }
    }
    // Random opcodes straight into the pickle machine (valid ones included).
    let alphabet = b"\x80\x02\x95(012}])tld\x85\x86\x87aesuJKM\x8a\x8bGN\x88\x89XT\x8cU\x8dBCqr\x94hjc\x93RbQ.";
    for _ in 0..20_000 {
        let n = (rng.next() % 64) as usize;
        let mut p: Vec<u8> = (0..n)
            .map(|_| if rng.next().is_multiple_of(4) { (rng.next() & 0xff) as u8 } else { alphabet[(rng.next() as usize) % alphabet.len()] })
            .collect();
        p.extend_from_slice(b".");
        let _ = pickle::load(&p);
    }
    for n in 0..2000 {
        let g: Vec<u8> = (0..n % 200).map(|_| (rng.next() & 0xff) as u8).collect();
        let mut z = b"PK\x03\x04".to_vec();
        z.extend(&g);
        let _ = torch::read_state_dict(&z);
        let _ = archive::Zip::parse(&g).map(|mut z| z.names().iter().map(|n| z.read(n).is_ok()).count());
    }
}
}

// ------------------------------------------------------- legacy format --

test! {
fn python_legacy_fixtures_mimicking_torch_save() {
    // torch 1.x's _legacy_save (keys "0", "1", …, _rebuild_tensor_v2,
    // _metadata) and torch 0.3's (keys are storage addresses, sorted as
    // strings, so the storages follow in another order than the tensors;
    // _rebuild_tensor): the same tensors as the zip fixture, with a shared
    // storage, a transposed weight and a half bias.
    let expected = torch::read_safetensors(PY_TORCHVISION_ST).unwrap();
    for (what, bytes) in [("legacy", PY_LEGACY), ("legacy 0.3", PY_LEGACY_03)] {
        assert!(torch::looks_like_pth(bytes), "{what}");
        assert_eq!(convert::detect(bytes), Some(convert::Format::TorchPth), "{what}");
        let raw = torch::read_state_dict(bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_same(&raw, &expected);
        let mapped = torch::torchvision_tensors(raw.clone()).unwrap();
        check_mapping(&raw, &mapped, &NARROW, NARROW_FC);
        // The narrow network is refused by the VGG16 loader by its shapes, not its format.
        let e = torch::convert_pth(bytes).unwrap_err();
        assert!(matches!(e, WeightsError::Shape { .. }), "{what}: {e}");
    }
}
}

test! {
fn rust_written_legacy_round_trip() {
    let sd = state_dict(5, &NARROW, Some(NARROW_FC));
    let bytes = write_legacy(&sd);
    assert!(torch::looks_like_pth(&bytes));
    let raw = torch::read_state_dict(&bytes).unwrap();
    assert_same(&raw, &sd);
    // Full-size trunk through detect and the loader.
    let widths: [usize; 13] = CONVS.map(|c| c.2);
    let sd = state_dict(6, &widths, None);
    let file = convert::convert(&write_legacy(&sd), None).unwrap();
    assert_eq!(file.preprocessing, Preprocessing::torchvision());
    assert_eq!(file.parameter_count(), 14_714_688);
    let (cin, cout) = (CONVS[7].1, CONVS[7].2);
    let (o, c, ky, kx) = (cout - 5, cin / 2 + 1, 0, 2);
    assert_eq!(file.weights.convs[7].w_hwio[((ky * 3 + kx) * cin + c) * cout + o], sd[14].2[((o * cin + c) * 3 + ky) * 3 + kx]);
    assert_eq!(file.weights.convs[12].bias, sd[25].2);
}
}

/// A legacy file of one 4-element tensor `features.0.bias` in storage "k".
fn tiny_legacy(count: u64, data: Vec<u8>) -> Vec<u8> {
    let e = Entry { name: "features.0.bias", storage_class: "FloatStorage", key: "k", numel: 4, offset: 0, size: vec![4], stride: vec![1] };
    legacy_file(state_dict_pickle_views(&[e], &[None]), &[("k", count, data)])
}

test! {
fn legacy_views_types_and_errors() {
    let v = [0.5f32, -1.0, 2.0, 0.25];
    assert_eq!(torch::read_state_dict(&tiny_legacy(4, f32_bytes(&v))).unwrap()[0].2, v.to_vec());
    // Every truncation, and a count that disagrees with the pickle.
    let bytes = tiny_legacy(4, f32_bytes(&v));
    for n in 0..bytes.len() {
        assert!(torch::read_state_dict(&bytes[..n]).is_err(), "cut to {n} of {}", bytes.len());
    }
    let e = err_of(&tiny_legacy(5, f32_bytes(&[1.0; 5])));
    assert!(e.contains("holds 5 elements") && e.contains("say 4"), "{e}");
    // A huge declared count is an error before anything is allocated.
    let e = Entry { name: "features.0.bias", storage_class: "FloatStorage", key: "k", numel: 1 << 30, offset: 0, size: vec![4], stride: vec![1] };
    let e = err_of(&legacy_file(state_dict_pickle_views(&[e], &[None]), &[("k", 1 << 30, f32_bytes(&v))]));
    assert!(e.contains("truncated"), "{e}");
    // A key listed that no tensor names, a key listed twice, a storage not listed.
    let e = Entry { name: "features.0.bias", storage_class: "FloatStorage", key: "k", numel: 4, offset: 0, size: vec![4], stride: vec![1] };
    let object = state_dict_pickle_views(std::slice::from_ref(&e), &[None]);
    let err = err_of(&legacy_file(object.clone(), &[("k", 4, f32_bytes(&v)), ("zz", 4, f32_bytes(&v))]));
    assert!(err.contains("`zz`") && err.contains("no tensor"), "{err}");
    let err = err_of(&legacy_file(object.clone(), &[("k", 4, f32_bytes(&v)), ("k", 4, f32_bytes(&v))]));
    assert!(err.contains("twice"), "{err}");
    let err = err_of(&legacy_file(object.clone(), &[]));
    assert!(err.contains("features.0.bias") && err.contains("`k`"), "{err}");
    // Wrong magic, wrong protocol version.
    let mut bad = tiny_legacy(4, f32_bytes(&v));
    bad[4] ^= 1;
    assert!(!torch::looks_like_pth(&bad));
    assert!(err_of(&bad).contains("not one torch.save wrote"));
    let good = tiny_legacy(4, f32_bytes(&v));
    let at = good.windows(3).position(|w| w == [b'M', 0xe9, 0x03]).unwrap();
    let mut bad = good.clone();
    bad[at + 1] = 0xea;
    let e = err_of(&bad);
    assert!(e.contains("protocol version 1002"), "{e}");
    // A view (view_metadata): elements 2..5 of a 6-element root storage,
    // shared by a second tensor reading the whole root.
    let root = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0];
    let entries = [
        Entry { name: "features.0.bias", storage_class: "FloatStorage", key: "r", numel: 6, offset: 1, size: vec![2], stride: vec![1] },
        Entry { name: "features.2.bias", storage_class: "FloatStorage", key: "r", numel: 6, offset: 0, size: vec![6], stride: vec![1] },
    ];
    let object = state_dict_pickle_views(&entries, &[Some(("v", 2, 3)), None]);
    let got = torch::read_state_dict(&legacy_file(object, &[("r", 6, f32_bytes(&root))])).unwrap();
    assert_eq!(got[0].2, vec![3.0, 4.0]);
    assert_eq!(got[1].2, root.to_vec());
    // A view reaching past its root, and a tensor reaching past its view.
    let object = state_dict_pickle_views(&entries[..1], &[Some(("v", 4, 3))]);
    let e = err_of(&legacy_file(object, &[("r", 6, f32_bytes(&root))]));
    assert!(e.contains("view"), "{e}");
    let object = state_dict_pickle_views(&entries[..1], &[Some(("v", 2, 2))]);
    let e = err_of(&legacy_file(object, &[("r", 6, f32_bytes(&root))]));
    assert!(e.contains("past its storage"), "{e}");
    // Half, double and bfloat16 storages are converted to f32.
    for (class, bytes, values) in [
        ("HalfStorage", [0x3c00u16, 0xc000, 0x3800, 0x0000].iter().flat_map(|h| h.to_le_bytes()).collect::<Vec<u8>>(), [1.0f32, -2.0, 0.5, 0.0]),
        ("DoubleStorage", [1.5f64, -2.25, 1e-3, 7.0].iter().flat_map(|d| d.to_le_bytes()).collect(), [1.5, -2.25, 1e-3, 7.0]),
        ("BFloat16Storage", [0x3f80u16, 0xc040, 0x3e80, 0x8000].iter().flat_map(|h| h.to_le_bytes()).collect(), [1.0, -3.0, 0.25, -0.0]),
    ] {
        let e = Entry { name: "features.0.bias", storage_class: class, key: "k", numel: 4, offset: 0, size: vec![4], stride: vec![1] };
        let got = torch::read_state_dict(&legacy_file(state_dict_pickle_views(&[e], &[None]), &[("k", 4, bytes)])).unwrap();
        assert_eq!(got[0].2, values.to_vec(), "{class}");
    }
    // The pre-0.1.10 tar format is recognized and refused.
    let mut tar = vec![0u8; 1024];
    tar[..8].copy_from_slice(b"sys_info");
    tar[257..262].copy_from_slice(b"ustar");
    assert!(torch::looks_like_pth(&tar));
    let e = err_of(&tar);
    assert!(e.contains("tar format"), "{e}");
}
}

test! {
fn legacy_bit_flips_never_panic() {
    let bytes = write_legacy(&state_dict(7, &[1; 13], None));
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for i in 0..bytes.len() {
        for _ in 0..2 {
            let mut bad = bytes.clone();
            bad[i] ^= 1 << (rng.next() % 8);
            let _ = torch::read_state_dict(&bad);
        }
    }
    for n in (0..PY_LEGACY_03.len()).step_by(211) {
        assert!(torch::read_state_dict(&PY_LEGACY_03[..n]).is_err(), "python legacy fixture cut to {n}");
    }
}
}

// ---------------------------------------------------------------- timm --

test! {
fn timm_pth_maps_like_torchvision() {
    // timm's vgg16: features.N, pre_logits.fc1 a (out, C, 7, 7) convolution
    // over pool5, pre_logits.fc2 (out, in, 1, 1), head.fc (out, in).
    let raw = torch::read_state_dict(PY_TIMM_PTH).unwrap();
    let fc1 = raw.iter().find(|t| t.0 == "pre_logits.fc1.weight").unwrap();
    assert_eq!(fc1.1, vec![NARROW_FC[0], 8, 7, 7]);
    let timm = torch::torchvision_tensors(raw.clone()).unwrap();
    let tv_raw = torch::read_safetensors(PY_TORCHVISION_ST).unwrap();
    let tv = torch::torchvision_tensors(tv_raw.clone()).unwrap();
    assert_eq!(timm, tv);
    check_mapping(&tv_raw, &timm, &NARROW, NARROW_FC);
    // fc6 element by element from the conv's (o, c, y, x): our row (y·7 + x)·C + c.
    let fc6 = find(&timm, "fc6.weight");
    let w = &fc1.2;
    let c5 = 8;
    for (o, c, y, x) in [(0, 0, 0, 0), (15, 7, 6, 6), (3, 5, 2, 4), (9, 1, 6, 0)] {
        assert_eq!(fc6.values[((y * 7 + x) * c5 + c) * NARROW_FC[0] + o], w[((o * c5 + c) * 7 + y) * 7 + x], "o={o} c={c} y={y} x={x}");
    }
    // A wrong kernel size for the conv form is named.
    let mut raw = torch::read_state_dict(PY_TIMM_PTH).unwrap();
    let t = raw.iter_mut().find(|t| t.0 == "pre_logits.fc2.weight").unwrap();
    t.1 = vec![NARROW_FC[1], 4, 2, 2];
    let e = torch::torchvision_tensors(raw).unwrap_err().to_string();
    assert!(e.contains("pre_logits.fc2.weight") && e.contains("1×1"), "{e}");
}
}

// ------------------------------------------------- other architectures --

fn names(list: &[(&str, &[usize])]) -> Vec<RawTensor> {
    list.iter().map(|(n, s)| (n.to_string(), s.to_vec(), vec![0.0; s.iter().product()])).collect()
}

test! {
fn other_architectures_are_named() {
    let arch_err = |sd: Vec<RawTensor>| torch::torchvision_tensors(sd).unwrap_err().to_string();
    // vgg16_bn: convs at 0, 3, 7, …, BatchNorm after each.
    let mut bn = Vec::new();
    let mut idx = 0;
    for i in 0..13 {
        bn.push((format!("features.{idx}.weight"), vec![4, if i == 0 { 3 } else { 4 }, 3, 3], vec![0.0; 36 * if i == 0 { 3 } else { 4 }]));
        bn.push((format!("features.{idx}.bias"), vec![4], vec![0.0; 4]));
        for p in ["weight", "bias", "running_mean", "running_var"] {
            bn.push((format!("features.{}.{p}", idx + 1), vec![4], vec![0.0; 4]));
        }
        bn.push((format!("features.{}.num_batches_tracked", idx + 1), vec![], vec![0.0]));
        idx += if [1, 3, 6, 9, 12].contains(&i) { 4 } else { 3 };
    }
    let e = arch_err(bn);
    assert!(e.contains("vgg16_bn is not supported") && e.contains("plain VGG16") && e.contains("features.1.running_mean"), "{e}");
    // vgg19: 16 convolutions.
    let idx19 = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34];
    let vgg19: Vec<RawTensor> = idx19.iter().map(|i| (format!("features.{i}.weight"), vec![2, 2, 3, 3], vec![0.0; 36])).collect();
    let e = arch_err(vgg19);
    assert!(e.contains("vgg19 is not supported") && e.contains("16 convolutions") && e.contains("features.34.weight"), "{e}");
    // AlexNet: 5 convolutions, the first 11×11.
    let alex = names(&[("features.0.weight", &[64, 3, 11, 11]), ("features.3.weight", &[192, 64, 5, 5]), ("features.6.weight", &[2, 2, 3, 3]),
        ("features.8.weight", &[2, 2, 3, 3]), ("features.10.weight", &[2, 2, 3, 3])]);
    assert!(arch_err(alex).contains("AlexNet is not supported"));
    // ResNet.
    let resnet = names(&[("conv1.weight", &[64, 3, 7, 7]), ("bn1.weight", &[64]), ("layer1.0.conv1.weight", &[64, 64, 3, 3]), ("fc.weight", &[1000, 512])]);
    let e = arch_err(resnet);
    assert!(e.contains("ResNet") && e.contains("plain VGG16"), "{e}");
    let resnet = names(&[("conv1.weight", &[64, 3, 7, 7]), ("layer1.0.conv1.weight", &[64, 64, 3, 3]), ("fc.weight", &[1000, 512])]);
    let e = arch_err(resnet);
    assert!(e.contains("ResNet") && e.contains("conv1.weight"), "{e}");
    // Something unknown: the key is named.
    let e = arch_err(names(&[("encoder.0.weight", &[2, 2])]));
    assert!(e.contains("encoder.0.weight") && e.contains("VGG16"), "{e}");
}
}

/// Times the conversion of full-size files written by
/// `python3 tools/torch_fixtures.py --full /tmp/vgg16-full`:
/// `FEATVIS_FULL_PTH=/tmp/vgg16-full cargo test --release --test weights_torch full_size_timing -- --ignored --nocapture`.
#[cfg(not(target_arch = "wasm32"))]
#[test]
#[ignore]
fn full_size_timing() {
    let dir = std::env::var("FEATVIS_FULL_PTH").unwrap_or_else(|_| "/tmp/vgg16-full".into());
    for f in ["vgg16-legacy.pth", "vgg16-zip.pth"] {
        let path = format!("{dir}/{f}");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mb = bytes.len() as f64 / 1e6;
        // CPU time of this thread (the machine may be shared), from /proc.
        let cpu = || {
            std::fs::read_to_string("/proc/thread-self/schedstat")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
                .map_or(f64::NAN, |ns| ns / 1e9)
        };
        let c0 = cpu();
        let t0 = std::time::Instant::now();
        let raw = torch::read_state_dict(&bytes).unwrap();
        let t1 = std::time::Instant::now();
        let mapped = torch::torchvision_tensors(raw).unwrap();
        let t2 = std::time::Instant::now();
        let file = WeightsFile::from_tensors(mapped, Preprocessing::torchvision(), "t", "t").unwrap();
        let t3 = std::time::Instant::now();
        let out = file.to_bytes(false);
        let t4 = std::time::Instant::now();
        let cpu_read = cpu() - c0;
        let total = (t4 - t0).as_secs_f64();
        println!(
            "{f}: {mb:.1} MB, {} parameters: read {:.3} s, layout {:.3} s, check {:.3} s, write {:.3} s; total {total:.3} s wall ({:.0} MB/s), {cpu_read:.3} s CPU; output {} bytes",
            file.parameter_count(),
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
            (t4 - t3).as_secs_f64(),
            mb / total,
            out.len()
        );
    }
}

test! {
fn tiled_layouts_match_the_naive_ones() {
    // Sizes that are not multiples of the tiles (32 rows × 128 columns).
    let mut rng = Rng(11);
    for (rows, cols) in [(1, 1), (45, 147), (33, 129), (7, 300), (64, 256)] {
        let src = rng.vec(rows * cols);
        let t = torch::layout::transpose(&src, rows, cols);
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(t[c * rows + r], src[r * cols + c], "{rows}×{cols} r={r} c={c}");
            }
        }
    }
    for (outputs, c) in [(45, 3), (33, 5), (1, 1)] {
        let w = rng.vec(outputs * c * 49);
        let got = torch::layout::fc6_to_nhwc(&w, outputs, c);
        for o in 0..outputs {
            for ch in 0..c {
                for p in 0..49 {
                    assert_eq!(got[(p * c + ch) * outputs + o], w[o * c * 49 + ch * 49 + p], "fc6 o={o} c={ch} p={p}");
                }
            }
        }
    }
    for (o, i) in [(37, 5), (3, 40), (1, 1)] {
        let w = rng.vec(o * i * 9);
        let got = torch::layout::oihw_to_hwio(&w, o, i);
        for oo in 0..o {
            for ii in 0..i {
                for t in 0..9 {
                    assert_eq!(got[(t * i + ii) * o + oo], w[(oo * i + ii) * 9 + t], "conv o={oo} i={ii} t={t}");
                }
            }
        }
    }
}
}

test! {
fn python2_and_gpu_saved_legacy_pickle() {
    // Python 2's pickle of a torch 0.3 state dict saved from the GPU:
    // OrderedDict([[key, tensor], …]), byte-string keys (SHORT_BINSTRING),
    // torch._utils._rebuild_tensor with 4 arguments, torch.cuda.FloatStorage.
    fn short(p: &mut Pickle, s: &str) {
        p.op(&[b'U', s.len() as u8]).op(s.as_bytes());
    }
    let mut p = Pickle::default();
    p.op(&[0x80, 2]).global("collections", "OrderedDict").op(b"(](");
    for (name, key, offset) in [("features.0.bias", "140", 0u64), ("features.2.bias", "140", 2)] {
        p.op(b"](");
        short(&mut p, name);
        p.global("torch._utils", "_rebuild_tensor").op(b"((");
        short(&mut p, "storage");
        p.global("torch.cuda", "FloatStorage");
        short(&mut p, key);
        short(&mut p, "cuda:0");
        p.int(6).op(b"NtQ").int(offset).ints(&[3]).ints(&[1]).op(b"tR").op(b"e");
    }
    p.op(b"etR.");
    let bytes = legacy_file(p.0, &[("140", 6, f32_bytes(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))]);
    let got = torch::read_state_dict(&bytes).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].0.as_str(), &got[0].2), ("features.0.bias", &vec![0.0, 1.0, 2.0]));
    assert_eq!((got[1].0.as_str(), &got[1].2), ("features.2.bias", &vec![2.0, 3.0, 4.0]));
}
}
