//! The safetensors format: an 8-byte little-endian header length N, N bytes
//! of JSON (`{"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
//! "__metadata__": {string: string}}`), then the tensor data, with offsets
//! relative to the data's start. The reader checks everything it is given.

use super::half::{f16_to_f32, f32_to_f16};
use super::json::{self, Json};
use super::WeightsError;

/// Headers larger than this are refused (the reference implementation's limit).
pub const MAX_HEADER: u64 = 100 << 20;
/// Ranks above this are refused (VGG16 needs at most 4).
pub const MAX_RANK: usize = 8;
/// More tensors than this are refused (VGG16 has 32; the largest models a few thousand).
pub const MAX_TENSORS: usize = 1 << 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
}

impl Dtype {
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
        }
    }

    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        }
    }
}

/// One tensor of a parsed file, borrowing its bytes.
#[derive(Clone, Debug)]
pub struct TensorView<'a> {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

impl TensorView<'_> {
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The values as f32; NaN or ±inf is an error naming the tensor and index.
    pub fn to_f32(&self) -> Result<Vec<f32>, WeightsError> {
        let out: Vec<f32> = match self.dtype {
            Dtype::F32 => self.data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => self.data.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
        };
        if let Some((index, &value)) = out.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(WeightsError::NonFinite { tensor: self.name.clone(), index, value });
        }
        Ok(out)
    }
}

/// A parsed file: tensors in data order, and the metadata in header order.
#[derive(Clone, Debug)]
pub struct SafeTensors<'a> {
    pub tensors: Vec<TensorView<'a>>,
    pub metadata: Vec<(String, String)>,
}

