//! Keras and keras_vggface VGG16 .h5 files → the project's weights, and the
//! HDF5 reader under them. Fixtures are written by tools/h5_fixtures.py with
//! h5py (old-style and libver="latest" files, contiguous, compact and chunked
//! datasets with gzip/shuffle/fletcher32) and compiled in, so this also runs
//! in wasm; h5-manifest.txt holds, per tensor, its shape, first and last
//! values' bits and the sum Python computed.

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

#[macro_use]
mod weights_common;

use weights_common::{Rng, NARROW, NARROW_FC};

use featvis::model::CONVS;
use featvis::weights::hdf5::{self, file::Link, Datatype, File, Flavor, KerasLayer};
use featvis::weights::{convert, NamedTensor, Preprocessing, WeightsError, WeightsFile};

const TOP: &[u8] = include_bytes!("fixtures/h5/keras-vgg16-top.h5");
const NOTOP_MODEL: &[u8] = include_bytes!("fixtures/h5/keras-vgg16-notop-model.h5");
const LATEST: &[u8] = include_bytes!("fixtures/h5/keras-vgg16-latest.h5");
const FULL: &[u8] = include_bytes!("fixtures/h5/keras-vgg16-full-notop.h5");
const VGGFACE: &[u8] = include_bytes!("fixtures/h5/vggface-vgg16.h5");
const RESNET: &[u8] = include_bytes!("fixtures/h5/resnet-like.h5");
const TYPES: &[u8] = include_bytes!("fixtures/h5/types.h5");
const KERAS3: &[u8] = include_bytes!("fixtures/h5/keras3-vgg16-notop.weights.h5");
const MANIFEST: &str = include_str!("fixtures/h5/h5-manifest.txt");

fn fixture(name: &str) -> &'static [u8] {
    match name {
        "keras-vgg16-top.h5" => TOP,
        "keras-vgg16-notop-model.h5" => NOTOP_MODEL,
        "keras-vgg16-latest.h5" => LATEST,
        "keras-vgg16-full-notop.h5" => FULL,
        "vggface-vgg16.h5" => VGGFACE,
        "resnet-like.h5" => RESNET,
        "types.h5" => TYPES,
        "keras3-vgg16-notop.weights.h5" => KERAS3,
        other => panic!("unknown fixture {other}"),
    }
}

/// A manifest line: file, dataset path, our name, shape, first bits, last bits, sum.
struct Entry<'a> {
    file: &'a str,
    path: &'a str,
    ours: &'a str,
    shape: Vec<usize>,
    first: u32,
    last: u32,
    sum: f64,
}

fn manifest() -> Vec<Entry<'static>> {
    MANIFEST
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let p: Vec<&str> = l.split(' ').collect();
            assert_eq!(p.len(), 7, "{l}");
            Entry {
                file: p[0],
                path: p[1],
                ours: p[2],
                shape: p[3].split('x').map(|d| d.parse().unwrap()).collect(),
                first: u32::from_str_radix(p[4], 16).unwrap(),
                last: u32::from_str_radix(p[5], 16).unwrap(),
                sum: p[6].parse().unwrap(),
            }
        })
        .collect()
}

fn check_values(what: &str, shape: &[usize], values: &[f32], e: &Entry<'_>) {
    assert_eq!(shape, &e.shape[..], "{what}: shape");
    assert_eq!(values.len(), e.shape.iter().product::<usize>(), "{what}: count");
    assert_eq!(values[0].to_bits(), e.first, "{what}: first value {}", values[0]);
    assert_eq!(values[values.len() - 1].to_bits(), e.last, "{what}: last value {}", values[values.len() - 1]);
    let sum: f64 = values.iter().map(|&v| v as f64).sum();
    assert!((sum - e.sum).abs() <= 1e-9 * (1.0 + e.sum.abs()) + 1e-6, "{what}: sum {sum}, Python {}", e.sum);
}

fn find<'a>(t: &'a [NamedTensor], name: &str) -> &'a NamedTensor {
    t.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no tensor {name}"))
}

