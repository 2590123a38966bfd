//! torch.save's legacy format (PyTorch before 1.6, or
//! `_use_new_zipfile_serialization=False`; torchvision's published
//! `vgg16-397923af.pth` is one): five pickles in a row, then the storages.
//!
//! 1. the magic number 0x1950a86a20f9469cfc6c;
//! 2. the protocol version 1001;
//! 3. `sys_info` (`little_endian`, type sizes);
//! 4. the object, whose persistent ids are `('storage', torch.FloatStorage,
//!    root_key, location, numel, view_metadata)`;
//! 5. the list of storage keys;
//!
//! then for each key, in that order, an 8-byte little-endian element count
//! and the storage's bytes.
//!
//! The older tar format (torch before 0.1.10) is recognized and refused.

use std::collections::HashMap;
use std::rc::Rc;

use super::super::{Result, WeightsError};
use super::pickle::{self, Storage, StorageType, Value};

fn err(message: impl std::fmt::Display) -> WeightsError {
    WeightsError::Header(format!("PyTorch .pth (legacy format): {message}"))
}

/// 0x1950a86a20f9469cfc6c, little-endian, as pickle's LONG1 holds it.
pub const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
pub const PROTOCOL_VERSION: i64 = 1001;

/// Does `bytes` start like a legacy torch.save file (a binary pickle, protocol
/// 2–5, of the magic number)?
pub fn looks_legacy(bytes: &[u8]) -> bool {
    let rest = match bytes {
        [0x80, 2..=5, rest @ ..] => rest,
        _ => return false,
    };
    // Protocol 4 and later may open a frame first.
    let rest = match rest {
        [0x95, r @ ..] if r.len() >= 8 => &r[8..],
        r => r,
    };
    rest.len() >= 12 && rest[0] == 0x8a && rest[1] == 10 && rest[2..12] == MAGIC
}

/// The tar archives of torch before 0.1.10 (members `sys_info`, `pickle`,
/// `tensors`, `storages`).
pub fn looks_tar(bytes: &[u8]) -> bool {
    bytes.len() >= 512 && &bytes[257..262] == b"ustar"
}

/// A parsed legacy file: the saved object and every storage's bytes.
pub struct Legacy<'a> {
    pub root: Value,
    pub storages: HashMap<String, &'a [u8]>,
    pub big_endian: bool,
}

fn sys_info_little_endian(v: &Value) -> Result<bool> {
    let Value::Dict(m) = v else {
        return Err(err("the third pickle (sys_info) is not a dict"));
    };
    for (k, v) in &m.items {
        if matches!(k, Value::Str(s) if &**s == "little_endian") {
            return match v {
                Value::Bool(b) => Ok(*b),
                Value::Int(i) => Ok(*i != 0),
                _ => Err(err("sys_info's little_endian is not a bool")),
            };
        }
    }
    Ok(true)
}

pub fn parse(bytes: &[u8]) -> Result<Legacy<'_>> {
    let magic = pickle::load_at(bytes, 0)?;
    match &magic.value {
        Value::Long(b) if **b == MAGIC => {}
        _ => return Err(err("the first pickle is not torch's magic number 0x1950a86a20f9469cfc6c (corrupt file?)")),
    }
    let version = pickle::load_at(bytes, magic.end)?;
    match version.value {
        Value::Int(PROTOCOL_VERSION) => {}
        Value::Int(v) => return Err(err(format!("protocol version {v}, expected {PROTOCOL_VERSION}"))),
        _ => return Err(err("the second pickle is not the protocol version")),
    }
    let sys_info = pickle::load_at(bytes, version.end)?;
    let big_endian = !sys_info_little_endian(&sys_info.value)?;
    let main = pickle::load_at(bytes, sys_info.end)?;
    let key_list = pickle::load_at(bytes, main.end)?;
    let keys: Vec<Rc<str>> = match &key_list.value {
        Value::List(l) | Value::Tuple(l) => l
            .items
            .iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s.clone()),
                _ => Err(err("the storage key list holds something that is not a string")),
            })
            .collect::<Result<_>>()?,
        _ => return Err(err("the fifth pickle is not the list of storage keys")),
    };
    // Each root storage's type and size, as its persistent ids declare them.
    let mut declared: HashMap<&str, (StorageType, u64)> = HashMap::new();
    for s in &main.storages {
        let Storage { dtype, key, numel, .. } = &**s;
        match declared.get(key.as_str()) {
            Some(&(d, n)) if d != *dtype || n != *numel => {
                return Err(err(format!("storage `{key}` is declared twice, as {n} elements of {d:?} and as {numel} of {dtype:?}")))
            }
            _ => {
                declared.insert(key, (*dtype, *numel));
            }
        }
    }
    let mut storages = HashMap::with_capacity(keys.len());
    let mut p = key_list.end;
    for key in &keys {
        let &(dtype, numel) =
            declared.get(&**key).ok_or_else(|| err(format!("storage `{key}` is in the key list but no tensor refers to it")))?;
        let count = bytes
            .get(p..p.saturating_add(8))
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .ok_or_else(|| WeightsError::Truncated {
                what: format!("legacy .pth storage `{key}` header"),
                needed: p as u64 + 8,
                available: bytes.len() as u64,
            })?;
        if count != numel {
            return Err(err(format!("storage `{key}` holds {count} elements, its tensors say {numel}")));
        }
        let start = p + 8;
        let end = count
            .checked_mul(dtype.size() as u64)
            .and_then(|n| n.checked_add(start as u64))
            .filter(|&e| e <= bytes.len() as u64)
            .ok_or_else(|| WeightsError::Truncated {
                what: format!("legacy .pth storage `{key}` ({count} elements of {} bytes)", dtype.size()),
                needed: count.saturating_mul(dtype.size() as u64).saturating_add(start as u64),
                available: bytes.len() as u64,
            })? as usize;
        if storages.insert(key.to_string(), &bytes[start..end]).is_some() {
            return Err(err(format!("storage `{key}` appears twice in the key list")));
        }
        p = end;
    }
    Ok(Legacy { root: main.value, storages, big_endian })
}