impl<'a> SafeTensors<'a> {
    pub fn tensor(&self, name: &str) -> Option<&TensorView<'a>> {
        self.tensors.iter().find(|t| t.name == name)
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

fn bad(tensor: &str, message: impl Into<String>) -> WeightsError {
    WeightsError::Tensor { tensor: tensor.to_string(), message: message.into() }
}

/// Parse and check a safetensors file (values are not converted yet).
pub fn parse(bytes: &[u8]) -> Result<SafeTensors<'_>, WeightsError> {
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(WeightsError::Truncated { what: "the 8-byte header length".into(), needed: 8, available: bytes.len() as u64 });
    };
    let mut lb = [0u8; 8];
    lb.copy_from_slice(len_bytes);
    let n = u64::from_le_bytes(lb);
    if n > MAX_HEADER {
        return Err(WeightsError::HeaderTooLarge { length: n, max: MAX_HEADER });
    }
    let rest = (bytes.len() - 8) as u64;
    if n > rest {
        return Err(WeightsError::Truncated { what: "the JSON header".into(), needed: n, available: rest });
    }
    let n = n as usize; // <= MAX_HEADER
    let header = &bytes[8..8 + n];
    let data = &bytes[8 + n..];
    let root = json::parse(header)?;
    let Json::Obj(members) = root else {
        return Err(WeightsError::Header(format!("the header is {}, expected an object", root.kind())));
    };
    let mut tensors = Vec::new();
    let mut metadata = Vec::new();
    let mut ranges: Vec<(u64, u64, usize)> = Vec::new();
    for (name, v) in &members {
        if name == "__metadata__" {
            let Json::Obj(m) = v else {
                return Err(WeightsError::Header(format!("__metadata__ is {}, expected an object of strings", v.kind())));
            };
            for (k, mv) in m {
                let Json::Str(s) = mv else {
                    return Err(WeightsError::Header(format!("metadata `{k}` is {}, expected a string", mv.kind())));
                };
                metadata.push((k.clone(), s.clone()));
            }
            continue;
        }
        if !matches!(v, Json::Obj(_)) {
            return Err(bad(name, format!("its header entry is {}, expected an object", v.kind())));
        }
        let dtype = match v.get("dtype") {
            Some(Json::Str(s)) if s == "F32" => Dtype::F32,
            Some(Json::Str(s)) if s == "F16" => Dtype::F16,
            Some(Json::Str(s)) => return Err(WeightsError::UnknownDtype { tensor: name.clone(), dtype: s.clone() }),
            _ => return Err(bad(name, "missing or non-string \"dtype\"")),
        };
        let Some(Json::Arr(dims)) = v.get("shape") else {
            return Err(bad(name, "missing or non-array \"shape\""));
        };
        if dims.len() > MAX_RANK {
            return Err(bad(name, format!("its shape has {} dimensions, more than the {MAX_RANK} accepted", dims.len())));
        }
        if tensors.len() >= MAX_TENSORS {
            return Err(WeightsError::Header(format!("more than {MAX_TENSORS} tensors")));
        }
        let mut shape = Vec::with_capacity(dims.len());
        let mut count: u64 = 1;
        for d in dims {
            let d = d.as_u64().ok_or_else(|| bad(name, "a shape entry is not a non-negative integer"))?;
            count = count.checked_mul(d).ok_or_else(|| bad(name, "the shape's element count overflows"))?;
            shape.push(usize::try_from(d).map_err(|_| bad(name, format!("the shape entry {d} overflows this platform's usize")))?);
        }
        let bytes_needed = count
            .checked_mul(dtype.size() as u64)
            .ok_or_else(|| bad(name, "the shape's byte size overflows"))?;
        let offs = match v.get("data_offsets") {
            Some(Json::Arr(o)) if o.len() == 2 => o,
            _ => return Err(bad(name, "\"data_offsets\" must be an array [begin, end]")),
        };
        let (Some(begin), Some(end)) = (offs[0].as_u64(), offs[1].as_u64()) else {
            return Err(bad(name, "data_offsets are not non-negative integers"));
        };
        if begin > end {
            return Err(bad(name, format!("data_offsets [{begin}, {end}] run backwards")));
        }
        if end > data.len() as u64 {
            return Err(bad(name, format!("data_offsets [{begin}, {end}] run past the end of the data ({} bytes)", data.len())));
        }
        if end - begin != bytes_needed {
            return Err(bad(
                name,
                format!("data_offsets [{begin}, {end}] hold {} bytes but shape {shape:?} of {} needs {bytes_needed}", end - begin, dtype.name()),
            ));
        }
        if let Json::Obj(m) = v {
            if let Some((k, _)) = m.iter().find(|(k, _)| !["dtype", "shape", "data_offsets"].contains(&k.as_str())) {
                return Err(bad(name, format!("unexpected key \"{k}\" in its header entry")));
            }
        }
        ranges.push((begin, end, tensors.len()));
        tensors.push(TensorView { name: name.clone(), dtype, shape, data: &data[begin as usize..end as usize] });
    }
    ranges.sort();
    for w in ranges.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(WeightsError::Overlap { first: tensors[w[0].2].name.clone(), second: tensors[w[1].2].name.clone() });
        }
    }
    Ok(SafeTensors { tensors, metadata })
}

/// One tensor to write.
pub struct TensorOut<'a> {
    pub name: &'a str,
    pub shape: Vec<usize>,
    pub values: &'a [f32],
}

/// Write tensors (in the given order) and metadata as safetensors. With `F16`
/// values are rounded to nearest even; beyond ±65504 they become ±inf, which
/// the reader refuses. The header is padded with spaces to a multiple of 8.
pub fn write(tensors: &[TensorOut<'_>], metadata: &[(String, String)], dtype: Dtype) -> Vec<u8> {
    let mut header = String::from("{");
    if !metadata.is_empty() {
        header.push_str("\"__metadata__\":{");
        for (i, (k, v)) in metadata.iter().enumerate() {
            if i > 0 {
                header.push(',');
            }
            header.push_str(&json::quote(k));
            header.push(':');
            header.push_str(&json::quote(v));
        }
        header.push('}');
    }
    let mut offset = 0usize;
    for (i, t) in tensors.iter().enumerate() {
        if i > 0 || !metadata.is_empty() {
            header.push(',');
        }
        let size = t.values.len() * dtype.size();
        let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        header.push_str(&format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            json::quote(t.name),
            dtype.name(),
            shape.join(","),
            offset,
            offset + size
        ));
        offset += size;
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for t in tensors {
        match dtype {
            Dtype::F32 => t.values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Dtype::F16 => t.values.iter().for_each(|v| out.extend_from_slice(&f32_to_f16(*v).to_le_bytes())),
        }
    }
    out
}
