//! torchvision vgg16 state dicts as `torch.save` writes them (a zip archive
//! holding a pickle and one storage file per tensor), and safetensors files
//! with torchvision/timm names, mapped onto VGG16's layers with the OIHW →
//! HWIO transposition and fc6's inputs reordered from NCHW to NHWC.
//!
//! Nothing in the pickle is executed: [`pickle`] interprets the handful of
//! opcodes and whitelisted globals a state dict uses and refuses the rest.

pub mod pickle;
pub mod zip;

use std::borrow::Cow;
use std::collections::HashMap;

use super::{onnx, safetensors, NamedTensor, Preprocessing, Result, WeightsError, WeightsFile};
use crate::model::CONVS;
use pickle::Value;

pub const TORCHVISION_SOURCE: &str = "torchvision vgg16 state dict (.pth), converted by featvis";
pub const TIMM_SOURCE: &str = "torchvision/timm-named vgg16 safetensors, converted by featvis";
pub const TORCHVISION_LICENSE: &str = "torchvision's VGG16 weights are ported from the original VGG release (CC BY 4.0); \
                                       check the terms of the file you converted";

/// torchvision's `features` indices of the 13 convolutions, in [`CONVS`] order.
pub const FEATURE_INDICES: [usize; 13] = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28];

fn pth_err(message: impl std::fmt::Display) -> WeightsError {
    WeightsError::Header(format!("PyTorch .pth: {message}"))
}

fn bad(tensor: &str, message: impl Into<String>) -> WeightsError {
    WeightsError::Tensor { tensor: tensor.to_string(), message: message.into() }
}

/// One tensor as stored: name, shape, values (row-major).
pub type RawTensor = (String, Vec<usize>, Vec<f32>);

/// Every tensor of a `torch.save`d state dict, in file order, as f32 (half,
/// bfloat16, double and integer storages are converted). No shape checks.
/// A checkpoint dict holding the state dict under `state_dict`, `model`,
/// `model_state_dict`, `module` or `net` is accepted too.
pub fn read_state_dict(bytes: &[u8]) -> Result<Vec<RawTensor>> {
    if bytes.first() == Some(&0x80) {
        return Err(pth_err(
            "this is the legacy torch serialization (before PyTorch 1.6), which is not supported; \
             re-save it with a current torch: torch.save(torch.load(f), g)",
        ));
    }
    if !bytes.starts_with(b"PK") {
        return Err(pth_err("not a zip archive (torch.save writes one); is this a .pth file?"));
    }
    let z = zip::Zip::parse(bytes)?;
    let pkl = z
        .entries
        .iter()
        .filter(|e| e.name == "data.pkl" || e.name.ends_with("/data.pkl"))
        .min_by_key(|e| e.name.len())
        .ok_or_else(|| pth_err("the archive has no data.pkl (not a torch.save file)"))?;
    let prefix = &pkl.name[..pkl.name.len() - "data.pkl".len()];
    let big_endian = match z.find(&format!("{prefix}byteorder")) {
        Some(e) => match &*z.read(e)? {
            b"little" => false,
            b"big" => true,
            other => return Err(pth_err(format!("byteorder is \"{}\"", String::from_utf8_lossy(other)))),
        },
        None => false,
    };
    let root = pickle::load(&z.read(pkl)?)?;
    let dict = state_dict(&root)?;
    let mut storages: HashMap<String, Cow<'_, [u8]>> = HashMap::new();
    let mut out = Vec::with_capacity(dict.items.len());
    for (k, v) in &dict.items {
        let name = match k {
            Value::Str(s) => s.to_string(),
            _ => return Err(pth_err("a state dict key is not a string")),
        };
        let t = match v {
            Value::Tensor(t) => t,
            _ => return Err(bad(&name, "is not a tensor (is this a state dict?)")),
        };
        let s = &t.storage;
        if !storages.contains_key(&s.key) {
            let member = format!("{prefix}data/{}", s.key);
            let e = z.find(&member).ok_or_else(|| bad(&name, format!("its storage `{member}` is not in the archive")))?;
            storages.insert(s.key.clone(), z.read(e)?);
        }
        let data = storages.get(&s.key).map(|c| &**c).unwrap_or(&[]);
        let (shape, values) = gather(&name, t, data, big_endian)?;
        out.push((name, shape, values));
    }
    Ok(out)
}

