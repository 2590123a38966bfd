//! DEFLATE (RFC 1951) and zlib (RFC 1950) decompression (miniz_oxide behind
//! the readers' limits and messages) against streams made by Python's zlib
//! (tests/fixtures/torch/*.z, written by tools/torch_fixtures.py; the inputs
//! are regenerated here), plus truncation, corruption, output-limit and
//! garbage inputs. No file system
//! access: the fixtures are compiled in, so this also builds for wasm.

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use featvis::weights::inflate::{inflate, zlib};

/// The generator tools/torch_fixtures.py uses.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = (self.0 * 1103515245 + 12345) % (1 << 31);
        self.0 >> 16
    }
}

fn words_text(n: usize, seed: u64) -> Vec<u8> {
    let words: [&[u8]; 12] =
        [b"feature", b"visualization", b"of", b"vgg16", b"conv", b"layer", b"channel", b"neuron", b"the", b"a", b"gradient", b"fourier"];
    let mut g = Lcg(seed);
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(words[(g.next() % 12) as usize]);
        out.push(if i % 13 == 12 { b'\n' } else { b' ' });
    }
    out
}

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut g = Lcg(seed);
    (0..n).map(|_| (g.next() & 0xff) as u8).collect()
}

/// Same as `inflate_inputs()` in tools/torch_fixtures.py.
fn input(name: &str) -> Vec<u8> {
    let text = words_text(6000, 12345);
    match name {
        "empty" => Vec::new(),
        "noise" => noise(4000, 777),
        "text" => text,
        "mixed" => {
            let mut v = noise(300, 777);
            v.extend(std::iter::repeat_n(0u8, 5000));
            v.extend_from_slice(&text[..3000]);
            v.extend(noise(200, 5));
            for _ in 0..700 {
                v.extend_from_slice(b"ab");
            }
            v
        }
        _ => panic!("no input {name}"),
    }
}

macro_rules! fixtures {
    ($($input:literal / $kind:literal / $variant:literal),* $(,)?) => {
        &[$(($input, $kind, $variant, include_bytes!(concat!("fixtures/torch/", $input, "-", $kind, "-", $variant, ".z")) as &[u8])),*]
    };
}

type Fixture = (&'static str, &'static str, &'static str, &'static [u8]);

const FIXTURES: &[Fixture] = fixtures![
    "empty" / "zlib" / "0-default",
    "empty" / "zlib" / "1-default",
    "empty" / "zlib" / "9-default",
    "empty" / "zlib" / "9-fixed",
    "empty" / "zlib" / "6-huffman",
    "empty" / "zlib" / "6-rle",
    "empty" / "raw" / "9-default",
    "noise" / "zlib" / "0-default",
    "noise" / "zlib" / "1-default",
    "noise" / "zlib" / "9-default",
    "noise" / "zlib" / "9-fixed",
    "noise" / "zlib" / "6-huffman",
    "noise" / "zlib" / "6-rle",
    "noise" / "raw" / "9-default",
    "text" / "zlib" / "0-default",
    "text" / "zlib" / "1-default",
    "text" / "zlib" / "9-default",
    "text" / "zlib" / "9-fixed",
    "text" / "zlib" / "6-huffman",
    "text" / "zlib" / "6-rle",
    "text" / "raw" / "9-default",
    "mixed" / "zlib" / "0-default",
    "mixed" / "zlib" / "1-default",
    "mixed" / "zlib" / "9-default",
    "mixed" / "zlib" / "9-fixed",
    "mixed" / "zlib" / "6-huffman",
    "mixed" / "zlib" / "6-rle",
    "mixed" / "raw" / "9-default",
];

fn decode(kind: &str, data: &[u8], limit: usize) -> Result<Vec<u8>, featvis::weights::WeightsError> {
    if kind == "zlib" {
        zlib(data, limit)
    } else {
        inflate(data, limit)
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("first difference at byte {i}: {} vs {}", a[i], b[i]),
        None => format!("lengths {} vs {}", a.len(), b.len()),
    }
}

