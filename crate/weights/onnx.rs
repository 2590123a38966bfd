//! A minimal ONNX reader: a protobuf wire-format decoder that walks
//! ModelProto.graph (7) → GraphProto.initializer (5) → TensorProto
//! (dims 1, data_type 2, float_data 4, name 8, raw_data 9), and the
//! conversion of a Keras VGG16 exported to ONNX (tf2onnx) to [`Vgg16Weights`].

use super::WeightsError;
use crate::model::{ConvTensor, FcTensor, Vgg16Weights, CONVS, FC6_INPUTS};

/// TensorProto.DataType.FLOAT.
const FLOAT: u64 = 1;
/// TensorProto.DataType.FLOAT16 (raw_data of little-endian halves, or int32_data holding the bits).
const FLOAT16: u64 = 10;
/// Ranks above this are refused (VGG16 needs at most 4).
pub const MAX_RANK: usize = 8;

/// One FLOAT (or FLOAT16, widened) initializer.
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
    let mut int32s: Vec<u16> = Vec::new();
    let mut wide_half = false;
    let mut external = false;
    let mut fields = Fields::new(buf, base);
    let too_many_dims = |at: usize| perr(at, &format!("a tensor with more than {MAX_RANK} dimensions"));
    while let Some((f, v, at)) = fields.next_field()? {
        match (f, v) {
            (1, Wire::Varint(d)) => {
                if dims.len() >= MAX_RANK {
                    return Err(too_many_dims(at));
                }
                dims.push(d)
            }
            (1, Wire::Bytes(packed)) => {
                let mut p = Fields::new(packed, at);
                while p.pos < packed.len() {
                    if dims.len() >= MAX_RANK {
                        return Err(too_many_dims(at));
                    }
                    dims.push(p.varint()?);
                }
            }
            // int32_data: FLOAT16 values' bits when there is no raw_data.
            (5, Wire::Varint(x)) => {
                wide_half |= x > 0xffff;
                int32s.push(x as u16)
            }
            (5, Wire::Bytes(packed)) => {
                let mut p = Fields::new(packed, at);
                while p.pos < packed.len() {
                    let x = p.varint()?;
                    wide_half |= x > 0xffff;
                    int32s.push(x as u16);
                }
            }
            // data_location = EXTERNAL
            (14, Wire::Varint(1)) => external = true,
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
    if data_type != FLOAT && data_type != FLOAT16 {
        return Ok(None);
    }
    if external {
        return Err(WeightsError::Onnx(format!(
            "initializer `{name}` keeps its data in an external file, which is not supported: save the model with its weights inside \
             (onnx.save(model, path, save_as_external_data=False))"
        )));
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
        Some(r) if data_type == FLOAT16 => {
            if Some(r.len()) != count.checked_mul(2) {
                return Err(WeightsError::Onnx(format!(
                    "initializer `{name}`: raw_data has {} bytes, shape {shape:?} needs {count} halves",
                    r.len()
                )));
            }
            r.chunks_exact(2).map(|c| super::f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect()
        }
        None if data_type == FLOAT16 => {
            if int32s.len() != count {
                return Err(WeightsError::Onnx(format!(
                    "initializer `{name}`: {} int32_data values, FLOAT16 shape {shape:?} needs {count}",
                    int32s.len()
                )));
            }
            if wide_half {
                return Err(WeightsError::Onnx(format!(
                    "initializer `{name}`: an int32_data entry of a FLOAT16 tensor does not fit 16 bits"
                )));
            }
            int32s.iter().map(|&b| super::f16_to_f32(b)).collect()
        }
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
    Ok(Vgg16Weights { convs: keras_convs(&inits)?, fcs: Vec::new() })
}

/// Like [`keras_vgg16`], keeping the classifier head when the model has
/// VGG16's: rank-2 initializers named like Keras's `fc1`, `fc2`,
/// `predictions` (or `fc6`, `fc7`, `fc8`) of shapes (25088, 4096),
/// (4096, 4096), (4096, K) (Keras's (inputs, outputs), fc1's inputs in the
/// NHWC flattening of pool5, as the project's fc6) with biases (4096),
/// (4096), (K). Any other head is dropped; the note says what was found.
pub fn keras_vgg16_with_head(bytes: &[u8]) -> Result<(Vgg16Weights, Option<String>), WeightsError> {
    let inits = initializers(bytes)?;
    let convs = keras_convs(&inits)?;
    let mut slots: [[Option<&OnnxTensor>; 2]; 3] = [[None; 2]; 3];
    let mut dense: Vec<String> = Vec::new();
    for t in &inits {
        if keras_conv_index(&t.name).is_some() {
            continue;
        }
        if t.dims.len() == 2 {
            dense.push(format!("`{}` {:?}", t.name, t.dims));
        }
        let Some(i) = keras_fc_index(&t.name) else { continue };
        let r = match t.dims.len() {
            2 => 0,
            1 => 1,
            _ => continue,
        };
        if let Some(prev) = slots[i][r] {
            return Err(WeightsError::Onnx(format!(
                "both `{}` and `{}` look like fc{}'s {}",
                prev.name,
                t.name,
                i + 6,
                if r == 0 { "kernel" } else { "bias" }
            )));
        }
        slots[i][r] = Some(t);
    }
    let head = (|| {
        let classes = slots[2][0]?.dims.get(1).copied().filter(|&k| k > 0)?;
        let mut fcs = Vec::new();
        for (i, (inputs, outputs)) in [(FC6_INPUTS, 4096), (4096, 4096), (4096, classes)].into_iter().enumerate() {
            let (w, b) = (slots[i][0]?, slots[i][1]?);
            if w.dims != [inputs, outputs] || b.dims != [outputs] {
                return None;
            }
            fcs.push(FcTensor { inputs, outputs, w_io: w.data.clone(), bias: b.data.clone() });
        }
        Some(fcs)
    })();
    match head {
        Some(fcs) => Ok((Vgg16Weights { convs, fcs }, None)),
        None => {
            let note = if dense.is_empty() {
                None
            } else {
                Some(format!(
                    "the model's head ({}) is not VGG16's fc6–fc8 (fc1 (25088, 4096), fc2 (4096, 4096), predictions (4096, K)): \
                     kept the conv trunk only",
                    dense.join(", ")
                ))
            };
            Ok((Vgg16Weights { convs, fcs: Vec::new() }, note))
        }
    }
}

/// `fc1`/`fc6` → 0, `fc2`/`fc7` → 1, `predictions`/`fc8` → 2 (a name part
/// not followed by another digit).
fn keras_fc_index(name: &str) -> Option<usize> {
    let b = name.as_bytes();
    let mut found = None;
    for i in 0..b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"predictions") {
            found = Some(2);
        } else if rest.len() >= 3
            && rest.starts_with(b"fc")
            && !rest.get(3).is_some_and(|c| c.is_ascii_digit())
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
        {
            found = match rest[2] {
                b'1' | b'6' => Some(0),
                b'2' | b'7' => Some(1),
                b'8' => Some(2),
                _ => found,
            };
        }
    }
    found
}

fn keras_convs(inits: &[OnnxTensor]) -> Result<Vec<ConvTensor>, WeightsError> {
    let mut kernels: Vec<Option<&OnnxTensor>> = vec![None; CONVS.len()];
    let mut biases: Vec<Option<&OnnxTensor>> = vec![None; CONVS.len()];
    for t in inits {
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
            return Err(WeightsError::Onnx(format!(
                "`{}`: expected OIHW shape [{cout}, {cin}, 3, 3] for {name}, got {:?}",
                w.name, w.dims
            )));
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
    Ok(convs)
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