fn state_dict(root: &Value) -> Result<&pickle::Map> {
    let Value::Dict(top) = root else {
        return Err(pth_err("the pickle holds no dict (save model.state_dict(), not the model object)"));
    };
    if top.items.iter().any(|(_, v)| matches!(v, Value::Tensor(_))) || top.items.is_empty() {
        return Ok(top);
    }
    for key in ["state_dict", "model", "model_state_dict", "module", "net"] {
        let found = top.items.iter().find(|(k, _)| matches!(k, Value::Str(s) if &**s == key));
        if let Some((_, Value::Dict(inner))) = found {
            if inner.items.iter().any(|(_, v)| matches!(v, Value::Tensor(_))) {
                return Ok(inner);
            }
        }
    }
    Err(pth_err("the pickle's dict holds no tensors, nor a `state_dict` or `model` entry that does"))
}

/// The tensor's values in row-major order (any strides are gathered).
fn gather(name: &str, t: &pickle::Tensor, data: &[u8], big_endian: bool) -> Result<(Vec<usize>, Vec<f32>)> {
    let s = &t.storage;
    let es = s.dtype.size() as u64;
    let needed = s.numel.checked_mul(es).filter(|&n| n <= data.len() as u64);
    if needed.is_none() {
        return Err(bad(name, format!("its storage holds {} bytes, fewer than {} elements of {es} bytes", data.len(), s.numel)));
    }
    let shape: Vec<usize> = t.size.iter().map(|&d| usize::try_from(d).unwrap_or(usize::MAX)).collect();
    let numel = t.size.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    let numel = numel.filter(|&n| n <= s.numel).ok_or_else(|| {
        bad(name, format!("shape {:?} has more elements than its storage's {} (expanded views are not supported)", t.size, s.numel))
    })?;
    if numel == 0 {
        return Ok((shape, Vec::new()));
    }
    // The last element it reads must lie inside the storage.
    let reach = t.size.iter().zip(&t.stride).try_fold(t.offset, |a, (&d, &st)| a.checked_add((d - 1).checked_mul(st)?));
    if reach.is_none_or(|r| r >= s.numel) {
        return Err(bad(
            name,
            format!("offset {} with size {:?} and stride {:?} reads past its storage's {} elements", t.offset, t.size, t.stride, s.numel),
        ));
    }
    let value = |i: u64| {
        let at = (i * es) as usize;
        s.dtype.value(&data[at..at + es as usize], big_endian)
    };
    let mut values = Vec::with_capacity(numel as usize);
    let contiguous = {
        let mut expect = 1u64;
        let mut ok = true;
        for (&d, &st) in t.size.iter().zip(&t.stride).rev() {
            if d != 1 && st != expect {
                ok = false;
            }
            expect *= d;
        }
        ok
    };
    if contiguous {
        values.extend((t.offset..t.offset + numel).map(value));
    } else {
        let rank = t.size.len();
        let mut idx = vec![0u64; rank];
        let mut at = t.offset;
        for _ in 0..numel {
            values.push(value(at));
            // Wrapping: past the last element `at` may leave the storage
            // (never read); the bounds were checked through `reach` above.
            for d in (0..rank).rev() {
                idx[d] += 1;
                at = at.wrapping_add(t.stride[d]);
                if idx[d] < t.size[d] {
                    break;
                }
                at = at.wrapping_sub(t.stride[d].wrapping_mul(t.size[d]));
                idx[d] = 0;
            }
        }
    }
    Ok((shape, values))
}

/// Where a torchvision or timm vgg16 tensor goes: (layer, is the weight).
#[derive(Clone, Copy)]
enum Target {
    Conv(usize),
    Fc(usize),
}

fn target(name: &str) -> Option<(Target, bool)> {
    let (layer, part) = name.rsplit_once('.')?;
    let is_weight = match part {
        "weight" => true,
        "bias" => false,
        _ => return None,
    };
    let t = if let Some(n) = layer.strip_prefix("features.") {
        let n: usize = n.parse().ok()?;
        Target::Conv(FEATURE_INDICES.iter().position(|&f| f == n)?)
    } else {
        match layer {
            "classifier.0" | "pre_logits.fc1" => Target::Fc(0),
            "classifier.3" | "pre_logits.fc2" => Target::Fc(1),
            "classifier.6" | "head.fc" => Target::Fc(2),
            _ => return None,
        }
    };
    Some((t, is_weight))
}

