//! torchvision and timm vgg16 state dicts as `torch.save` writes them — the
//! zip archive of PyTorch 1.6 and later (a pickle and one storage file per
//! tensor, [`zip`]) and the legacy sequence of pickles of earlier versions
//! ([`legacy`]; torchvision's published `vgg16-397923af.pth` is one) — and
//! safetensors files with torchvision/timm names, mapped onto VGG16's layers
//! with the OIHW → HWIO transposition and fc6's inputs reordered from NCHW
//! to NHWC ([`layout`]). Other architectures (vgg16_bn, VGG19, ResNet, …)
//! are refused with a message naming what was found.
//!
//! Nothing in the pickle is executed: [`pickle`] interprets the handful of
//! opcodes and whitelisted globals a state dict uses and refuses the rest.

pub mod layout;
pub mod legacy;
pub mod pickle;

use std::borrow::Cow;
use std::collections::HashMap;

use super::{archive, safetensors, NamedTensor, Preprocessing, Result, WeightsError, WeightsFile};
use crate::model::CONVS;
use pickle::{StorageType, Value};

pub const TORCHVISION_SOURCE: &str = "torchvision vgg16 state dict (.pth), converted by featvis";
pub const TIMM_PTH_SOURCE: &str = "timm vgg16 state dict (.pth), converted by featvis";
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
/// Both of torch.save's formats: the zip archive (PyTorch 1.6 and later) and
/// the legacy sequence of pickles (torchvision's published VGG16 file).
/// A checkpoint dict holding the state dict under `state_dict`, `model`,
/// `model_state_dict`, `module` or `net` is accepted too.
pub fn read_state_dict(bytes: &[u8]) -> Result<Vec<RawTensor>> {
    if bytes.starts_with(b"PK") {
        return read_zip(bytes);
    }
    if legacy::looks_legacy(bytes) {
        let l = legacy::parse(bytes)?;
        let dict = state_dict(&l.root)?;
        return tensors_of(
            dict,
            |k| l.storages.get(k).copied(),
            l.big_endian,
            |k| format!("its storage `{k}` is not among the storages the file lists"),
        );
    }
    if legacy::looks_tar(bytes) {
        return Err(pth_err(
            "this is the tar format of PyTorch before 0.1.10, which is not supported; \
             re-save it with a current torch: torch.save(torch.load(f), g)",
        ));
    }
    if bytes.first() == Some(&0x80) {
        return Err(pth_err(
            "a pickle, but not one torch.save wrote (no magic number 0x1950a86a20f9469cfc6c); plain pickles are not supported",
        ));
    }
    Err(pth_err("not a zip archive, nor torch's legacy format (torch.save writes one of them); is this a .pth file?"))
}

/// Does `bytes` start like a file torch.save writes (zip archive, legacy
/// pickles, or the refused pre-0.1.10 tar)? For format detection.
pub fn looks_like_pth(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
        || legacy::looks_legacy(bytes)
        || (legacy::looks_tar(bytes) && bytes[..512].windows(8).any(|w| w == b"sys_info"))
}

fn read_zip(bytes: &[u8]) -> Result<Vec<RawTensor>> {
    let mut z = archive::Zip::parse(bytes)?;
    let names = z.names();
    let pkl = names
        .iter()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| n.len())
        .ok_or_else(|| pth_err("the archive has no data.pkl (not a torch.save file)"))?;
    let prefix = &pkl[..pkl.len() - "data.pkl".len()];
    let byteorder = format!("{prefix}byteorder");
    let big_endian = if z.contains(&byteorder) {
        match &*z.read(&byteorder)? {
            b"little" => false,
            b"big" => true,
            other => return Err(pth_err(format!("byteorder is \"{}\"", String::from_utf8_lossy(other)))),
        }
    } else {
        false
    };
    let root = pickle::load(&z.read(pkl)?)?;
    let dict = state_dict(&root)?;
    // Read (and CRC-check) each storage the tensors use, once.
    let mut storages: HashMap<String, Cow<'_, [u8]>> = HashMap::new();
    for (_, v) in &dict.items {
        if let Value::Tensor(t) = v {
            let (key, member) = (&t.storage.key, format!("{prefix}data/{}", t.storage.key));
            if !storages.contains_key(key) && z.contains(&member) {
                storages.insert(key.clone(), z.read(&member)?);
            }
        }
    }
    tensors_of(dict, |k| storages.get(k).map(|c| &**c), big_endian, |k| format!("its storage `{prefix}data/{k}` is not in the archive"))
}

