//! The HDF5 container: superblock (versions 0–3), object headers (v1 and
//! v2 with continuation blocks), groups (symbol tables: v1 B-tree + local
//! heap + SNOD nodes; link messages, and dense links in a fractal heap whose
//! name index is a single-leaf v2 B-tree), attributes (compact), and the
//! dataset messages. Every offset and length is bounds-checked, recursion is
//! capped and revisited nodes are refused: a malformed file is an error.

use std::collections::HashSet;

use super::data::{Dataset, Dataspace, Datatype};
use crate::weights::{Result, WeightsError};

pub(crate) fn err(message: impl std::fmt::Display) -> WeightsError {
    WeightsError::Header(format!("HDF5: {message}"))
}

pub(crate) const UNDEF: u64 = u64::MAX;
/// Most object header blocks (first + continuations) of one object.
const MAX_HEADER_BLOCKS: usize = 1024;
/// Deepest group nesting / soft-link chain followed.
pub const MAX_DEPTH: usize = 32;

/// A bounds-checked little-endian reader over a slice.
#[derive(Clone)]
pub(crate) struct Cursor<'a> {
    pub data: &'a [u8],
    pub pos: usize,
    pub what: &'static str,
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8], what: &'static str) -> Self {
        Cursor { data, pos: 0, what }
    }
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| {
            err(format!(
                "{} is truncated: needs {n} bytes at offset {}, only {} left",
                self.what,
                self.pos,
                self.data.len().saturating_sub(self.pos)
            ))
        })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub fn skip(&mut self, n: usize) -> Result<()> {
        self.bytes(n).map(|_| ())
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(self.uint(2)? as u16)
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(self.uint(4)? as u32)
    }
    /// An unsigned little-endian integer of `n` ≤ 8 bytes.
    pub fn uint(&mut self, n: usize) -> Result<u64> {
        let b = self.bytes(n)?;
        Ok(b.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64))
    }
    pub fn left(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }
}

/// One header message: its type, flags and body.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u8,
    pub data: &'a [u8],
}

/// Message types used here.
pub mod msg {
    pub const DATASPACE: u16 = 0x01;
    pub const LINK_INFO: u16 = 0x02;
    pub const DATATYPE: u16 = 0x03;
    pub const LAYOUT: u16 = 0x08;
    pub const FILTERS: u16 = 0x0B;
    pub const LINK: u16 = 0x06;
    pub const ATTRIBUTE: u16 = 0x0C;
    pub const CONTINUATION: u16 = 0x10;
    pub const SYMBOL_TABLE: u16 = 0x11;
    pub const ATTRIBUTE_INFO: u16 = 0x15;
}

/// An object (group or dataset): its header address and messages.
#[derive(Clone, Debug)]
pub struct Object<'a> {
    pub addr: u64,
    pub messages: Vec<Message<'a>>,
}

impl<'a> Object<'a> {
    pub fn find(&self, kind: u16) -> Option<&Message<'a>> {
        self.messages.iter().find(|m| m.kind == kind)
    }
    pub fn is_dataset(&self) -> bool {
        self.find(msg::LAYOUT).is_some()
    }
}

/// Where a link points.
#[derive(Clone, Debug, PartialEq)]
pub enum Link {
    Hard(u64),
    Soft(String),
    External,
}

/// An attribute: name, type, shape and raw data.
#[derive(Clone, Debug)]
pub struct Attribute<'a> {
    pub name: String,
    pub dtype: Datatype,
    pub space: Dataspace,
    pub data: &'a [u8],
}

/// An HDF5 file in memory.
pub struct File<'a> {
    pub data: &'a [u8],
    pub superblock_version: u8,
    base: u64,
    pub(crate) so: usize,
    pub(crate) sl: usize,
    root: u64,
}

pub const MAGIC: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

