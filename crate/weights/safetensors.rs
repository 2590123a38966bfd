//! The safetensors format, read with the `safetensors` crate and checked on
//! the way in: an 8-byte little-endian header length N, N bytes of JSON
//! (`{"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
//! "__metadata__": {string: string}}`), then the tensor data.
//!
//! The crate parses and validates the format (contiguous offsets that match
//! each shape and dtype and cover the data). Before it runs, the header is
//! read with serde_json for what the crate does not promise or does not
//! name: duplicate keys (its map keeps the last one), caps on the tensor
//! count, array lengths and rank, only F32 and F16, and errors that name
//! the tensor or key and what is wrong. Values are not converted here.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::Value;

pub use ::safetensors::Dtype;

use super::WeightsError;

/// Headers larger than this are refused (the `safetensors` crate's limit).
pub const MAX_HEADER: u64 = 100_000_000;
/// Ranks above this are refused (VGG16 needs at most 4).
pub const MAX_RANK: usize = 8;
/// More tensors than this are refused (VGG16 has 32; the largest models a few thousand).
pub const MAX_TENSORS: usize = 1 << 16;

/// One tensor of a parsed file, borrowing its bytes.
#[derive(Clone, Debug)]
pub struct TensorView<'a> {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

impl TensorView<'_> {
    /// The values as f32; NaN or ±inf is an error naming the tensor and index.
    pub fn to_f32(&self) -> Result<Vec<f32>, WeightsError> {
        let out: Vec<f32> = match self.dtype {
            Dtype::F16 => self.data.chunks_exact(2).map(|c| super::f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
            _ => self.data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        };
        if let Some((index, &value)) = out.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(WeightsError::NonFinite { tensor: self.name.clone(), index, value });
        }
        Ok(out)
    }
}

/// A parsed file: tensors in data order, and the metadata in key order.
#[derive(Clone, Debug)]
pub struct SafeTensors<'a> {
    pub tensors: Vec<TensorView<'a>>,
    pub metadata: BTreeMap<String, String>,
}

impl<'a> SafeTensors<'a> {
    pub fn tensor(&self, name: &str) -> Option<&TensorView<'a>> {
        self.tensors.iter().find(|t| t.name == name)
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }
}

/// Walks any JSON value for what serde_json lets through: a key twice in
/// one object (its maps, like the crate's, keep the last), more keys at the
/// top than [`MAX_TENSORS`] allows, arrays longer than any header needs.
#[derive(Clone, Copy)]
struct Walk {
    top: bool,
}

/// No array in a valid header is longer than a shape.
const MAX_ARRAY: usize = 64;

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut n = 0;
        while seq.next_element_seed(Walk { top: false })?.is_some() {
            n += 1;
            if n > MAX_ARRAY {
                return Err(de::Error::custom(format!("an array of more than {MAX_ARRAY} items")));
            }
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // A set finds a duplicate among a million keys without a million² comparisons.
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                let shown: String = key.chars().take(80).collect();
                return Err(de::Error::custom(format!("duplicate key \"{shown}\"")));
            }
            seen.insert(key);
            if self.top && seen.len() > MAX_TENSORS + 1 {
                return Err(de::Error::custom(format!("more than {MAX_TENSORS} tensors")));
            }
            map.next_value_seed(Walk { top: false })?;
        }
        Ok(())
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn bad(tensor: &str, message: impl Into<String>) -> WeightsError {
    WeightsError::Tensor { tensor: tensor.to_string(), message: message.into() }
}

/// The header as JSON: syntax, duplicate keys and sizes checked by [`Walk`],
/// then read into a tree. Errors give the byte offset.
fn header_json(header: &[u8]) -> Result<Value, WeightsError> {
    let at = |e: &serde_json::Error| {
        let line_start: usize = header.split(|&b| b == b'\n').take(e.line().saturating_sub(1)).map(|l| l.len() + 1).sum();
        line_start + e.column().saturating_sub(1)
    };
    let json_err = |e: serde_json::Error| {
        let text = e.to_string();
        // serde_json ends its messages with " at line L column C": the offset says it.
        let message = match text.rsplit_once(" at line ").map_or(text.as_str(), |(m, _)| m) {
            "recursion limit exceeded" => "nested too deeply (more than 128 levels)".to_string(),
            m => m.to_string(),
        };
        match e.is_data() {
            // Walk's refusals: the JSON is well formed.
            true => WeightsError::Header(format!("{message} (at byte {})", at(&e))),
            false => WeightsError::Json { offset: at(&e), message },
        }
    };
    let mut de = serde_json::Deserializer::from_slice(header);
    Walk { top: true }.deserialize(&mut de).and_then(|()| de.end()).map_err(json_err)?;
    serde_json::from_slice(header).map_err(json_err)
}