/// The state dict's tensors, each gathered from its storage's bytes.
fn tensors_of<'a>(
    dict: &pickle::Map,
    storage: impl Fn(&str) -> Option<&'a [u8]>,
    big_endian: bool,
    missing: impl Fn(&str) -> String,
) -> Result<Vec<RawTensor>> {
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
        let data = storage(&t.storage.key).ok_or_else(|| bad(&name, missing(&t.storage.key)))?;
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

/// Elements of `bytes` (whole elements of `dtype`) appended to `out` as f32.
fn decode(dtype: StorageType, bytes: &[u8], big_endian: bool, out: &mut Vec<f32>) {
    match (dtype, big_endian) {
        // Little-endian f32 on a little-endian machine (wasm32 is one): a copy.
        (StorageType::F32, false) if cfg!(target_endian = "little") => {
            let start = out.len();
            out.resize(start + bytes.len() / 4, 0.0);
            bytemuck::cast_slice_mut::<f32, u8>(&mut out[start..]).copy_from_slice(&bytes[..bytes.len() / 4 * 4]);
        }
        (StorageType::F32, false) => out.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        (StorageType::F16, false) => out.extend(bytes.chunks_exact(2).map(|c| super::f16_to_f32(u16::from_le_bytes([c[0], c[1]])))),
        _ => out.extend(bytes.chunks_exact(dtype.size()).map(|c| dtype.value(c, big_endian))),
    }
}

/// The tensor's values in row-major order (any strides are gathered).
/// `data` holds the whole root storage.
fn gather(name: &str, t: &pickle::Tensor, data: &[u8], big_endian: bool) -> Result<(Vec<usize>, Vec<f32>)> {
    let s = &t.storage;
    let es = s.dtype.size() as u64;
    let needed = s.numel.checked_mul(es).filter(|&n| n <= data.len() as u64);
    let Some(needed) = needed else {
        return Err(bad(name, format!("its storage holds {} bytes, fewer than {} elements of {es} bytes", data.len(), s.numel)));
    };
    // A view of part of the root storage (legacy format).
    let (data, available) = match &s.view {
        None => (&data[..needed as usize], s.numel),
        Some(v) => {
            let end = v.offset.checked_add(v.numel).filter(|&e| e <= s.numel).ok_or_else(|| {
                bad(name, format!("its storage view ({} elements from {}) reaches past the {}-element storage", v.numel, v.offset, s.numel))
            })?;
            (&data[(v.offset * es) as usize..(end * es) as usize], v.numel)
        }
    };
    let shape: Vec<usize> = t.size.iter().map(|&d| usize::try_from(d).unwrap_or(usize::MAX)).collect();
    let numel = t.size.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    let numel = numel.filter(|&n| n <= available).ok_or_else(|| {
        bad(name, format!("shape {:?} has more elements than its storage's {available} (expanded views are not supported)", t.size))
    })?;
    if numel == 0 {
        return Ok((shape, Vec::new()));
    }
    // The last element it reads must lie inside the storage.
    let reach = t.size.iter().zip(&t.stride).try_fold(t.offset, |a, (&d, &st)| a.checked_add((d - 1).checked_mul(st)?));
    if reach.is_none_or(|r| r >= available) {
        return Err(bad(
            name,
            format!("offset {} with size {:?} and stride {:?} reads past its storage's {available} elements", t.offset, t.size, t.stride),
        ));
    }
    let bytes_of = |at: u64, n: u64| &data[(at * es) as usize..((at + n) * es) as usize];
    let contiguous = {
        let mut expect = 1u64;
        let mut ok = true;
        for (&d, &st) in t.size.iter().zip(&t.stride).rev() {
            if d != 1 && st != expect {
                ok = false;
            }
            expect = expect.saturating_mul(d);
        }
        ok
    };
    if contiguous && s.dtype == StorageType::F32 && !big_endian && cfg!(target_endian = "little") {
        // Zeroed memory comes fresh from the system: one pass, the copy.
        let mut values = vec![0.0f32; numel as usize];
        bytemuck::cast_slice_mut::<f32, u8>(&mut values).copy_from_slice(bytes_of(t.offset, numel));
        return Ok((shape, values));
    }
    let mut values = Vec::with_capacity(numel as usize);
    if contiguous {
        decode(s.dtype, bytes_of(t.offset, numel), big_endian, &mut values);
        return Ok((shape, values));
    }
    // Rows along the last dimension; an odometer over the others.
    let rank = t.size.len();
    let (inner, inner_stride) = (t.size[rank - 1], t.stride[rank - 1]);
    let mut idx = vec![0u64; rank - 1];
    let mut at = t.offset;
    for _ in 0..numel / inner {
        if inner_stride == 1 || inner == 1 {
            decode(s.dtype, bytes_of(at, inner), big_endian, &mut values);
        } else {
            for k in 0..inner {
                decode(s.dtype, bytes_of(at + k * inner_stride, 1), big_endian, &mut values);
            }
        }
        // Wrapping: past the last row `at` may leave the storage (never
        // read); the bounds were checked through `reach` above.
        for d in (0..rank - 1).rev() {
            idx[d] += 1;
            at = at.wrapping_add(t.stride[d]);
            if idx[d] < t.size[d] {
                break;
            }
            at = at.wrapping_sub(t.stride[d].wrapping_mul(t.size[d]));
            idx[d] = 0;
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

fn strip_prefixes(mut name: &str) -> &str {
    while let Some(rest) = name.strip_prefix("module.").or_else(|| name.strip_prefix("model.")) {
        name = rest;
    }
    name
}

/// The VGG configuration with this many convolutions, if any.
fn vgg_name(convs: usize) -> Option<&'static str> {
    Some(match convs {
        8 => "vgg11",
        10 => "vgg13",
        13 => "vgg16",
        16 => "vgg19",
        _ => return None,
    })
}

/// Refuse, with a message naming what was found, state dicts of networks
/// other than plain VGG16: VGG with batch norm, VGG11/13/19, ResNet, AlexNet…
fn check_architecture(tensors: &[RawTensor]) -> Result<()> {
    const PLAIN: &str =
        "featvis visualizes plain VGG16 (torchvision's vgg16 or timm's vgg16: 13 convolutions features.{0,2,5,…,28}, no batch norm)";
    let names: Vec<&str> = tensors.iter().map(|t| strip_prefixes(&t.0)).collect();
    // Errors name the tensor as the file spells it.
    let full = |i: usize| tensors[i].0.as_str();
    // Convolutions of a torchvision/timm VGG trunk: 4-D features.N.weight.
    let convs: Vec<(usize, &[usize])> = (0..tensors.len())
        .filter(|&i| names[i].starts_with("features.") && names[i].ends_with(".weight") && tensors[i].1.len() == 4)
        .map(|i| (i, tensors[i].1.as_slice()))
        .collect();
    let vgg_like = names.iter().all(|n| ["features.", "classifier.", "pre_logits.", "head."].iter().any(|p| n.starts_with(p)));
    let batch_norm =
        names.iter().position(|n| n.ends_with(".running_mean") || n.ends_with(".running_var") || n.ends_with(".num_batches_tracked"));
    if let Some(i) = batch_norm {
        let n = convs.len();
        return Err(bad(
            full(i),
            match (vgg_like, vgg_name(n)) {
                (true, Some(v)) => {
                    format!("{v}_bn is not supported: {PLAIN}. This BatchNorm tensor belongs to a VGG with {n} convolutions and batch norm")
                }
                (true, None) => format!("a VGG with batch norm (vgg*_bn) is not supported: {PLAIN}. This is a BatchNorm tensor"),
                (false, _) => format!("a network with batch norm{} is not supported: {PLAIN}. This is a BatchNorm tensor", family(&names)),
            },
        ));
    }
    if vgg_like && !convs.is_empty() && convs.len() != 13 {
        let n = convs.len();
        let what = match (vgg_name(n), convs[0].1) {
            (_, [_, 3, 11, 11]) => "AlexNet".to_string(),
            (Some(v), _) => v.to_string(),
            (None, _) => format!("a network with {n} convolutions"),
        };
        return Err(bad(
            full(convs[n - 1].0),
            format!(
                "{what} is not supported: {PLAIN}. The file has {n} convolutions under features.* ({} … this one), VGG16 has 13",
                full(convs[0].0)
            ),
        ));
    }
    if !vgg_like {
        if let Some(i) = names.iter().position(|n| target(n).is_none()) {
            return Err(bad(full(i), format!("this is not a VGG16 state dict{}: {PLAIN}", family(&names))));
        }
    }
    Ok(())
}

/// " (it looks like a ResNet)" and the like, from telltale key names.
fn family(names: &[&str]) -> &'static str {
    let has = |p: &str| names.iter().any(|n| n.contains(p));
    if has("layer1.") && has("fc.") {
        " (it looks like a ResNet)"
    } else if has("denseblock") {
        " (it looks like a DenseNet)"
    } else if has("Conv2d_1a_3x3") || has("Mixed_") {
        " (it looks like an Inception network)"
    } else if has("blocks.") && has("attn") {
        " (it looks like a vision transformer)"
    } else if has("stages.") {
        " (it looks like a ConvNeXt or a similar staged network)"
    } else {
        ""
    }
}

/// torchvision (`features.N`, `classifier.{0,3,6}`) or timm (`features.N`,
/// `pre_logits.fc1/fc2` as convolutions, `head.fc`) tensors → the project's
/// names and layouts: conv weights (O, I, 3, 3) → (3, 3, I, O); fc weights
/// (out, in) → (in, out); fc6's inputs from torch's flattening of pool5
/// (c, y, x) to (y, x, c). A `module.` or `model.` prefix is dropped. The
/// channel counts are taken from the tensors (no VGG16 shape check here).
pub fn torchvision_tensors(tensors: Vec<RawTensor>) -> Result<Vec<NamedTensor>> {
    check_architecture(&tensors)?;
    let mut out = Vec::with_capacity(tensors.len());
    for (full, shape, values) in tensors {
        if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(values.len()) {
            return Err(bad(&full, format!("shape {shape:?} does not hold its {} values", values.len())));
        }
        let name = strip_prefixes(&full);
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
                NamedTensor {
                    name: format!("{}.weight", CONVS[i].0),
                    shape: vec![3, 3, ci, o],
                    values: layout::oihw_to_hwio(&values, o, ci),
                }
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
                // Linear (out, in), or timm's conv form: fc6 (out, C, 7, 7) over
                // pool5, whose (c, y, x) flattening is the linear one; fc7 and
                // fc8 (out, in, 1, 1).
                let (outputs, inputs) = match (i, shape.as_slice()) {
                    (_, &[o, n]) => (o, n),
                    (0, &[o, c, 7, 7]) | (1 | 2, &[o, c, 1, 1]) => (o, c.saturating_mul(shape[2] * shape[3])),
                    (0, _) => {
                        return Err(bad(
                            &full,
                            format!("expected fc6 as a linear weight (out, C·49) or a 7×7 convolution (out, C, 7, 7), got {shape:?}"),
                        ))
                    }
                    _ => {
                        return Err(bad(
                            &full,
                            format!("expected a linear weight (out, in) or a 1×1 convolution (out, in, 1, 1), got {shape:?}"),
                        ))
                    }
                };
                let w = if i == 0 {
                    // pool5 is 7×7×C: torch column c·49 + p, ours p·C + c.
                    if !inputs.is_multiple_of(49) {
                        return Err(bad(&full, format!("fc6 takes {inputs} inputs, not a multiple of 7×7 (pool5)")));
                    }
                    layout::fc6_to_nhwc(&values, outputs, inputs / 49)
                } else {
                    layout::transpose(&values, outputs, inputs)
                };
                NamedTensor { name: format!("{}.weight", ["fc6", "fc7", "fc8"][i]), shape: vec![inputs, outputs], values: w }
            }
        };
        out.push(named);
    }
    Ok(out)
}

/// A torchvision or timm vgg16 `.pth` state dict (zip or legacy format) →
/// weights file (RGB, torchvision preprocessing; timm's vgg16 uses the same).
pub fn convert_pth(bytes: &[u8]) -> Result<WeightsFile> {
    let raw = read_state_dict(bytes)?;
    let timm = raw.iter().any(|t| ["pre_logits.", "head."].iter().any(|p| strip_prefixes(&t.0).starts_with(p)));
    let tensors = torchvision_tensors(raw)?;
    let source = if timm { TIMM_PTH_SOURCE } else { TORCHVISION_SOURCE };
    WeightsFile::from_tensors(tensors, Preprocessing::torchvision(), source, TORCHVISION_LICENSE)
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
