//! A reader for the HDF5 files Keras writes (`model.save_weights`, `model.save`
//! with the h5 format, the downloadable `vgg16_weights_tf_dim_ordering_tf_kernels*.h5`,
//! keras_vggface's VGG16, and the Keras 3 `.weights.h5` layout), and their
//! mapping onto VGG16's layers. Reads only what those files use ([`file`],
//! [`data`]); refuses the rest with an error that says what it met.
//!
//! Keras kernels are already HWIO (3, 3, cin, cout) with BGR-ordered input
//! channels, Dense kernels (inputs, outputs), and Keras flattens pool5 in NHWC
//! order: the project's conventions, so no tensor is reordered.
//!
//! Why not a crate: the pure-Rust `hdf5-pure` 0.47 was tried on every .h5
//! fixture and on real-size files written by h5py 3.16 (HDF5 2.0), and
//! this reader stays until it reads them all and refuses the broken ones:
//! - it cannot read data layout message version 5, which HDF5 2.0 writes
//!   with `libver="latest"` (keras-vgg16-latest.h5,
//!   keras-vgg16-full-notop.h5, and a 549 MB Keras VGG16 saved that way):
//!   "invalid data layout version: 5";
//! - it does not convert f16 datasets to f32 ("TypeMismatch"), and reads an
//!   int32 dataset as f32 without a word (this reader names the dtype);
//! - a soft link fails with "unexpected EOF: need 18446744073709551615 bytes";
//! - a one-bit flip in keras-vgg16-notop-model.h5 made it allocate 77 GB and
//!   abort the process (an allocation failure cannot be caught), where this
//!   reader checks sizes against the file before allocating;
//! - where it does read (old-style groups, Keras 3 layout, keras_vggface,
//!   contiguous real-size files) it is at least as fast: 0.4–0.6 s for
//!   553–580 MB against 0.7–0.8 s here (which includes the VGG16 checks).

pub mod data;
pub mod dense;
pub mod file;

pub use data::{Dataset, Datatype};
pub use file::File;

use super::{NamedTensor, Preprocessing, Result, WeightsError, WeightsFile};
use crate::model::CONVS;
use file::err;

pub const KERAS_SOURCE: &str = "Keras VGG16 (.h5), converted by featvis";
pub const VGGFACE_SOURCE: &str = "keras_vggface VGG16 (.h5), converted by featvis";
pub const KERAS_LICENSE: &str = "the Keras applications VGG16 weights are released under the MIT license (from the original VGG \
                                 authors' CC BY 4.0 release); check the terms of the file you converted";
pub const VGGFACE_LICENSE: &str = "keras_vggface's VGG16 weights are converted from Oxford's VGG-Face release, which is licensed \
                                   for non-commercial research only; check the terms of the file you converted";

/// Keras's VGG16 layer names, in [`CONVS`] order, then the head.
pub const KERAS_CONVS: [&str; 13] = [
    "block1_conv1",
    "block1_conv2",
    "block2_conv1",
    "block2_conv2",
    "block3_conv1",
    "block3_conv2",
    "block3_conv3",
    "block4_conv1",
    "block4_conv2",
    "block4_conv3",
    "block5_conv1",
    "block5_conv2",
    "block5_conv3",
];
pub const KERAS_FCS: [&str; 3] = ["fc1", "fc2", "predictions"];
const OUR_FCS: [&str; 3] = ["fc6", "fc7", "fc8"];

/// Which naming a file uses (and so which preprocessing its weights expect).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// keras.applications VGG16: block1_conv1 … block5_conv3, fc1, fc2, predictions.
    Keras,
    /// keras_vggface VGG16: conv1_1 … conv5_3, fc6, fc7, fc8.
    VggFace,
}

impl Flavor {
    pub fn preprocessing(self) -> Preprocessing {
        match self {
            Flavor::Keras => Preprocessing::keras(),
            Flavor::VggFace => Preprocessing::vggface(),
        }
    }
}

/// One tensor as stored: name (as in `weight_names`), shape, values.
pub type RawTensor = (String, Vec<usize>, Vec<f32>);

/// A Keras layer with weights: its name and tensors in `weight_names` order.
#[derive(Clone, Debug, PartialEq)]
pub struct KerasLayer {
    pub name: String,
    pub weights: Vec<RawTensor>,
}