/// torchvision (`features.N`, `classifier.{0,3,6}`) or timm (`features.N`,
/// `pre_logits.fc1/fc2` as convolutions, `head.fc`) tensors → the project's
/// names and layouts: conv weights (O, I, 3, 3) → (3, 3, I, O); fc weights
/// (out, in) → (in, out); fc6's inputs from torch's flattening of pool5
/// (c, y, x) to (y, x, c). A `module.` or `model.` prefix is dropped. The
/// channel counts are taken from the tensors (no VGG16 shape check here).
pub fn torchvision_tensors(tensors: Vec<RawTensor>) -> Result<Vec<NamedTensor>> {
    let mut out = Vec::with_capacity(tensors.len());
    for (full, shape, values) in tensors {
        if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(values.len()) {
            return Err(bad(&full, format!("shape {shape:?} does not hold its {} values", values.len())));
        }
        let mut name = full.as_str();
        while let Some(rest) = name.strip_prefix("module.").or_else(|| name.strip_prefix("model.")) {
            name = rest;
        }
        let (t, is_weight) = target(name).ok_or_else(|| {
            bad(
                &full,
                "is not part of torchvision's vgg16 (features.{0,2,5,…,28}.weight/bias, classifier.{0,3,6}.weight/bias); \
                 batch-norm and other architectures are not supported",
            )
        })?;
        let named = match (t, is_weight) {
            (Target::Conv(i), true) => {
                let (o, ci) = match shape.as_slice() {
                    &[o, ci, 3, 3] => (o, ci),
                    _ => return Err(bad(&full, format!("expected a 3×3 convolution weight (O, I, 3, 3), got {shape:?}"))),
                };
                NamedTensor { name: format!("{}.weight", CONVS[i].0), shape: vec![3, 3, ci, o], values: onnx::oihw_to_hwio(&values, o, ci) }
            }
            (Target::Conv(i), false) | (Target::Fc(i @ 0..=2), false) if shape.len() == 1 => {
                let layer = match t {
                    Target::Conv(_) => CONVS[i].0,
                    Target::Fc(_) => ["fc6", "fc7", "fc8"][i],
                };
                NamedTensor { name: format!("{layer}.bias"), shape, values }
            }
            (_, false) => return Err(bad(&full, format!("expected a bias vector, got shape {shape:?}"))),
            (Target::Fc(i), true) => {
                // Linear (out, in), or timm's conv form (out, in_c, kh, kw) with in = in_c·kh·kw.
                let (outputs, inputs) = match shape.as_slice() {
                    [o, n] => (*o, *n),
                    [o, c, kh, kw] => (*o, c.saturating_mul(*kh).saturating_mul(*kw)),
                    _ => return Err(bad(&full, format!("expected a linear weight (out, in), got {shape:?}"))),
                };
                let mut w = vec![0.0f32; values.len()];
                if i == 0 {
                    // pool5 is 7×7×C: torch column c·49 + p, ours p·C + c.
                    if !inputs.is_multiple_of(49) {
                        return Err(bad(&full, format!("fc6 takes {inputs} inputs, not a multiple of 7×7 (pool5)")));
                    }
                    let c = inputs / 49;
                    for o in 0..outputs {
                        for ch in 0..c {
                            for p in 0..49 {
                                w[(p * c + ch) * outputs + o] = values[o * inputs + ch * 49 + p];
                            }
                        }
                    }
                } else {
                    for o in 0..outputs {
                        for k in 0..inputs {
                            w[k * outputs + o] = values[o * inputs + k];
                        }
                    }
                }
                NamedTensor { name: format!("{}.weight", ["fc6", "fc7", "fc8"][i]), shape: vec![inputs, outputs], values: w }
            }
        };
        out.push(named);
    }
    Ok(out)
}

/// A torchvision vgg16 `.pth` state dict → weights file (RGB, torchvision preprocessing).
pub fn convert_pth(bytes: &[u8]) -> Result<WeightsFile> {
    let tensors = torchvision_tensors(read_state_dict(bytes)?)?;
    WeightsFile::from_tensors(tensors, Preprocessing::torchvision(), TORCHVISION_SOURCE, TORCHVISION_LICENSE)
}

/// Every tensor of a safetensors file as (name, shape, f32 values).
pub fn read_safetensors(bytes: &[u8]) -> Result<Vec<RawTensor>> {
    let st = safetensors::parse(bytes)?;
    st.tensors.iter().map(|t| Ok((t.name.clone(), t.shape.clone(), t.to_f32()?))).collect()
}

/// A safetensors file with torchvision/timm names (`features.0.weight` OIHW,
/// `classifier.0.weight` (out, in), …) → weights file (torchvision preprocessing).
pub fn convert_torch_safetensors(bytes: &[u8]) -> Result<WeightsFile> {
    let tensors = torchvision_tensors(read_safetensors(bytes)?)?;
    WeightsFile::from_tensors(tensors, Preprocessing::torchvision(), TIMM_SOURCE, TORCHVISION_LICENSE)
}