/// Every tensor of a fixture against the manifest, and the mapping left the values as stored.
fn check_fixture(name: &str, flavor: Flavor, top: bool) -> Vec<NamedTensor> {
    let bytes = fixture(name);
    let layers = hdf5::read_keras_layers(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (got_flavor, mapped) = hdf5::keras_tensors(&layers).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(got_flavor, flavor, "{name}");
    let entries: Vec<Entry<'_>> = manifest().into_iter().filter(|e| e.file == name).collect();
    assert_eq!(entries.len(), if top { 32 } else { 26 }, "{name}: manifest entries");
    assert_eq!(mapped.len(), entries.len(), "{name}: tensors");
    for e in &entries {
        let t = find(&mapped, e.ours);
        check_values(&format!("{name} {}", e.path), &t.shape, &t.values, e);
    }
    // No reordering: our tensors are the stored ones (Keras is HWIO, BGR input channels).
    for l in &layers {
        for (w, shape, values) in &l.weights {
            let t = mapped.iter().find(|t| &t.shape == shape && &t.values == values);
            assert!(t.is_some(), "{name}: {}/{w} not passed through unchanged", l.name);
        }
    }
    mapped
}

fn check_narrow_shapes(mapped: &[NamedTensor], top: bool) {
    let mut cin = 3;
    for (i, &cout) in NARROW.iter().enumerate() {
        assert_eq!(find(mapped, &format!("{}.weight", CONVS[i].0)).shape, vec![3, 3, cin, cout]);
        assert_eq!(find(mapped, &format!("{}.bias", CONVS[i].0)).shape, vec![cout]);
        cin = cout;
    }
    if top {
        let mut inputs = 49 * cin;
        for (n, &outputs) in ["fc6", "fc7", "fc8"].iter().zip(&NARROW_FC) {
            assert_eq!(find(mapped, &format!("{n}.weight")).shape, vec![inputs, outputs]);
            inputs = outputs;
        }
    } else {
        assert!(!mapped.iter().any(|t| t.name.starts_with("fc")));
    }
}

fn err_of(r: Result<WeightsFile, WeightsError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

// ------------------------------------------------------------------ tests --

test! {
fn save_weights_old_style_groups_contiguous() {
    let f = File::parse(TOP).unwrap();
    assert_eq!(f.superblock_version, 0);
    let mapped = check_fixture("keras-vgg16-top.h5", Flavor::Keras, true);
    check_narrow_shapes(&mapped, true);
}
}

test! {
fn model_save_nesting_chunked_gzip_shuffle_no_colon_names() {
    let mapped = check_fixture("keras-vgg16-notop-model.h5", Flavor::Keras, false);
    check_narrow_shapes(&mapped, false);
    // The JSON model_config is a variable-length string in the global heap.
    let f = File::parse(NOTOP_MODEL).unwrap();
    let root = f.object(f.root()).unwrap();
    let cfg = f.attribute_named(&root, "model_config").unwrap().unwrap();
    assert!(matches!(cfg.dtype, Datatype::VarString { .. }));
    let text = f.strings(&cfg).unwrap();
    assert_eq!(text.len(), 1);
    assert!(text[0].starts_with("{\"class_name\": \"Functional\""), "{}", text[0]);
    assert!(text[0].contains("block5_pool"));
}
}

test! {
fn libver_latest_new_style_groups_and_keras1_names() {
    let f = File::parse(LATEST).unwrap();
    assert_eq!(f.superblock_version, 3);
    // 23 layers: more than 8 links, so the root's links are dense (fractal heap).
    let root = f.object(f.root()).unwrap();
    assert!(f.links(&root).unwrap().len() > 8);
    let mapped = check_fixture("keras-vgg16-latest.h5", Flavor::Keras, true);
    check_narrow_shapes(&mapped, true);
    let layers = hdf5::read_keras_layers(LATEST).unwrap();
    assert_eq!(layers[0].weights[0].0, "block1_conv1_W_1:0");
}
}

test! {
fn vggface_names_nested_relu_groups_small_fc8() {
    let mapped = check_fixture("vggface-vgg16.h5", Flavor::VggFace, true);
    check_narrow_shapes(&mapped, true);
    // "fc6/relu" is a layer name Keras stored as a group nested in fc6.
    let f = File::parse(VGGFACE).unwrap();
    let fc6 = f.object(f.lookup(f.root(), "fc6").unwrap()).unwrap();
    let names: Vec<String> = f.links(&fc6).unwrap().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"relu".to_string()) && names.contains(&"fc6".to_string()), "{names:?}");
    let e = err_of(hdf5::convert_keras_h5(VGGFACE));
    assert!(e.contains("conv1_1.weight"), "{e}");
}
}