/// The layers of a Keras HDF5 weights file that hold weights, in file
/// order, with their tensors as f32. No architecture check.
pub fn read_keras_layers(bytes: &[u8]) -> Result<Vec<KerasLayer>> {
    let f = File::parse(bytes)?;
    let root = f.object(f.root())?;
    let group = if layer_names(&f, &root)?.is_some() {
        root
    } else {
        let links = f.links(&root)?;
        if let Some((_, file::Link::Hard(a))) = links.iter().find(|(n, _)| n == "model_weights") {
            f.object(*a)?
        } else if let Some((_, file::Link::Hard(a))) = links.iter().find(|(n, _)| n == "layers") {
            return keras3_layers(&f, *a);
        } else {
            let names: Vec<&str> = links.iter().map(|(n, _)| n.as_str()).take(12).collect();
            return Err(err(format!(
                "no `layer_names` attribute at the root or in model_weights/, and no Keras 3 layers/ group \
                 (the root holds {names:?}): not a Keras weights file"
            )));
        }
    };
    let names = layer_names(&f, &group)?.ok_or_else(|| err("model_weights/ has no `layer_names` attribute"))?;
    let members: std::collections::HashMap<String, file::Link> = f.links(&group)?.into_iter().collect();
    let mut out = Vec::new();
    for name in names {
        let at = match members.get(&name) {
            Some(file::Link::Hard(a)) => *a,
            _ => f.lookup(group.addr, &name)?,
        };
        let lg = f.object(at)?;
        let wnames = split_attribute(&f, &lg, "weight_names")?
            .ok_or_else(|| err(format!("layer group \"{name}\" has no `weight_names` attribute")))?;
        let mut weights = Vec::with_capacity(wnames.len());
        for w in wnames {
            let ds = f.dataset(f.lookup(at, &w).map_err(|e| err(format!("layer \"{name}\", weight \"{w}\": {e}")))?)?;
            weights.push(read_tensor(&f, &ds, &format!("{name}/{w}"))?);
        }
        if !weights.is_empty() {
            out.push(KerasLayer { name, weights });
        }
    }
    Ok(out)
}

/// Keras 3 `.weights.h5`: layers/<name>/vars/0, 1, ….
fn keras3_layers(f: &File<'_>, layers: u64) -> Result<Vec<KerasLayer>> {
    let mut out = Vec::new();
    for (name, link) in f.links(&f.object(layers)?)? {
        let file::Link::Hard(at) = link else { continue };
        let Ok(vars) = f.lookup(at, "vars") else { continue };
        let mut vars: Vec<(usize, String, u64)> = f
            .links(&f.object(vars)?)?
            .into_iter()
            .filter_map(|(n, l)| match l {
                file::Link::Hard(a) => Some((n.parse().unwrap_or(usize::MAX), n, a)),
                _ => None,
            })
            .collect();
        vars.sort();
        let mut weights = Vec::new();
        for (_, n, a) in vars {
            weights.push(read_tensor(f, &f.dataset(a)?, &format!("layers/{name}/vars/{n}"))?);
        }
        if !weights.is_empty() {
            out.push(KerasLayer { name, weights });
        }
    }
    Ok(out)
}

fn read_tensor(f: &File<'_>, ds: &Dataset<'_>, name: &str) -> Result<RawTensor> {
    let shape: Vec<usize> = ds.shape.iter().map(|&d| usize::try_from(d).unwrap_or(usize::MAX)).collect();
    let values = ds.read_f32(f).map_err(|e| WeightsError::Tensor { tensor: name.to_string(), message: e.to_string() })?;
    Ok((name.rsplit('/').next().unwrap_or(name).to_string(), shape, values))
}

fn layer_names(f: &File<'_>, obj: &file::Object<'_>) -> Result<Option<Vec<String>>> {
    split_attribute(f, obj, "layer_names")
}

/// A string-array attribute, or its pieces `name0`, `name1`, … (Keras splits
/// attributes larger than the 64 KiB an object header holds).
fn split_attribute(f: &File<'_>, obj: &file::Object<'_>, name: &str) -> Result<Option<Vec<String>>> {
    let attrs = f.attributes(obj)?;
    if let Some(a) = attrs.iter().find(|a| a.name == name) {
        return f.strings(a).map(Some);
    }
    let mut out = Vec::new();
    for i in 0.. {
        match attrs.iter().find(|a| a.name == format!("{name}{i}")) {
            Some(a) => out.extend(f.strings(a)?),
            None if i == 0 => return Ok(None),
            None => break,
        }
    }
    Ok(Some(out))
}