/// Parse and check a safetensors file (values are not converted yet).
pub fn parse(bytes: &[u8]) -> Result<SafeTensors<'_>, WeightsError> {
    let Some(len_bytes) = bytes.first_chunk::<8>() else {
        return Err(WeightsError::Truncated { what: "the 8-byte header length".into(), needed: 8, available: bytes.len() as u64 });
    };
    let n = u64::from_le_bytes(*len_bytes);
    if n > MAX_HEADER {
        return Err(WeightsError::HeaderTooLarge { length: n, max: MAX_HEADER });
    }
    let rest = (bytes.len() - 8) as u64;
    if n > rest {
        return Err(WeightsError::Truncated { what: "the JSON header".into(), needed: n, available: rest });
    }
    let (header, data) = bytes[8..].split_at(n as usize);
    let root = header_json(header)?;
    let Value::Object(members) = root else {
        return Err(WeightsError::Header(format!("the header is {}, expected an object", kind(&root))));
    };

    // Each entry on its own: metadata strings; a tensor's dtype, rank, and
    // offsets against its shape and the data.
    let mut metadata = BTreeMap::new();
    let mut ranges: Vec<(u64, u64, &str)> = Vec::with_capacity(members.len());
    for (name, v) in &members {
        if name == "__metadata__" {
            let Value::Object(m) = v else {
                return Err(WeightsError::Header(format!("__metadata__ is {}, expected an object of strings", kind(v))));
            };
            for (k, mv) in m {
                let Value::String(s) = mv else {
                    return Err(WeightsError::Header(format!("metadata `{k}` is {}, expected a string", kind(mv))));
                };
                metadata.insert(k.clone(), s.clone());
            }
            continue;
        }
        let Value::Object(entry) = v else {
            return Err(bad(name, format!("its header entry is {}, expected an object", kind(v))));
        };
        if let Some(k) = entry.keys().find(|k| !["dtype", "shape", "data_offsets"].contains(&k.as_str())) {
            return Err(bad(name, format!("unexpected key \"{k}\" in its header entry")));
        }
        let (dtype, size) = match entry.get("dtype") {
            Some(Value::String(s)) if s == "F32" => (Dtype::F32, 4),
            Some(Value::String(s)) if s == "F16" => (Dtype::F16, 2),
            Some(Value::String(s)) => return Err(WeightsError::UnknownDtype { tensor: name.clone(), dtype: s.clone() }),
            _ => return Err(bad(name, "missing or non-string \"dtype\"")),
        };
        let Some(Value::Array(dims)) = entry.get("shape") else {
            return Err(bad(name, "missing or non-array \"shape\""));
        };
        if dims.len() > MAX_RANK {
            return Err(bad(name, format!("its shape has {} dimensions, more than the {MAX_RANK} accepted", dims.len())));
        }
        let shape: Vec<u64> = dims
            .iter()
            .map(Value::as_u64)
            .collect::<Option<_>>()
            .ok_or_else(|| bad(name, "a shape entry is not a non-negative integer"))?;
        let count =
            shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(|| bad(name, "the shape's element count overflows"))?;
        let needed = count.checked_mul(size).ok_or_else(|| bad(name, "the shape's byte size overflows"))?;
        if shape.iter().any(|&d| usize::try_from(d).is_err()) {
            return Err(bad(name, "a shape entry overflows this platform's usize"));
        }
        let Some(Value::Array(offsets)) = entry.get("data_offsets").filter(|o| o.as_array().is_some_and(|a| a.len() == 2)) else {
            return Err(bad(name, "\"data_offsets\" must be an array [begin, end]"));
        };
        let (Some(begin), Some(end)) = (offsets[0].as_u64(), offsets[1].as_u64()) else {
            return Err(bad(name, "data_offsets are not non-negative integers"));
        };
        if begin > end {
            return Err(bad(name, format!("data_offsets [{begin}, {end}] run backwards")));
        }
        if end > data.len() as u64 {
            return Err(bad(name, format!("data_offsets [{begin}, {end}] run past the end of the data ({} bytes)", data.len())));
        }
        if end - begin != needed {
            return Err(bad(
                name,
                format!("data_offsets [{begin}, {end}] hold {} bytes but shape {shape:?} of {dtype} needs {needed}", end - begin),
            ));
        }
        ranges.push((begin, end, name));
    }
    ranges.sort();
    for w in ranges.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(WeightsError::Overlap { first: w[0].2.to_string(), second: w[1].2.to_string() });
        }
    }

    // The format itself, by the crate: what is left for it to refuse are
    // gaps between tensors and bytes after the last one.
    let st = ::safetensors::SafeTensors::deserialize(bytes).map_err(|e| match e {
        ::safetensors::SafeTensorError::InvalidOffset(name) => {
            bad(&name, "its data does not start where the previous tensor's ends (safetensors data is contiguous, without gaps)")
        }
        ::safetensors::SafeTensorError::MetadataIncompleteBuffer => {
            WeightsError::Header(format!("the tensors do not cover the {} bytes of data: bytes are left after them", data.len()))
        }
        e => WeightsError::Header(format!("safetensors: {e}")),
    })?;
    let mut tensors = Vec::with_capacity(ranges.len());
    for &(_, _, name) in &ranges {
        let view = st.tensor(name).map_err(|e| bad(name, e.to_string()))?;
        tensors.push(TensorView { name: name.to_string(), dtype: view.dtype(), shape: view.shape().to_vec(), data: view.data() });
    }
    Ok(SafeTensors { tensors, metadata })
}