test! {
fn keras3_weights_h5_layout() {
    let mapped = check_fixture("keras3-vgg16-notop.weights.h5", Flavor::Keras, false);
    check_narrow_shapes(&mapped, false);
    let layers = hdf5::read_keras_layers(KERAS3).unwrap();
    assert_eq!(layers.len(), 13);
    assert_eq!((layers[0].weights[0].0.as_str(), layers[0].weights[1].0.as_str()), ("0", "1"));
}
}

test! {
fn narrow_network_is_refused_by_the_vgg16_loader() {
    for bytes in [TOP, NOTOP_MODEL, LATEST, VGGFACE, KERAS3] {
        match hdf5::convert_keras_h5(bytes).unwrap_err() {
            WeightsError::Shape { tensor, expected, got } => {
                assert_eq!(tensor, "conv1_1.weight");
                assert_eq!(expected, vec![3, 3, 3, 64]);
                assert_eq!(got, vec![3, 3, 3, 4]);
            }
            other => panic!("expected a shape error, got {other}"),
        }
    }
}
}

test! {
fn full_size_trunk_through_the_loader_and_back() {
    let file = convert::convert(FULL, None).unwrap();
    assert_eq!(file.preprocessing, Preprocessing::keras());
    assert_eq!(file.preprocessing.channel_order(), "BGR");
    assert_eq!(file.source, hdf5::KERAS_SOURCE);
    assert_eq!(file.parameter_count(), 14_714_688);
    assert!(file.weights.fcs.is_empty());
    let back = WeightsFile::from_bytes(&file.to_bytes(false)).unwrap();
    assert_eq!(back.preprocessing, Preprocessing::keras());
    assert_eq!(back.layers(), file.layers());
    let entries: Vec<Entry<'_>> = manifest().into_iter().filter(|e| e.file == "keras-vgg16-full-notop.h5").collect();
    assert_eq!(entries.len(), 26);
    for e in &entries {
        let i = CONVS.iter().position(|c| e.ours.starts_with(c.0)).unwrap();
        let (name, cin, cout) = CONVS[i];
        let c = &back.weights.convs[i];
        if e.ours.ends_with(".weight") {
            check_values(e.path, &[3, 3, cin, cout], &c.w_hwio, e);
            // The pattern of tools/h5_fixtures.py, element by element (HWIO kept).
            for (k, &v) in c.w_hwio.iter().enumerate() {
                let expect = if k % 4099 == 0 { ((k / 4099) % 97) as f32 / 32.0 - 1.5 } else { (i as f32 - 6.0) / 16.0 };
                assert_eq!(v, expect, "{name} index {k}");
            }
        } else {
            check_values(e.path, &[cout], &c.bias, e);
        }
    }
    // conv1_1 keeps Keras's input-channel order, B, G, R (the file says BGR):
    // element (ky, kx, c, o) = (0, 0, 0, 0) is B's, index 0 in the .h5.
    let raw = hdf5::read_keras_layers(FULL).unwrap();
    assert_eq!(raw[0].name, "block1_conv1");
    for idx in [0, 1, 63, 64, 64 * 2 + 5, 1727] {
        assert_eq!(back.weights.convs[0].w_hwio[idx].to_bits(), raw[0].weights[0].2[idx].to_bits());
    }
    // The same tensors under keras_vggface's names: VGGFace preprocessing.
    let face: Vec<KerasLayer> = raw
        .iter()
        .enumerate()
        .map(|(i, l)| KerasLayer { name: CONVS[i].0.to_string(), weights: l.weights.clone() })
        .collect();
    let (flavor, tensors) = hdf5::keras_tensors(&face).unwrap();
    assert_eq!(flavor, Flavor::VggFace);
    let file = WeightsFile::from_tensors(tensors, flavor.preprocessing(), hdf5::VGGFACE_SOURCE, hdf5::VGGFACE_LICENSE).unwrap();
    let back = WeightsFile::from_bytes(&file.to_bytes(true)).unwrap();
    assert_eq!(back.preprocessing, Preprocessing::vggface());
    assert_eq!(back.preprocessing.name(), Some("VGGFace"));
    assert_eq!(back.weights.convs[12].bias, file.weights.convs[12].bias);
}
}