fn fixture_test(name: &str) {
    for &(input_name, kind, variant, data) in FIXTURES.iter().filter(|f| f.0 == name) {
        let expected = input(input_name);
        let got = decode(kind, data, expected.len()).unwrap_or_else(|e| panic!("{input_name}-{kind}-{variant}: {e}"));
        assert!(got == expected, "{input_name}-{kind}-{variant}: {}", first_difference(&got, &expected));
        // One byte less room than the output needs is an error.
        if !expected.is_empty() {
            let e = decode(kind, data, expected.len() - 1).expect_err("a limit below the output size must fail");
            assert!(e.to_string().contains("more than the expected"), "{input_name}-{kind}-{variant}: {e}");
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn python_zlib_streams_empty() {
    fixture_test("empty");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn python_zlib_streams_noise() {
    fixture_test("noise");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn python_zlib_streams_text() {
    fixture_test("text");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn python_zlib_streams_mixed() {
    fixture_test("mixed");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn every_truncation_is_an_error() {
    for &(input_name, kind, variant, data) in FIXTURES {
        let limit = input(input_name).len();
        // Every prefix of the small streams; a spread of prefixes of the big ones.
        let step = (data.len() / 1500).max(1);
        let mut cut = 0;
        while cut < data.len() {
            if let Ok(out) = decode(kind, &data[..cut], limit) {
                panic!("{input_name}-{kind}-{variant} cut to {cut} of {} bytes decoded to {} bytes", data.len(), out.len());
            }
            cut += if data.len() - cut < 64 { 1 } else { step };
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn corrupt_checksum_and_header() {
    let (_, _, _, data) = FIXTURES.iter().find(|f| f.0 == "mixed" && f.1 == "zlib" && f.2 == "9-default").copied().unwrap();
    let n = data.len();
    let mut bad = data.to_vec();
    bad[n - 1] ^= 1;
    let e = zlib(&bad, 1 << 20).unwrap_err().to_string();
    assert!(e.contains("Adler-32"), "{e}");
    let mut bad = data.to_vec();
    bad[0] = 0x79;
    let e = zlib(&bad, 1 << 20).unwrap_err().to_string();
    assert!(e.contains("zlib"), "{e}");
    let mut bad = data.to_vec();
    bad[1] ^= 0x20;
    assert!(zlib(&bad, 1 << 20).is_err());
    assert!(zlib(&[], 10).is_err());
    assert!(inflate(&[], 10).is_err());
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn hand_made_streams() {
    // Final stored block "hi".
    assert_eq!(inflate(&[0x01, 0x02, 0x00, 0xfd, 0xff, b'h', b'i'], 10).unwrap(), b"hi");
    // LEN and NLEN disagree.
    let e = inflate(&[0x01, 0x02, 0x00, 0xfd, 0xfe, b'h', b'i'], 10).unwrap_err().to_string();
    assert!(e.contains("corrupt"), "LEN/NLEN: {e}");
    // Block type 3.
    let e = inflate(&[0x07, 0, 0, 0], 10).unwrap_err().to_string();
    assert!(e.contains("corrupt"), "block type 3: {e}");
    // Fixed block: literal 'a' (0x30 + 0x61 = 0x91, 8 bits), then length 3
    // (symbol 257, 7 bits 0000001) at distance 2 (code 1, 5 bits): reaches
    // before the start of the output.
    let mut w = BitWriter::default();
    w.put(1, 1);
    w.put(1, 2);
    w.put_rev(0x91, 8);
    w.put_rev(0b0000001, 7);
    w.put_rev(1, 5);
    w.put_rev(0, 7);
    let e = inflate(&w.finish(), 100).unwrap_err().to_string();
    assert!(e.contains("corrupt"), "distance before the start: {e}");
    // Same with distance 1: "aaaa".
    let mut w = BitWriter::default();
    w.put(1, 1);
    w.put(1, 2);
    w.put_rev(0x91, 8);
    w.put_rev(0b0000001, 7);
    w.put_rev(0, 5);
    w.put_rev(0, 7);
    assert_eq!(inflate(&w.finish(), 100).unwrap(), b"aaaa");
    // Dynamic block whose code-length code is over-subscribed (three codes of length 1).
    let mut w = BitWriter::default();
    w.put(1, 1);
    w.put(2, 2);
    w.put(0, 5);
    w.put(0, 5);
    w.put(0, 4);
    for _ in 0..3 {
        w.put(1, 3);
    }
    w.put(0, 3);
    let e = inflate(&w.finish(), 100).unwrap_err().to_string();
    assert!(e.contains("corrupt"), "over-subscribed code: {e}");
    // Many empty non-final stored blocks, then the data ends: an error, not a hang.
    let mut s = Vec::new();
    for _ in 0..1000 {
        s.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
    }
    assert!(inflate(&s, 100).is_err());
}

#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl BitWriter {
    /// `k` bits of `v`, least significant first (header fields, extra bits).
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

    /// A Huffman code of `k` bits, most significant first.
    fn put_rev(&mut self, v: u32, k: u32) {
        for i in (0..k).rev() {
            self.put((v >> i) & 1, 1);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn garbage_and_bit_flips_never_panic() {
    let mut g = Lcg(99);
    for len in 0..3000usize {
        let bytes: Vec<u8> = (0..len % 300).map(|_| (g.next() & 0xff) as u8).collect();
        let _ = inflate(&bytes, 1 << 16);
        let _ = zlib(&bytes, 1 << 16);
        let mut z = vec![0x78, 0x9c];
        z.extend_from_slice(&bytes);
        let _ = zlib(&z, 1 << 16);
    }
    for &(input_name, kind, variant, data) in FIXTURES.iter().filter(|f| f.0 == "mixed") {
        let limit = input(input_name).len();
        for i in 0..data.len().min(600) {
            let mut bad = data.to_vec();
            bad[i] ^= 1 << (g.next() % 8);
            if let Ok(out) = decode(kind, &bad, limit) {
                assert!(out.len() <= limit, "{input_name}-{kind}-{variant}: bit flip at {i} grew the output past the limit");
            }
        }
    }
}