/// Our layer name for a Keras or keras_vggface layer name.
fn our_name(flavor: Flavor, name: &str) -> Option<&'static str> {
    let (convs, fcs): (&[&str], &[&str]) = match flavor {
        Flavor::Keras => (&KERAS_CONVS, &KERAS_FCS),
        Flavor::VggFace => (&CONVS.map(|c| c.0), &OUR_FCS),
    };
    if let Some(i) = convs.iter().position(|&c| c == name) {
        return Some(CONVS[i].0);
    }
    fcs.iter().position(|&c| c == name).map(|i| OUR_FCS[i])
}

/// Keras or keras_vggface layers → the project's tensors (names only: Keras
/// layouts are already ours). Shapes are not checked against VGG16's widths
/// here ([`WeightsFile::from_tensors`] does); other architectures are refused
/// with the layers found.
pub fn keras_tensors(layers: &[KerasLayer]) -> Result<(Flavor, Vec<NamedTensor>)> {
    map_layers(layers.to_vec())
}

fn map_layers(layers: Vec<KerasLayer>) -> Result<(Flavor, Vec<NamedTensor>)> {
    let flavor = if layers.iter().any(|l| l.name.starts_with("block")) { Flavor::Keras } else { Flavor::VggFace };
    let unknown: Vec<&str> = layers.iter().filter(|l| our_name(flavor, &l.name).is_none()).map(|l| l.name.as_str()).collect();
    let has_conv = layers.iter().any(|l| our_name(flavor, &l.name).is_some_and(|n| n.starts_with("conv")));
    if !unknown.is_empty() || !has_conv {
        let all: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        let shown = if all.len() > 12 { format!("{} … ({} in all)", all[..12].join(", "), all.len()) } else { all.join(", ") };
        let extra = if unknown.is_empty() { String::new() } else { format!(" ({} not VGG16's: {})", unknown.len(), unknown.join(", ")) };
        return Err(err(format!(
            "this .h5 holds layers with weights {shown}{extra}; expected Keras VGG16 (block1_conv1 … block5_conv3, \
             optionally fc1, fc2, predictions) or keras_vggface VGG16 (conv1_1 … conv5_3, optionally fc6, fc7, fc8)"
        )));
    }
    let mut out = Vec::new();
    for mut l in layers {
        let ours = our_name(flavor, &l.name).unwrap_or_default();
        let is_conv = ours.starts_with("conv");
        let kernel_rank = if is_conv { 4 } else { 2 };
        let kernels: Vec<&RawTensor> = l.weights.iter().filter(|w| w.1.len() == kernel_rank).collect();
        let biases: Vec<&RawTensor> = l.weights.iter().filter(|w| w.1.len() == 1).collect();
        if kernels.len() != 1 || biases.len() != 1 || l.weights.len() != 2 {
            let found: Vec<String> = l.weights.iter().map(|w| format!("{} {:?}", w.0, w.1)).collect();
            return Err(WeightsError::Tensor {
                tensor: l.name.clone(),
                message: format!(
                    "holds {} (expected a rank-{kernel_rank} kernel and a bias; batch-norm and other layers are not VGG16's)",
                    found.join(", ")
                ),
            });
        }
        let k = kernels[0];
        let ki = l.weights.iter().position(|w| w.1.len() == kernel_rank).unwrap_or(0);
        let bi = 1 - ki;
        if is_conv {
            if let [o, i, 3, 3] = k.1[..] {
                if k.1[..2] != [3, 3] {
                    return Err(WeightsError::Tensor {
                        tensor: format!("{}/{}", l.name, k.0),
                        message: format!(
                            "shape [{o}, {i}, 3, 3] is channels-first (Theano ordering), not supported; use the tf_dim_ordering file"
                        ),
                    });
                }
            }
        }
        let kernel = std::mem::take(&mut l.weights[ki]);
        let bias = std::mem::take(&mut l.weights[bi]);
        out.push(NamedTensor { name: format!("{ours}.weight"), shape: kernel.1, values: kernel.2 });
        out.push(NamedTensor { name: format!("{ours}.bias"), shape: bias.1, values: bias.2 });
    }
    Ok((flavor, out))
}

/// Keras VGG16 (ImageNet, with or without top) or keras_vggface VGG16 → weights file.
pub fn convert_keras_h5(bytes: &[u8]) -> Result<WeightsFile> {
    let (flavor, tensors) = map_layers(read_keras_layers(bytes)?)?;
    let (source, license) = match flavor {
        Flavor::Keras => (KERAS_SOURCE, KERAS_LICENSE),
        Flavor::VggFace => (VGGFACE_SOURCE, VGGFACE_LICENSE),
    };
    WeightsFile::from_tensors(tensors, flavor.preprocessing(), source, license)
}