test! {
fn other_architectures_are_named() {
    let e = err_of(hdf5::convert_keras_h5(RESNET));
    for part in ["conv1", "res2a_branch2a", "fc1000", "block1_conv1", "conv1_1"] {
        assert!(e.contains(part), "{part} not in: {e}");
    }
    // VGG19 (block5_conv4), a batch-norm layer, a mix of both namings.
    let full = hdf5::read_keras_layers(FULL).unwrap();
    let mut vgg19 = full.clone();
    vgg19.push(KerasLayer { name: "block5_conv4".into(), weights: full[12].weights.clone() });
    let e = hdf5::keras_tensors(&vgg19).unwrap_err().to_string();
    assert!(e.contains("block5_conv4") && e.contains("expected Keras VGG16"), "{e}");
    let mut mixed = full.clone();
    mixed[3].name = "conv2_2".into();
    assert!(hdf5::keras_tensors(&mixed).unwrap_err().to_string().contains("conv2_2"));
    let mut bn = full.clone();
    bn[2].weights.push(("moving_mean:0".into(), vec![128], vec![0.0; 128]));
    let e = hdf5::keras_tensors(&bn).unwrap_err().to_string();
    assert!(e.contains("block2_conv1") && e.contains("moving_mean"), "{e}");
    // A conv layer of the wrong shape: the loader names the tensor.
    let mut wrong = full.clone();
    wrong[5].weights[0].1 = vec![3, 3, 256, 128];
    wrong[5].weights[0].2.truncate(3 * 3 * 256 * 128);
    let (_, t) = hdf5::keras_tensors(&wrong).unwrap();
    match WeightsFile::from_tensors(t, Preprocessing::keras(), "", "").unwrap_err() {
        WeightsError::Shape { tensor, .. } => assert_eq!(tensor, "conv3_2.weight"),
        other => panic!("{other}"),
    }
    // Channels-first (Theano) kernels.
    let mut th = full.clone();
    th[0].weights[0].1 = vec![64, 3, 3, 3];
    assert!(hdf5::keras_tensors(&th).unwrap_err().to_string().contains("channels-first"));
    // A file with no Keras structure at all.
    let e = err_of(hdf5::convert_keras_h5(TYPES));
    assert!(e.contains("not a Keras weights file"), "{e}");
}
}

test! {
fn datatypes_layouts_and_attributes() {
    let f = File::parse(TYPES).unwrap();
    let root = f.root();
    let read = |p: &str| {
        let ds = f.dataset(f.lookup(root, p).unwrap()).unwrap();
        (ds.shape.iter().map(|&d| d as usize).collect::<Vec<_>>(), ds.read_f32(&f).unwrap())
    };
    let (shape, reference) = read("f32le");
    assert_eq!(shape, vec![2, 3, 4]);
    for (k, &v) in reference.iter().enumerate() {
        assert_eq!(v, ((k as f64 - 11.5) / 3.0) as f32, "f32le[{k}]");
    }
    for e in manifest().iter().filter(|e| e.file == "types.h5") {
        let (shape, values) = read(e.path);
        check_values(e.path, &shape, &values, e);
        if e.path != "f16" {
            assert_eq!(values, reference, "{}", e.path);
        }
    }
    let (_, half) = read("f16");
    for (h, r) in half.iter().zip(&reference) {
        assert!((h - r).abs() <= 2e-3, "f16 {h} vs {r}");
    }
    // Integers are not weights.
    let ds = f.dataset(f.lookup(root, "i32").unwrap()).unwrap();
    assert_eq!(ds.dtype, Datatype::Int { size: 4, signed: true, big_endian: false });
    assert!(ds.read_f32(&f).unwrap_err().to_string().contains("int32"));
    // Empty, never-written chunked, a nested path and a soft link to it.
    assert_eq!(read("empty"), (vec![0, 4], vec![]));
    assert_eq!(read("unwritten"), (vec![3], vec![0.0; 3]));
    assert_eq!(read("sub/deeper/x"), (vec![1], vec![7.0]));
    assert_eq!(read("soft"), (vec![1], vec![7.0]));
    let links = f.links(&f.object(root).unwrap()).unwrap();
    assert!(links.contains(&("soft".to_string(), Link::Soft("/sub/deeper/x".into()))), "{links:?}");
    // Attributes.
    let obj = f.object(root).unwrap();
    let s = |n: &str| f.strings(&f.attribute_named(&obj, n).unwrap().unwrap()).unwrap();
    assert_eq!(s("fixed"), ["alpha", "be", "gamma_delta"]);
    assert_eq!(s("vlen"), ["one", "two", "three\u{e9}"]);
    assert_eq!(s("scalar_str"), ["hello"]);
    assert_eq!(s("scalar_bytes"), ["abc"]);
    let floats = f.attribute_named(&obj, "floats").unwrap().unwrap();
    assert!(f.strings(&floats).unwrap_err().to_string().contains("float32"));
    assert!(f.lookup(root, "sub/nothing").unwrap_err().to_string().contains("nothing"));
}
}