impl<'a> File<'a> {
    /// Find and read the superblock (at 0, 512, 1024, 2048, …).
    pub fn parse(data: &'a [u8]) -> Result<File<'a>> {
        let mut at = 0usize;
        while data.get(at..at + 8).is_none_or(|m| m != MAGIC) {
            at = if at == 0 { 512 } else { at * 2 };
            if at + 8 > data.len() {
                return Err(err("no HDF5 signature (\\x89HDF\\r\\n\\x1a\\n) at byte 0, 512, 1024, …: not an HDF5 file"));
            }
        }
        let mut c = Cursor::new(&data[at..], "superblock");
        c.skip(8)?;
        let version = c.u8()?;
        let (so, sl, base, root, eof);
        match version {
            0 | 1 => {
                c.skip(4)?; // free-space, root entry, reserved, shared header versions
                so = c.u8()? as usize;
                sl = c.u8()? as usize;
                c.skip(1)?;
                check_sizes(so, sl)?;
                c.skip(4 + 4)?; // leaf K, internal K, consistency flags
                if version == 1 {
                    c.skip(4)?;
                }
                base = c.uint(so)?;
                c.skip(so)?; // free-space info
                eof = c.uint(so)?;
                c.skip(so)?; // driver info
                             // Root group symbol table entry: name offset, object header address, …
                c.skip(so)?;
                root = c.uint(so)?;
            }
            2 | 3 => {
                so = c.u8()? as usize;
                sl = c.u8()? as usize;
                check_sizes(so, sl)?;
                c.skip(1)?;
                base = c.uint(so)?;
                c.skip(so)?; // superblock extension
                eof = c.uint(so)?;
                root = c.uint(so)?;
                verify(c.data, c.pos, "superblock")?;
            }
            v => return Err(err(format!("superblock version {v} is not supported (0–3 are)"))),
        }
        let base = if base == UNDEF { at as u64 } else { base };
        // The end-of-file address: a shorter file was truncated (as libhdf5 says too).
        if base.checked_add(eof).is_none_or(|e| e > data.len() as u64) {
            return Err(err(format!(
                "the file is truncated: its superblock gives an end of file at byte {eof}, but only {} bytes are there",
                data.len()
            )));
        }
        Ok(File { data, superblock_version: version, base, so, sl, root })
    }

    /// The root group's object header address.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// `len` bytes at file address `addr` (relative to the base address).
    pub fn slice(&self, addr: u64, len: u64, what: &str) -> Result<&'a [u8]> {
        if addr == UNDEF {
            return Err(err(format!("{what} has an undefined address")));
        }
        let start = self.base.checked_add(addr);
        let end = start.and_then(|s| s.checked_add(len));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.data.len() as u64 => Ok(&self.data[s as usize..e as usize]),
            _ => Err(err(format!(
                "{what} at address {addr} with {len} bytes lies past the end of the {}-byte file (truncated?)",
                self.data.len()
            ))),
        }
    }

    /// Everything from `addr` to the end of the file.
    pub(crate) fn from(&self, addr: u64, what: &'static str) -> Result<Cursor<'a>> {
        let start = self.base.checked_add(addr).filter(|&s| addr != UNDEF && s <= self.data.len() as u64);
        let s = start.ok_or_else(|| err(format!("{what} address {addr} lies past the end of the {}-byte file", self.data.len())))?;
        Ok(Cursor::new(&self.data[s as usize..], what))
    }

    pub(crate) fn offset(&self, c: &mut Cursor<'_>) -> Result<u64> {
        let v = c.uint(self.so)?;
        Ok(if self.so < 8 && v == (1u64 << (8 * self.so)) - 1 { UNDEF } else { v })
    }

    pub(crate) fn length(&self, c: &mut Cursor<'_>) -> Result<u64> {
        c.uint(self.sl)
    }

    /// Read an object header (v1 or v2) and all its continuation blocks.
    pub fn object(&self, addr: u64) -> Result<Object<'a>> {
        let mut messages = Vec::new();
        let mut c = self.from(addr, "object header")?;
        let mut blocks: Vec<(u64, u64)> = Vec::new();
        let v2 = c.data.starts_with(b"OHDR");
        let mut flags = 0u8;
        if v2 {
            c.skip(4)?;
            let version = c.u8()?;
            if version != 2 {
                return Err(err(format!("object header at {addr}: OHDR version {version} (expected 2)")));
            }
            flags = c.u8()?;
            if flags & 0x20 != 0 {
                c.skip(16)?;
            }
            if flags & 0x10 != 0 {
                c.skip(4)?;
            }
            let size = c.uint(1 << (flags & 3))?;
            let start = addr + c.pos as u64;
            let body = self.slice(start, size, "object header")?;
            let whole = self.slice(addr, c.pos as u64 + size + 4, "object header")?;
            verify(whole, whole.len() - 4, "object header")?;
            self.messages_v2(body, flags, &mut messages, &mut blocks)?;
        } else {
            let version = c.u8()?;
            if version != 1 {
                return Err(err(format!("object header at {addr}: version byte {version} is neither 1 nor an OHDR signature")));
            }
            c.skip(1)?;
            let _count = c.u16()?;
            c.skip(4)?;
            let size = c.u32()? as u64;
            let body = self.slice(addr + 16, size, "object header")?;
            messages_v1(body, &mut messages, &mut blocks, self)?;
        }
        let mut seen: HashSet<u64> = HashSet::new();
        seen.insert(addr);
        let mut i = 0;
        while i < blocks.len() {
            let (at, len) = blocks[i];
            i += 1;
            if blocks.len() > MAX_HEADER_BLOCKS || !seen.insert(at) {
                return Err(err(format!("object header at {addr}: continuation blocks loop or exceed {MAX_HEADER_BLOCKS}")));
            }
            let block = self.slice(at, len, "object header continuation")?;
            if v2 {
                if !block.starts_with(b"OCHK") || block.len() < 8 {
                    return Err(err(format!("object header continuation at {at} lacks its OCHK signature")));
                }
                verify(block, block.len() - 4, "object header continuation")?;
                self.messages_v2(&block[4..block.len() - 4], flags, &mut messages, &mut blocks)?;
            } else {
                messages_v1(block, &mut messages, &mut blocks, self)?;
            }
        }
        Ok(Object { addr, messages })
    }

    fn messages_v2(&self, body: &'a [u8], flags: u8, out: &mut Vec<Message<'a>>, blocks: &mut Vec<(u64, u64)>) -> Result<()> {
        let mut c = Cursor::new(body, "object header message");
        let head = if flags & 0x04 != 0 { 6 } else { 4 };
        while c.left() >= head {
            let kind = c.u8()? as u16;
            let size = c.u16()? as usize;
            let mflags = c.u8()?;
            if flags & 0x04 != 0 {
                c.skip(2)?;
            }
            let data = c.bytes(size)?;
            self.push(Message { kind, flags: mflags, data }, out, blocks)?;
        }
        Ok(())
    }

    fn push(&self, m: Message<'a>, out: &mut Vec<Message<'a>>, blocks: &mut Vec<(u64, u64)>) -> Result<()> {
        if m.kind == msg::CONTINUATION {
            let mut c = Cursor::new(m.data, "continuation message");
            let at = self.offset(&mut c)?;
            let len = self.length(&mut c)?;
            blocks.push((at, len));
        } else if m.kind != 0 {
            out.push(m);
        }
        Ok(())
    }

    /// The links of a group: (name, target), in storage order.
    pub fn links(&self, group: &Object<'a>) -> Result<Vec<(String, Link)>> {
        if let Some(m) = group.find(msg::SYMBOL_TABLE) {
            let mut c = Cursor::new(m.data, "symbol table message");
            let btree = self.offset(&mut c)?;
            let heap = self.offset(&mut c)?;
            return self.symbol_table(btree, heap);
        }
        let mut out = Vec::new();
        if let Some(m) = group.find(msg::LINK_INFO) {
            let mut c = Cursor::new(m.data, "link info message");
            c.skip(1)?;
            let flags = c.u8()?;
            if flags & 1 != 0 {
                c.skip(8)?;
            }
            let heap = self.offset(&mut c)?;
            let index = self.offset(&mut c)?;
            if heap != UNDEF {
                for record in super::dense::records(self, heap, index, "links")? {
                    out.push(self.link(record)?);
                }
            }
        }
        for m in group.messages.iter().filter(|m| m.kind == msg::LINK) {
            out.push(self.link(m.data)?);
        }
        if out.is_empty() && !group.messages.iter().any(|m| m.kind == msg::LINK_INFO) {
            return Err(err(format!("object at {} is not a group (no symbol table, link info or link message)", group.addr)));
        }
        Ok(out)
    }

    fn link(&self, data: &[u8]) -> Result<(String, Link)> {
        let mut c = Cursor::new(data, "link message");
        let version = c.u8()?;
        if version != 1 {
            return Err(err(format!("link message version {version} (expected 1)")));
        }
        let flags = c.u8()?;
        let kind = if flags & 0x08 != 0 { c.u8()? } else { 0 };
        if flags & 0x04 != 0 {
            c.skip(8)?;
        }
        if flags & 0x10 != 0 {
            c.skip(1)?;
        }
        let n = c.uint(1 << (flags & 3))? as usize;
        let name = String::from_utf8_lossy(c.bytes(n)?).into_owned();
        let link = match kind {
            0 => Link::Hard(self.offset(&mut c)?),
            1 => {
                let n = c.u16()? as usize;
                Link::Soft(String::from_utf8_lossy(c.bytes(n)?).into_owned())
            }
            _ => Link::External,
        };
        Ok((name, link))
    }

    /// Old-style group: walk the v1 B-tree of SNOD nodes, names from the local heap.
    fn symbol_table(&self, btree: u64, heap: u64) -> Result<Vec<(String, Link)>> {
        let mut c = self.from(heap, "local heap")?;
        if c.bytes(4)? != b"HEAP" {
            return Err(err(format!("local heap at {heap} lacks its HEAP signature")));
        }
        c.skip(4)?;
        let seg_size = self.length(&mut c)?;
        self.length(&mut c)?;
        let seg_addr = self.offset(&mut c)?;
        let names = self.slice(seg_addr, seg_size, "local heap data")?;
        let mut snods = Vec::new();
        let mut seen = HashSet::new();
        self.btree_v1(btree, 0, None, &mut seen, &mut |_, child| {
            snods.push(child);
            Ok(())
        })?;
        let mut out = Vec::new();
        for s in snods {
            let mut c = self.from(s, "symbol table node")?;
            if c.bytes(4)? != b"SNOD" {
                return Err(err(format!("symbol table node at {s} lacks its SNOD signature")));
            }
            c.skip(2)?;
            let n = c.u16()?;
            for _ in 0..n {
                let name_off = self.offset(&mut c)?;
                let header = self.offset(&mut c)?;
                let cache = c.u32()?;
                c.skip(4)?;
                let scratch = c.bytes(16)?;
                let heap_str = |off: u64| {
                    names
                        .get(off as usize..)
                        .filter(|_| off < names.len() as u64)
                        .and_then(|s| s.iter().position(|&b| b == 0).map(|e| String::from_utf8_lossy(&s[..e]).into_owned()))
                        .ok_or_else(|| err(format!("a link name at heap offset {off} lies outside its {}-byte local heap", names.len())))
                };
                let link = if cache == 2 {
                    Link::Soft(heap_str(u32::from_le_bytes([scratch[0], scratch[1], scratch[2], scratch[3]]) as u64)?)
                } else {
                    Link::Hard(header)
                };
                out.push((heap_str(name_off)?, link));
            }
        }
        Ok(out)
    }

    /// Walk a v1 B-tree (`node_type` 0: group, 1: chunks of a `rank`-dim
    /// dataset), calling `leaf(key bytes, child address)` for each level-0 child.
    pub(crate) fn btree_v1(
        &self,
        addr: u64,
        node_type: u8,
        rank: Option<usize>,
        seen: &mut HashSet<u64>,
        leaf: &mut dyn FnMut(&'a [u8], u64) -> Result<()>,
    ) -> Result<()> {
        self.btree_v1_node(addr, node_type, rank, None, seen, leaf)
    }

    fn btree_v1_node(
        &self,
        addr: u64,
        node_type: u8,
        rank: Option<usize>,
        expect_level: Option<u8>,
        seen: &mut HashSet<u64>,
        leaf: &mut dyn FnMut(&'a [u8], u64) -> Result<()>,
    ) -> Result<()> {
        if !seen.insert(addr) {
            return Err(err(format!("B-tree node at {addr} is reached twice (a cycle)")));
        }
        let mut c = self.from(addr, "B-tree node")?;
        if c.bytes(4)? != b"TREE" {
            return Err(err(format!("B-tree node at {addr} lacks its TREE signature")));
        }
        let t = c.u8()?;
        let level = c.u8()?;
        if t != node_type || expect_level.is_some_and(|l| l != level) || level as usize > MAX_DEPTH {
            return Err(err(format!("B-tree node at {addr}: type {t} level {level} is not what its parent implies")));
        }
        let entries = c.u16()? as usize;
        c.skip(2 * self.so)?;
        let key_len = match rank {
            None => self.sl,
            Some(r) => 8 + 8 * (r + 1),
        };
        for _ in 0..entries {
            let key = c.bytes(key_len)?;
            let child = self.offset(&mut c)?;
            if level == 0 {
                leaf(key, child)?;
            } else {
                self.btree_v1_node(child, node_type, rank, Some(level - 1), seen, leaf)?;
            }
        }
        Ok(())
    }

    /// The object at `path` (components separated by '/') from the group at `from`.
    pub fn lookup(&self, from: u64, path: &str) -> Result<u64> {
        self.lookup_depth(from, path, 0)
    }

    fn lookup_depth(&self, from: u64, path: &str, depth: usize) -> Result<u64> {
        if depth > MAX_DEPTH {
            return Err(err(format!("soft links nest deeper than {MAX_DEPTH} at \"{path}\"")));
        }
        let (mut at, rest) = match path.strip_prefix('/') {
            Some(r) => (self.root, r),
            None => (from, path),
        };
        for part in rest.split('/').filter(|p| !p.is_empty() && *p != ".") {
            let obj = self.object(at)?;
            let links = self.links(&obj)?;
            let target = links.into_iter().find(|(n, _)| n == part).map(|(_, l)| l);
            at = match target {
                Some(Link::Hard(a)) => a,
                Some(Link::Soft(p)) => self.lookup_depth(at, &p, depth + 1)?,
                Some(Link::External) => return Err(err(format!("\"{part}\" in \"{path}\" is an external link (not supported)"))),
                None => return Err(err(format!("\"{path}\": no member \"{part}\""))),
            };
        }
        Ok(at)
    }

    /// The attributes stored in an object header (compact or dense storage).
    pub fn attributes(&self, obj: &Object<'a>) -> Result<Vec<Attribute<'a>>> {
        let mut out = Vec::new();
        if let Some(m) = obj.find(msg::ATTRIBUTE_INFO) {
            let mut c = Cursor::new(m.data, "attribute info message");
            c.skip(1)?;
            let flags = c.u8()?;
            if flags & 1 != 0 {
                c.skip(2)?;
            }
            let heap = self.offset(&mut c)?;
            let index = self.offset(&mut c)?;
            if heap != UNDEF {
                for record in super::dense::records(self, heap, index, "attributes")? {
                    out.push(self.attribute(record)?);
                }
            }
        }
        for m in obj.messages.iter().filter(|m| m.kind == msg::ATTRIBUTE) {
            out.push(self.attribute(m.data)?);
        }
        Ok(out)
    }

    pub fn attribute(&self, data: &'a [u8]) -> Result<Attribute<'a>> {
        let mut c = Cursor::new(data, "attribute message");
        let version = c.u8()?;
        let flags = c.u8()?;
        let name_len = c.u16()? as usize;
        let type_len = c.u16()? as usize;
        let space_len = c.u16()? as usize;
        if flags & 3 != 0 {
            return Err(err("an attribute with a shared datatype or dataspace (not supported)"));
        }
        let pad = |n: usize| if version == 1 { n.div_ceil(8) * 8 } else { n };
        match version {
            1 | 2 => {}
            3 => c.skip(1)?,
            v => return Err(err(format!("attribute message version {v} (1–3 are supported)"))),
        }
        let name = c.bytes(pad(name_len))?;
        let name = &name[..name_len.min(name.len())];
        let name = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap_or(&[])).into_owned();
        let dtype = Datatype::parse(c.bytes(pad(type_len))?)?;
        let space = Dataspace::parse(self, c.bytes(pad(space_len))?)?;
        let n = space.count()?;
        let size = n
            .checked_mul(dtype.size() as u64)
            .filter(|&s| s <= c.left() as u64)
            .ok_or_else(|| err(format!("attribute \"{name}\": {n} elements of {} bytes do not fit its message", dtype.size())))?;
        let data = c.bytes(size as usize)?;
        Ok(Attribute { name, dtype, space, data })
    }

    /// An attribute of an object by name.
    pub fn attribute_named(&self, obj: &Object<'a>, name: &str) -> Result<Option<Attribute<'a>>> {
        Ok(self.attributes(obj)?.into_iter().find(|a| a.name == name))
    }

    /// The values of a string attribute (fixed-length or variable-length
    /// strings; an empty array of any type reads as no strings).
    pub fn strings(&self, a: &Attribute<'a>) -> Result<Vec<String>> {
        let n = a.space.count()? as usize;
        if n == 0 {
            return Ok(Vec::new());
        }
        match a.dtype {
            Datatype::FixedString { size, pad } => Ok(a
                .data
                .chunks_exact(size.max(1))
                .take(n)
                .map(|s| {
                    let s = if pad == 2 { s.trim_ascii_end() } else { s.split(|&b| b == 0).next().unwrap_or(&[]) };
                    String::from_utf8_lossy(s).into_owned()
                })
                .collect()),
            Datatype::VarString { size } => {
                if size != 8 + self.so {
                    return Err(err(format!("attribute \"{}\": variable-length elements of {size} bytes", a.name)));
                }
                let mut c = Cursor::new(a.data, "variable-length string");
                (0..n)
                    .map(|_| {
                        let len = c.u32()? as u64;
                        let coll = self.offset(&mut c)?;
                        let index = c.u32()?;
                        let bytes = self.global_heap(coll, index)?;
                        let s = bytes.get(..len as usize).ok_or_else(|| err("a variable-length string is longer than its heap object"))?;
                        Ok(String::from_utf8_lossy(s).into_owned())
                    })
                    .collect()
            }
            ref other => Err(err(format!("attribute \"{}\" holds {}, not strings", a.name, other.describe()))),
        }
    }

    /// Object `index` of the global heap collection at `addr`.
    pub fn global_heap(&self, addr: u64, index: u32) -> Result<&'a [u8]> {
        let mut c = self.from(addr, "global heap")?;
        if c.bytes(4)? != b"GCOL" {
            return Err(err(format!("global heap at {addr} lacks its GCOL signature")));
        }
        c.skip(4)?;
        let size = self.length(&mut c)?;
        let all = self.slice(addr, size, "global heap collection")?;
        let mut c = Cursor::new(all, "global heap collection");
        c.skip(8 + self.sl)?;
        while c.left() >= 8 + self.sl {
            let i = c.u16()?;
            c.skip(6)?;
            let n = self.length(&mut c)?;
            if i == 0 {
                break;
            }
            let data = c.bytes(usize::try_from(n).map_err(|_| err("global heap object too large"))?)?;
            if i as u32 == index {
                return Ok(data);
            }
            c.skip(((n as usize).div_ceil(8) * 8 - n as usize).min(c.left()))?;
        }
        Err(err(format!("global heap at {addr} has no object {index}")))
    }

    /// The dataset whose object header is at `addr`.
    pub fn dataset(&self, addr: u64) -> Result<Dataset<'a>> {
        let obj = self.object(addr)?;
        Dataset::from_object(self, &obj)
    }
}

/// Bob Jenkins's lookup3 `hashlittle` (initval 0): the checksum of HDF5's
/// version-2 structures (superblock v2/3, OHDR, OCHK).
pub fn lookup3(data: &[u8]) -> u32 {
    let mut a = 0xdead_beefu32.wrapping_add(data.len() as u32);
    let (mut b, mut c) = (a, a);
    let word = |k: &[u8], i: usize| -> u32 {
        let mut w = [0u8; 4];
        for (j, x) in w.iter_mut().enumerate() {
            *x = k.get(i + j).copied().unwrap_or(0);
        }
        u32::from_le_bytes(w)
    };
    let mut k = data;
    while k.len() > 12 {
        a = a.wrapping_add(word(k, 0));
        b = b.wrapping_add(word(k, 4));
        c = c.wrapping_add(word(k, 8));
        a = a.wrapping_sub(c) ^ c.rotate_left(4);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a) ^ a.rotate_left(6);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b) ^ b.rotate_left(8);
        b = b.wrapping_add(a);
        a = a.wrapping_sub(c) ^ c.rotate_left(16);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a) ^ a.rotate_left(19);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b) ^ b.rotate_left(4);
        b = b.wrapping_add(a);
        k = &k[12..];
    }
    if k.is_empty() {
        return c;
    }
    a = a.wrapping_add(word(k, 0));
    b = b.wrapping_add(word(k, 4));
    c = c.wrapping_add(word(k, 8));
    c = (c ^ b).wrapping_sub(b.rotate_left(14));
    a = (a ^ c).wrapping_sub(c.rotate_left(11));
    b = (b ^ a).wrapping_sub(a.rotate_left(25));
    c = (c ^ b).wrapping_sub(b.rotate_left(16));
    a = (a ^ c).wrapping_sub(c.rotate_left(4));
    b = (b ^ a).wrapping_sub(a.rotate_left(14));
    (c ^ b).wrapping_sub(b.rotate_left(24))
}