/// One tensor to write.
pub struct TensorOut<'a> {
    pub name: &'a str,
    pub shape: Vec<usize>,
    pub values: &'a [f32],
}

/// A header entry, written.
#[derive(Serialize)]
struct EntryOut<'a> {
    dtype: Dtype,
    shape: &'a [usize],
    data_offsets: [usize; 2],
}

/// The header in a fixed order: metadata first, then the tensors as given
/// (the crate's writer orders the metadata by a random hash, so the same
/// weights would not give the same bytes twice).
struct HeaderOut<'a> {
    metadata: &'a [(String, String)],
    tensors: Vec<(&'a str, EntryOut<'a>)>,
}

impl Serialize for HeaderOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        if !self.metadata.is_empty() {
            let meta: Vec<(&str, &str)> = self.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            map.serialize_entry("__metadata__", &Ordered(&meta))?;
        }
        for (name, entry) in &self.tensors {
            map.serialize_entry(name, entry)?;
        }
        map.end()
    }
}

/// Pairs written as a JSON object in their order.
struct Ordered<'a>(&'a [(&'a str, &'a str)]);

impl Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().copied())
    }
}

/// Write tensors (in the given order) and metadata as safetensors. With `F16`
/// values are rounded to nearest even; beyond ±65504 they become ±inf, which
/// the reader refuses. The header is padded with spaces to a multiple of 8.
/// Only `Dtype::F32` and `Dtype::F16` are written (any other is taken as F32).
pub fn write(tensors: &[TensorOut<'_>], metadata: &[(String, String)], dtype: Dtype) -> Vec<u8> {
    let dtype = if dtype == Dtype::F16 { Dtype::F16 } else { Dtype::F32 };
    let size = dtype.bitsize() / 8;
    let mut offset = 0;
    let entries = tensors
        .iter()
        .map(|t| {
            let n = t.values.len() * size;
            offset += n;
            (t.name, EntryOut { dtype, shape: &t.shape, data_offsets: [offset - n, offset] })
        })
        .collect();
    // Strings, numbers and arrays of them: serializing cannot fail.
    let mut header = serde_json::to_vec(&HeaderOut { metadata, tensors: entries }).unwrap_or_default();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for t in tensors {
        match dtype {
            Dtype::F16 => t.values.iter().for_each(|v| out.extend_from_slice(&super::f32_to_f16(*v).to_le_bytes())),
            _ => t.values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        }
    }
    out
}