// ------------------------------------------------------------ bad input --

const ALL: [&[u8]; 8] = [TOP, NOTOP_MODEL, LATEST, FULL, VGGFACE, RESNET, TYPES, KERAS3];

/// Parse as far as the Keras converter and the generic reader go; never panic.
fn exercise(bytes: &[u8]) -> bool {
    let ok = match hdf5::read_keras_layers(bytes) {
        Ok(layers) => {
            if let Ok((flavor, t)) = hdf5::keras_tensors(&layers) {
                let _ = WeightsFile::from_tensors(t, flavor.preprocessing(), "", "");
            }
            true
        }
        Err(_) => false,
    };
    if let Ok(f) = File::parse(bytes) {
        if let Ok(root) = f.object(f.root()) {
            let _ = f.attributes(&root).map(|a| a.iter().filter(|a| f.strings(a).is_ok()).count());
            if let Ok(links) = f.links(&root) {
                for (_, l) in links.into_iter().take(8) {
                    if let Link::Hard(a) = l {
                        let _ = f.dataset(a).map(|d| d.read_f32(&f));
                    }
                }
            }
        }
    }
    ok
}

test! {
fn every_truncation_is_an_error() {
    for (i, bytes) in ALL.iter().enumerate() {
        let layers = hdf5::read_keras_layers(bytes);
        let step = (bytes.len() / 400).max(1);
        let mut cut = 0;
        while cut < bytes.len() {
            let r = hdf5::read_keras_layers(&bytes[..cut]);
            // Data past the last structure can be cut without harm only if nothing is lost.
            if let (Ok(got), Ok(full)) = (&r, &layers) {
                assert_ne!(got, full, "fixture {i} cut at {cut} of {} read as if whole", bytes.len());
            }
            assert!(hdf5::convert_keras_h5(&bytes[..cut]).is_err(), "fixture {i} cut at {cut}");
            cut += step + (cut % 7);
        }
    }
    // Every cut of the small file, at every byte.
    for cut in 0..TOP.len() {
        assert!(hdf5::read_keras_layers(&TOP[..cut]).is_err(), "cut at {cut}");
    }
}
}

test! {
fn integer_weights_are_named() {
    // Turn the first float32 datatype message (block1_conv1's kernel) into int32.
    let f32_le = [0x11, 0x20, 0x1f, 0x00, 0x04, 0x00, 0x00, 0x00];
    let at = TOP.windows(8).position(|w| w == f32_le).expect("a float32 datatype message");
    let mut bad = TOP.to_vec();
    bad[at..at + 4].copy_from_slice(&[0x10, 0x08, 0x00, 0x00]);
    match hdf5::read_keras_layers(&bad).unwrap_err() {
        WeightsError::Tensor { tensor, message } => {
            assert!(tensor.starts_with("block1_conv1/"), "{tensor}");
            assert!(message.contains("int32"), "{message}");
        }
        other => panic!("{other}"),
    }
}
}