/// Check the lookup3 checksum that follows `covered` bytes at the start of `block`.
pub(crate) fn verify(block: &[u8], covered: usize, what: &str) -> Result<()> {
    let stored = block.get(covered..covered + 4).ok_or_else(|| err(format!("{what} is truncated before its checksum")))?;
    let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
    let got = lookup3(&block[..covered]);
    if stored != got {
        return Err(err(format!("{what} checksum mismatch (stored {stored:08x}, computed {got:08x}): the file is corrupt")));
    }
    Ok(())
}

fn check_sizes(so: usize, sl: usize) -> Result<()> {
    if ![2, 4, 8].contains(&so) || ![2, 4, 8].contains(&sl) {
        return Err(err(format!("sizes of offsets {so} and lengths {sl} (2, 4 or 8 expected)")));
    }
    Ok(())
}

fn messages_v1<'a>(body: &'a [u8], out: &mut Vec<Message<'a>>, blocks: &mut Vec<(u64, u64)>, f: &File<'a>) -> Result<()> {
    let mut c = Cursor::new(body, "object header message");
    while c.left() >= 8 {
        let kind = c.u16()?;
        let size = c.u16()? as usize;
        let flags = c.u8()?;
        c.skip(3)?;
        let data = c.bytes(size)?;
        f.push(Message { kind, flags, data }, out, blocks)?;
    }
    Ok(())
}
