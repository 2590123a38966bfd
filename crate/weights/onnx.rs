//! A minimal ONNX reader: a protobuf wire-format decoder that walks
//! ModelProto.graph (7) → GraphProto.initializer (5) → TensorProto
//! (dims 1, data_type 2, float_data 4, name 8, raw_data 9), and the
//! conversion of a Keras VGG16 exported to ONNX (tf2onnx) to [`Vgg16Weights`].

use super::WeightsError;
use crate::model::{ConvTensor, Vgg16Weights, CONVS};

/// TensorProto.DataType.FLOAT.
const FLOAT: u64 = 1;

/// One FLOAT initializer.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxTensor {
    pub name: String,
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

/// A protobuf field's value.
#[derive(Clone, Copy, Debug)]
pub enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Reads the fields of one protobuf message.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the file, for error messages.
    base: usize,
}

fn perr(offset: usize, message: &str) -> WeightsError {
    WeightsError::Protobuf { offset, message: message.to_string() }
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        Fields { buf, pos: 0, base }
    }

    fn varint(&mut self) -> Result<u64, WeightsError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(perr(self.base + self.pos, "truncated varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(perr(self.base + self.pos, "varint longer than 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(perr(self.base + self.pos, "varint longer than 10 bytes"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], WeightsError> {
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Err(perr(self.base + self.pos, &format!("field of {n} bytes runs past the end of its message ({left} left)")));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    /// The next (field number, value, offset of the value in the file), or None at the end.
    pub fn next_field(&mut self) -> Result<Option<(u64, Wire<'a>, usize)>, WeightsError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(perr(self.base + self.pos, "field number 0"));
        }
        let at = self.base + self.pos;
        let v = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                Wire::Fixed64(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            }
            2 => {
                let n = self.varint()?;
                let at = self.base + self.pos;
                return Ok(Some((field, Wire::Bytes(self.take(n)?), at)));
            }
            5 => {
                let b = self.take(4)?;
                Wire::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            w => return Err(perr(at, &format!("unsupported wire type {w}"))),
        };
        Ok(Some((field, v, at)))
    }
}

/// Every FLOAT initializer of an ONNX model (others, e.g. int64 constants, are skipped).
pub fn initializers(bytes: &[u8]) -> Result<Vec<OnnxTensor>, WeightsError> {
    let mut out = Vec::new();
    let mut model = Fields::new(bytes, 0);
    let mut saw_graph = false;
    while let Some((f, v, at)) = model.next_field()? {
        let (7, Wire::Bytes(graph)) = (f, v) else { continue };
        saw_graph = true;
        let mut g = Fields::new(graph, at);
        while let Some((f, v, at)) = g.next_field()? {
            if let (5, Wire::Bytes(t)) = (f, v) {
                if let Some(t) = tensor(t, at)? {
                    out.push(t);
                }
            }
        }
    }
    if !saw_graph {
        return Err(WeightsError::Onnx("no graph (ModelProto field 7) in the file; is it an ONNX model?".into()));
    }
    Ok(out)
}

fn tensor(buf: &[u8], base: usize) -> Result<Option<OnnxTensor>, WeightsError> {
    let mut dims: Vec<u64> = Vec::new();
    let mut data_type = 0;
    let mut name = String::new();
    let mut raw: Option<&[u8]> = None;
    let mut floats: Vec<f32> = Vec::new();
    let mut fields = Fields::new(buf, base);
    while let Some((f, v, at)) = fields.next_field()? {
        match (f, v) {
            (1, Wire::Varint(d)) => dims.push(d),
            (1, Wire::Bytes(packed)) => {
                let mut p = Fields::new(packed, at);
                while p.pos < packed.len() {
                    dims.push(p.varint()?);
                }
            }
            (2, Wire::Varint(t)) => data_type = t,
            (4, Wire::Fixed32(x)) => floats.push(f32::from_bits(x)),
            (4, Wire::Bytes(packed)) => {
                if packed.len() % 4 != 0 {
                    return Err(perr(at, "packed float_data is not a multiple of 4 bytes"));
                }
                floats.extend(packed.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
            }
            (8, Wire::Bytes(n)) => name = String::from_utf8_lossy(n).into_owned(),
            (9, Wire::Bytes(r)) => raw = Some(r),
            _ => {}
        }
    }
    if data_type != FLOAT {
        return Ok(None);
    }
    let mut count: usize = 1;
    let mut shape = Vec::with_capacity(dims.len());
    for &d in &dims {
        // int64 dims: a negative one arrives as a huge varint.
        let d = usize::try_from(d).ok().filter(|&d| d <= u32::MAX as usize);
        let d = d.ok_or_else(|| WeightsError::Onnx(format!("initializer `{name}` has an invalid dimension in {dims:?}")))?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| WeightsError::Onnx(format!("initializer `{name}`: the element count of {dims:?} overflows")))?;
        shape.push(d);
    }
    let data = match raw {
        Some(r) => {
            if Some(r.len()) != count.checked_mul(4) {
                return Err(WeightsError::Onnx(format!(
                    "initializer `{name}`: raw_data has {} bytes, shape {shape:?} needs {} floats",
                    r.len(),
                    count
                )));
            }
            r.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        None => {
            if floats.len() != count {
                return Err(WeightsError::Onnx(format!(
                    "initializer `{name}`: {} float_data values, shape {shape:?} needs {count} (external data is not supported)",
                    floats.len()
                )));
            }
            floats
        }
    };
    Ok(Some(OnnxTensor { name, dims: shape, data }))
}

/// `blockB_convC` in `name` → index into [`CONVS`] (`convB_C`).
fn keras_conv_index(name: &str) -> Option<usize> {
    let b = name.as_bytes();
    let mut found = None;
    for i in 0..b.len() {
        let rest = &b[i..];
        if rest.len() >= 12 && rest.starts_with(b"block") && rest[6..].starts_with(b"_conv") {
            let (blk, cv) = (rest[5], rest[11]);
            if blk.is_ascii_digit() && cv.is_ascii_digit() && !rest.get(12).is_some_and(|c| c.is_ascii_digit()) {
                let want = format!("conv{}_{}", blk as char, cv as char);
                if let Some(k) = CONVS.iter().position(|(n, _, _)| *n == want) {
                    found = Some(k);
                }
            }
        }
    }
    found
}

/// The 13 conv layers of a Keras VGG16 exported to ONNX: kernels are the
/// rank-4 initializers whose name contains `blockB_convC` (OIHW, transposed
/// here to HWIO), biases the rank-1 ones. Everything else is ignored.
pub fn keras_vgg16(bytes: &[u8]) -> Result<Vgg16Weights, WeightsError> {
    let inits = initializers(bytes)?;
    let mut kernels: Vec<Option<&OnnxTensor>> = vec![None; CONVS.len()];
    let mut biases: Vec<Option<&OnnxTensor>> = vec![None; CONVS.len()];
    for t in &inits {
        let Some(k) = keras_conv_index(&t.name) else { continue };
        let slot = match t.dims.len() {
            4 => &mut kernels[k],
            1 => &mut biases[k],
            _ => continue,
        };
        if let Some(prev) = slot {
            return Err(WeightsError::Onnx(format!(
                "both `{}` and `{}` look like {}'s {}",
                prev.name,
                t.name,
                CONVS[k].0,
                if t.dims.len() == 4 { "kernel" } else { "bias" }
            )));
        }
        *slot = Some(t);
    }
    let mut convs = Vec::with_capacity(CONVS.len());
    for (k, &(name, cin, cout)) in CONVS.iter().enumerate() {
        let keras = format!("block{}_conv{}", &name[4..5], &name[6..7]);
        let w = kernels[k].ok_or_else(|| WeightsError::Onnx(format!("no rank-4 initializer named like `{keras}` (the {name} kernel)")))?;
        let b = biases[k].ok_or_else(|| WeightsError::Onnx(format!("no rank-1 initializer named like `{keras}` (the {name} bias)")))?;
        if w.dims != [cout, cin, 3, 3] {
            return Err(WeightsError::Onnx(format!("`{}`: expected OIHW shape [{cout}, {cin}, 3, 3] for {name}, got {:?}", w.name, w.dims)));
        }
        if b.dims != [cout] {
            return Err(WeightsError::Onnx(format!("`{}`: expected shape [{cout}] for {name}'s bias, got {:?}", b.name, b.dims)));
        }
        for t in [w, b] {
            if let Some((index, &value)) = t.data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(WeightsError::NonFinite { tensor: t.name.clone(), index, value });
            }
        }
        convs.push(ConvTensor { w_hwio: oihw_to_hwio(&w.data, cout, cin), bias: b.data.clone() });
    }
    Ok(Vgg16Weights { convs, fcs: Vec::new() })
}

/// (O, I, 3, 3) → (3, 3, I, O).
pub fn oihw_to_hwio(w: &[f32], o: usize, i: usize) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for oo in 0..o {
        for ii in 0..i {
            for t in 0..9 {
                out[(t * i + ii) * o + oo] = w[(oo * i + ii) * 9 + t];
            }
        }
    }
    out
}