test! {
fn wrong_magic_and_garbage() {
    let e = err_of(hdf5::convert_keras_h5(b"not an hdf5 file at all, just text"));
    assert!(e.contains("not an HDF5 file"), "{e}");
    let mut bad = TOP.to_vec();
    bad[1] = b'X';
    assert!(err_of(hdf5::convert_keras_h5(&bad)).contains("signature"));
    let mut v9 = TOP.to_vec();
    v9[8] = 9;
    assert!(err_of(hdf5::convert_keras_h5(&v9)).contains("superblock version 9"));
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for n in 0..500 {
        let mut g = hdf5::file::MAGIC.to_vec();
        g.extend((0..n % 300).map(|_| (rng.next() & 0xff) as u8));
        exercise(&g);
    }
}
}

test! {
fn lookup3_checksums_guard_new_style_headers() {
    // The vectors of lookup3.c's driver.
    assert_eq!(hdf5::file::lookup3(b""), 0xdead_beef);
    assert_eq!(hdf5::file::lookup3(b"Four score and seven years ago"), 0x1777_0551);
    // A flipped bit in the libver="latest" file's superblock or root object header is caught.
    let f = File::parse(LATEST).unwrap();
    let root = f.root() as usize;
    for at in [20, root + 7, root + 30] {
        let mut bad = LATEST.to_vec();
        bad[at] ^= 0x10;
        let e = hdf5::read_keras_layers(&bad).unwrap_err().to_string();
        assert!(e.contains("checksum"), "flip at {at}: {e}");
    }
}
}

test! {
fn bit_flips_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // The superblock and root group of each, every bit; then random bits anywhere.
    for bytes in [TOP, LATEST, NOTOP_MODEL] {
        for i in 0..96 * 8 {
            let mut bad = bytes.to_vec();
            bad[i / 8] ^= 1 << (i % 8);
            exercise(&bad);
        }
        for _ in 0..1000 {
            let mut bad = bytes.to_vec();
            let i = (rng.next() as usize) % bad.len();
            bad[i] ^= 1 << (rng.next() % 8);
            exercise(&bad);
        }
    }
}
}

test! {
fn random_mutation_fuzz() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut accepted = 0;
    // FEATVIS_H5_FUZZ_ROUNDS=N runs a longer fuzz natively.
    #[cfg(not(target_arch = "wasm32"))]
    let rounds = std::env::var("FEATVIS_H5_FUZZ_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(2000);
    #[cfg(target_arch = "wasm32")]
    let rounds = 2000;
    for round in 0..rounds {
        let src = ALL[round % ALL.len()];
        if src.len() == FULL.len() && round % 50 != 3 {
            continue; // the big file decompresses 59 MB per run
        }
        let mut bad = src.to_vec();
        for _ in 0..1 + rng.next() % 8 {
            let at = (rng.next() as usize) % bad.len();
            match rng.next() % 4 {
                0 => bad[at] ^= 1 << (rng.next() % 8),
                1 => bad[at] = (rng.next() & 0xff) as u8,
                2 => bad[at] = [0x00, 0xff, 0x80, 0x7f][(rng.next() % 4) as usize],
                _ => {
                    let n = ((rng.next() % 8) as usize).min(bad.len() - at);
                    for b in &mut bad[at..at + n] {
                        *b = 0xff;
                    }
                }
            }
        }
        if exercise(&bad) {
            accepted += 1;
        }
    }
    // Mutations of weight values still parse; most structural ones do not.
    assert!(accepted > 0);
}
}

/// Parse speed on a real-size file: FEATVIS_H5_BENCH=path/to/vgg16.h5 cargo test
/// --release --test weights_h5 -- --ignored --nocapture parse_speed
#[cfg(not(target_arch = "wasm32"))]
#[test]
#[ignore]
fn parse_speed() {
    let Ok(path) = std::env::var("FEATVIS_H5_BENCH") else { return };
    let bytes = std::fs::read(&path).unwrap();
    let t = std::time::Instant::now();
    let file = hdf5::convert_keras_h5(&bytes).unwrap();
    let s = t.elapsed().as_secs_f64();
    println!(
        "{path}: {} parameters, {:.1} MB in {:.3} s = {:.0} MB/s",
        file.parameter_count(),
        bytes.len() as f64 / 1e6,
        s,
        bytes.len() as f64 / 1e6 / s
    );
}
