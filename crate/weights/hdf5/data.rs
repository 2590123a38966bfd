//! Datatypes, dataspaces and datasets: contiguous, compact and chunked
//! layouts (v1 B-tree, single-chunk, implicit and unpaged fixed-array chunk
//! indices) with the deflate, shuffle and Fletcher-32 filters; float16/32/64
//! of either byte order read as f32.

use std::collections::HashSet;

use super::file::{err, msg, Cursor, File, Object, UNDEF};
use crate::weights::inflate;
use crate::weights::Result;

/// Largest dataset read, in bytes (VGG16's fc6 is 411 MB in f32).
pub const MAX_DATASET_BYTES: u64 = 1 << 30;

/// The element types met here.
#[derive(Clone, Debug, PartialEq)]
pub enum Datatype {
    Float {
        size: usize,
        big_endian: bool,
    },
    Int {
        size: usize,
        signed: bool,
        big_endian: bool,
    },
    /// `pad`: 0 null-terminated, 1 null-padded, 2 space-padded.
    FixedString {
        size: usize,
        pad: u8,
    },
    /// Each element: length (4), global heap collection address, object index (4).
    VarString {
        size: usize,
    },
    /// Any other class (number) and size.
    Other {
        class: u8,
        size: usize,
    },
}

impl Datatype {
    pub fn parse(data: &[u8]) -> Result<Datatype> {
        let mut c = Cursor::new(data, "datatype message");
        let cv = c.u8()?;
        let (class, version) = (cv & 15, cv >> 4);
        if !(1..=5).contains(&version) {
            return Err(err(format!("datatype version {version} is not known")));
        }
        let bits = c.bytes(3)?;
        let size = c.u32()? as usize;
        Ok(match class {
            0 => Datatype::Int { size, signed: bits[0] & 8 != 0, big_endian: bits[0] & 1 != 0 },
            1 => {
                let _offset = c.u16()?;
                let precision = c.u16()? as usize;
                let _eloc = c.u8()?;
                let esize = c.u8()?;
                let _mloc = c.u8()?;
                let msize = c.u8()?;
                let standard = matches!((size, esize, msize), (2, 5, 10) | (4, 8, 23) | (8, 11, 52));
                if bits[0] & 0x40 != 0 || !standard || precision != size * 8 {
                    Datatype::Other { class, size }
                } else {
                    Datatype::Float { size, big_endian: bits[0] & 1 != 0 }
                }
            }
            3 => Datatype::FixedString { size, pad: bits[0] & 15 },
            9 if bits[0] & 15 == 1 => Datatype::VarString { size },
            _ => Datatype::Other { class, size },
        })
    }

    pub fn size(&self) -> usize {
        match *self {
            Datatype::Float { size, .. }
            | Datatype::Int { size, .. }
            | Datatype::FixedString { size, .. }
            | Datatype::VarString { size }
            | Datatype::Other { size, .. } => size,
        }
    }

    /// A short description for error messages ("float32 big-endian", …).
    pub fn describe(&self) -> String {
        match *self {
            Datatype::Float { size, big_endian } => format!("float{}{}", size * 8, if big_endian { " big-endian" } else { "" }),
            Datatype::Int { size, signed, .. } => format!("{}int{}", if signed { "" } else { "u" }, size * 8),
            Datatype::FixedString { size, .. } => format!("fixed-length strings of {size} bytes"),
            Datatype::VarString { .. } => "variable-length strings".into(),
            Datatype::Other { class, size } => {
                let name = [
                    "integer",
                    "float",
                    "time",
                    "string",
                    "bitfield",
                    "opaque",
                    "compound",
                    "reference",
                    "enum",
                    "variable-length",
                    "array",
                ]
                .get(class as usize)
                .copied()
                .unwrap_or("unknown");
                format!("HDF5 datatype class {class} ({name}) of {size} bytes")
            }
        }
    }
}

/// A dataspace: `None` for the null dataspace, else the dimensions (empty: scalar).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataspace {
    pub dims: Option<Vec<u64>>,
}

impl Dataspace {
    pub fn parse(f: &File<'_>, data: &[u8]) -> Result<Dataspace> {
        let mut c = Cursor::new(data, "dataspace message");
        let version = c.u8()?;
        let rank = c.u8()? as usize;
        let _flags = c.u8()?;
        let null = match version {
            1 => {
                c.skip(5)?;
                false
            }
            2 => c.u8()? == 2,
            v => return Err(err(format!("dataspace version {v} (1 and 2 are supported)"))),
        };
        if rank > 32 {
            return Err(err(format!("dataspace of rank {rank} (at most 32)")));
        }
        let dims = (0..rank).map(|_| f.length(&mut c)).collect::<Result<Vec<u64>>>()?;
        Ok(Dataspace { dims: if null { None } else { Some(dims) } })
    }

    /// Number of elements (overflow is an error).
    pub fn count(&self) -> Result<u64> {
        match &self.dims {
            None => Ok(0),
            Some(d) => d.iter().try_fold(1u64, |a, &x| a.checked_mul(x)).ok_or_else(|| err(format!("dataspace {d:?} overflows"))),
        }
    }
}

#[derive(Clone, Debug)]
enum Layout<'a> {
    Compact(&'a [u8]),
    Contiguous {
        addr: u64,
        size: u64,
    },
    /// `chunk`: chunk dimensions (without the element size).
    Chunked {
        chunk: Vec<u64>,
        index: ChunkIndex,
    },
}

#[derive(Clone, Debug)]
enum ChunkIndex {
    BtreeV1(u64),
    Single { addr: u64, size: Option<u64>, mask: u32 },
    Implicit(u64),
    FixedArray(u64),
}

#[derive(Clone, Debug)]
struct Filter {
    id: u16,
    name: String,
    client: Vec<u32>,
}

/// A dataset: shape, element type, and where its data lies.
pub struct Dataset<'a> {
    pub shape: Vec<u64>,
    pub dtype: Datatype,
    layout: Layout<'a>,
    filters: Vec<Filter>,
    file: &'a [u8],
}

/// One stored chunk: element offsets, stored bytes, filter mask.
struct Chunk<'a> {
    offsets: Vec<u64>,
    data: &'a [u8],
    mask: u32,
}

impl<'a> Dataset<'a> {
    pub fn from_object(f: &File<'a>, obj: &Object<'a>) -> Result<Dataset<'a>> {
        let need = |kind: u16, what: &str| {
            let m = obj.find(kind).ok_or_else(|| err(format!("object at {} is not a dataset (no {what} message)", obj.addr)))?;
            if m.flags & 2 != 0 {
                return Err(err(format!("dataset at {}: shared (committed) {what} messages are not supported", obj.addr)));
            }
            Ok(m.data)
        };
        let dtype = Datatype::parse(need(msg::DATATYPE, "datatype")?)?;
        let space = Dataspace::parse(f, need(msg::DATASPACE, "dataspace")?)?;
        let shape = space.dims.clone().unwrap_or_default();
        let layout = parse_layout(f, need(msg::LAYOUT, "layout")?, shape.len())?;
        let filters = match obj.find(msg::FILTERS) {
            Some(m) => parse_filters(m.data)?,
            None => Vec::new(),
        };
        Ok(Dataset { shape, dtype, layout, filters, file: f.data })
    }

    /// Number of elements.
    pub fn count(&self) -> Result<u64> {
        Dataspace { dims: Some(self.shape.clone()) }.count()
    }

    /// The raw bytes of the whole dataset, row-major.
    pub fn read_bytes(&self, f: &File<'a>) -> Result<Vec<u8>> {
        let es = self.dtype.size() as u64;
        let total = self.count()?.checked_mul(es).filter(|&t| t <= MAX_DATASET_BYTES).ok_or_else(|| {
            err(format!("dataset of shape {:?} with {es}-byte elements is larger than the {MAX_DATASET_BYTES}-byte limit", self.shape))
        })?;
        match &self.layout {
            Layout::Compact(data) => {
                data.get(..total as usize).map(<[u8]>::to_vec).ok_or_else(|| err("compact dataset holds fewer bytes than its shape needs"))
            }
            Layout::Contiguous { addr, size } => {
                if total == 0 || *addr == UNDEF {
                    // Never written: fill values (zeros), as large as the file could plausibly describe.
                    if total > (self.file.len() as u64).saturating_mul(1100) {
                        return Err(err(format!("unwritten dataset of {total} bytes in a {}-byte file", self.file.len())));
                    }
                    return Ok(vec![0; total as usize]);
                }
                if *size < total {
                    return Err(err(format!("contiguous dataset stores {size} bytes, its shape needs {total}")));
                }
                Ok(f.slice(*addr, total, "dataset data")?.to_vec())
            }
            Layout::Chunked { chunk, index } => self.read_chunked(f, chunk, index, total),
        }
    }

    fn read_chunked(&self, f: &File<'a>, chunk: &[u64], index: &ChunkIndex, total: u64) -> Result<Vec<u8>> {
        let rank = self.shape.len();
        let es = self.dtype.size() as u64;
        if chunk.len() != rank || chunk.contains(&0) {
            return Err(err(format!("chunk dimensions {chunk:?} do not fit the dataset's shape {:?}", self.shape)));
        }
        let chunk_bytes = chunk
            .iter()
            .try_fold(es, |a, &d| a.checked_mul(d))
            .filter(|&b| b <= MAX_DATASET_BYTES)
            .ok_or_else(|| err(format!("chunks of {chunk:?} elements are larger than the {MAX_DATASET_BYTES}-byte limit")))?;
        // A file cannot hold more than ~1032× its size in deflated data.
        let bound = (self.file.len() as u64).saturating_mul(1100).saturating_add(1 << 20);
        if total > bound {
            return Err(err(format!("chunked dataset of {total} bytes cannot come from a {}-byte file", self.file.len())));
        }
        let grid: Vec<u64> = self.shape.iter().zip(chunk).map(|(&d, &c)| d.div_ceil(c)).collect();
        let nchunks = grid.iter().try_fold(1u64, |a, &g| a.checked_mul(g)).ok_or_else(|| err("chunk count overflows"))?;
        let mut chunks: Vec<Chunk<'a>> = Vec::new();
        let linear_offsets = |i: u64| {
            let mut o = vec![0u64; rank];
            let mut r = i;
            for d in (0..rank).rev() {
                o[d] = (r % grid[d]) * chunk[d];
                r /= grid[d];
            }
            o
        };
        match *index {
            ChunkIndex::BtreeV1(addr) => {
                if addr != UNDEF {
                    let mut seen = HashSet::new();
                    f.btree_v1(addr, 1, Some(rank), &mut seen, &mut |key, child| {
                        if chunks.len() as u64 >= nchunks {
                            return Err(err("the chunk B-tree lists more chunks than the dataset has"));
                        }
                        let mut c = Cursor::new(key, "chunk key");
                        let size = c.u32()? as u64;
                        let mask = c.u32()?;
                        let offsets = (0..rank).map(|_| c.uint(8)).collect::<Result<Vec<u64>>>()?;
                        chunks.push(Chunk { offsets, data: f.slice(child, size, "chunk")?, mask });
                        Ok(())
                    })?;
                }
            }
            ChunkIndex::Single { addr, size, mask } => {
                if nchunks != 1 {
                    return Err(err("single-chunk index on a dataset of several chunks"));
                }
                chunks.push(Chunk { offsets: vec![0; rank], data: f.slice(addr, size.unwrap_or(chunk_bytes), "chunk")?, mask });
            }
            ChunkIndex::Implicit(addr) => {
                if !self.filters.is_empty() {
                    return Err(err("implicit chunk index with filters"));
                }
                let all = f.slice(addr, chunk_bytes.checked_mul(nchunks).ok_or_else(|| err("chunk storage overflows"))?, "chunks")?;
                for (i, data) in all.chunks_exact(chunk_bytes as usize).enumerate() {
                    chunks.push(Chunk { offsets: linear_offsets(i as u64), data, mask: 0 });
                }
            }
            ChunkIndex::FixedArray(addr) => {
                let filtered = !self.filters.is_empty();
                for (i, (a, size, mask)) in fixed_array(f, addr, nchunks, filtered)?.into_iter().enumerate() {
                    if a != UNDEF {
                        chunks.push(Chunk {
                            offsets: linear_offsets(i as u64),
                            data: f.slice(a, size.unwrap_or(chunk_bytes), "chunk")?,
                            mask,
                        });
                    }
                }
            }
        }
        let mut out = vec![0u8; total as usize];
        for ch in chunks {
            if ch.offsets.iter().zip(chunk).zip(&self.shape).any(|((&o, &c), &d)| o % c != 0 || o >= d) {
                return Err(err(format!("a chunk at offsets {:?} lies outside the dataset's shape {:?}", ch.offsets, self.shape)));
            }
            let data = self.unfilter(ch.data, ch.mask, chunk_bytes as usize)?;
            if data.len() as u64 != chunk_bytes {
                return Err(err(format!("a chunk decodes to {} bytes, expected {chunk_bytes}", data.len())));
            }
            copy_chunk(&mut out, &data, &self.shape, chunk, &ch.offsets, es as usize);
        }
        Ok(out)
    }

    /// Undo the filter pipeline (in reverse) for one chunk.
    fn unfilter<'b>(&self, data: &'b [u8], mask: u32, chunk_bytes: usize) -> Result<std::borrow::Cow<'b, [u8]>> {
        let mut cur: std::borrow::Cow<'b, [u8]> = std::borrow::Cow::Borrowed(data);
        for (i, filt) in self.filters.iter().enumerate().rev() {
            if i < 32 && mask & (1 << i) != 0 {
                continue;
            }
            cur = match filt.id {
                1 => inflate::zlib(&cur, chunk_bytes)?.into(),
                2 => {
                    let es = filt.client.first().map(|&s| s as usize).unwrap_or(self.dtype.size());
                    unshuffle(&cur, es).into()
                }
                3 => {
                    let n = cur.len().checked_sub(4).ok_or_else(|| err("a Fletcher-32 chunk is shorter than its checksum"))?;
                    cur[..n].to_vec().into()
                }
                id => {
                    let known = match id {
                        4 => "szip",
                        5 => "nbit",
                        6 => "scaleoffset",
                        32000 => "lzf",
                        32001 => "blosc",
                        32004 => "lz4",
                        32008 => "bitshuffle",
                        32015 => "zstd",
                        _ => "",
                    };
                    let name = if filt.name.is_empty() { known } else { &filt.name };
                    return Err(err(format!(
                        "filter {id} ({name}) is not supported (gzip, shuffle and fletcher32 are); re-save the file with compression=\"gzip\" or none"
                    )));
                }
            };
        }
        Ok(cur)
    }

    /// The dataset's values as f32 (float16, float32 and float64 of either byte order).
    pub fn read_f32(&self, f: &File<'a>) -> Result<Vec<f32>> {
        let (size, be) = match self.dtype {
            Datatype::Float { size, big_endian } => (size, big_endian),
            ref other => return Err(err(format!("dataset holds {}, not floats", other.describe()))),
        };
        // Contiguous data converts straight from the file (no intermediate copy).
        let owned;
        let bytes: &[u8] = match &self.layout {
            Layout::Contiguous { addr, size } if *addr != UNDEF && self.count()? > 0 => {
                let total = self.count()?.checked_mul(size_of_elem(&self.dtype)).filter(|&t| t <= MAX_DATASET_BYTES && t <= *size);
                let total = total
                    .ok_or_else(|| err(format!("contiguous dataset of shape {:?} does not fit its {size} stored bytes", self.shape)))?;
                f.slice(*addr, total, "dataset data")?
            }
            _ => {
                owned = self.read_bytes(f)?;
                &owned
            }
        };
        let word = |b: &[u8]| -> u64 {
            if be {
                b.iter().fold(0u64, |a, &x| (a << 8) | x as u64)
            } else {
                b.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64)
            }
        };
        Ok(match size {
            2 => bytes.chunks_exact(2).map(|b| crate::weights::f16_to_f32(word(b) as u16)).collect(),
            4 => bytes.chunks_exact(4).map(|b| f32::from_bits(word(b) as u32)).collect(),
            _ => bytes.chunks_exact(8).map(|b| f64::from_bits(word(b)) as f32).collect(),
        })
    }
}

fn size_of_elem(t: &Datatype) -> u64 {
    t.size() as u64
}

fn unshuffle(data: &[u8], es: usize) -> Vec<u8> {
    if es <= 1 || es > data.len() {
        return data.to_vec();
    }
    let n = data.len() / es;
    let mut out = vec![0u8; data.len()];
    for b in 0..es {
        for i in 0..n {
            out[i * es + b] = data[b * n + i];
        }
    }
    out[n * es..].copy_from_slice(&data[n * es..]);
    out
}

/// Copy a decoded chunk into the row-major output, clipping at the edges.
fn copy_chunk(out: &mut [u8], data: &[u8], shape: &[u64], chunk: &[u64], offsets: &[u64], es: usize) {
    let rank = shape.len();
    if rank == 0 {
        out.copy_from_slice(&data[..out.len()]);
        return;
    }
    let extent: Vec<u64> = (0..rank).map(|d| chunk[d].min(shape[d] - offsets[d])).collect();
    let row = extent[rank - 1] as usize * es;
    let mut idx = vec![0u64; rank - 1];
    loop {
        let (mut src, mut dst) = (0u64, 0u64);
        for d in 0..rank {
            let i = if d < rank - 1 { idx[d] } else { 0 };
            src = src * chunk[d] + i;
            dst = dst * shape[d] + offsets[d] + i;
        }
        let (s, t) = (src as usize * es, dst as usize * es);
        out[t..t + row].copy_from_slice(&data[s..s + row]);
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < extent[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

fn parse_layout<'a>(f: &File<'a>, data: &'a [u8], rank: usize) -> Result<Layout<'a>> {
    let mut c = Cursor::new(data, "layout message");
    let version = c.u8()?;
    if !(3..=5).contains(&version) {
        let age = if version < 3 { "; the file predates HDF5 1.6" } else { "" };
        return Err(err(format!("data layout message version {version} (3, 4 and 5 are supported{age})")));
    }
    let class = c.u8()?;
    match class {
        0 => {
            let n = c.u16()? as usize;
            Ok(Layout::Compact(c.bytes(n)?))
        }
        1 => Ok(Layout::Contiguous { addr: f.offset(&mut c)?, size: f.length(&mut c)? }),
        2 if version == 3 => {
            let nd = c.u8()? as usize;
            let addr = f.offset(&mut c)?;
            let dims = (0..nd).map(|_| c.u32().map(u64::from)).collect::<Result<Vec<u64>>>()?;
            Ok(Layout::Chunked { chunk: chunk_dims(dims, rank)?, index: ChunkIndex::BtreeV1(addr) })
        }
        2 => {
            let flags = c.u8()?;
            let nd = c.u8()? as usize;
            let enc = c.u8()? as usize;
            if !(1..=8).contains(&enc) {
                return Err(err(format!("chunk dimension size of {enc} bytes")));
            }
            let dims = (0..nd).map(|_| c.uint(enc)).collect::<Result<Vec<u64>>>()?;
            let chunk = chunk_dims(dims, rank)?;
            let index = match c.u8()? {
                1 => {
                    let (size, mask) = if flags & 2 != 0 { (Some(f.length(&mut c)?), c.u32()?) } else { (None, 0) };
                    ChunkIndex::Single { addr: f.offset(&mut c)?, size, mask }
                }
                2 => ChunkIndex::Implicit(f.offset(&mut c)?),
                3 => {
                    c.skip(1)?;
                    ChunkIndex::FixedArray(f.offset(&mut c)?)
                }
                4 | 5 => {
                    return Err(err(
                        "chunked dataset with unlimited dimensions (extensible-array or v2 B-tree chunk index) is not supported; \
                         re-save it without maxshape",
                    ))
                }
                t => return Err(err(format!("chunk index type {t} is not known"))),
            };
            Ok(Layout::Chunked { chunk, index })
        }
        3 => Err(err("virtual datasets are not supported")),
        k => Err(err(format!("data layout class {k} is not known"))),
    }
}

/// Chunk dimensions as stored have one more entry (the element size); drop it.
fn chunk_dims(mut dims: Vec<u64>, rank: usize) -> Result<Vec<u64>> {
    if dims.len() != rank + 1 {
        return Err(err(format!("chunk dimensions {dims:?} do not match a rank-{rank} dataset")));
    }
    dims.pop();
    Ok(dims)
}

fn parse_filters(data: &[u8]) -> Result<Vec<Filter>> {
    let mut c = Cursor::new(data, "filter pipeline message");
    let version = c.u8()?;
    let n = c.u8()?;
    if version == 1 {
        c.skip(6)?;
    } else if version != 2 {
        return Err(err(format!("filter pipeline version {version}")));
    }
    let mut out = Vec::new();
    for _ in 0..n {
        let id = c.u16()?;
        let name_len = if version == 1 || id >= 256 { c.u16()? as usize } else { 0 };
        let _flags = c.u16()?;
        let nvalues = c.u16()? as usize;
        let name = if version == 1 { c.bytes(name_len.div_ceil(8) * 8)? } else { c.bytes(name_len)? };
        let name = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap_or(&[])).into_owned();
        let client = (0..nvalues).map(|_| c.u32()).collect::<Result<Vec<u32>>>()?;
        if version == 1 && nvalues % 2 == 1 {
            c.skip(4)?;
        }
        out.push(Filter { id, name, client });
    }
    Ok(out)
}

/// The entries of an unpaged fixed array: (chunk address, stored size when filtered, filter mask).
fn fixed_array(f: &File<'_>, addr: u64, nchunks: u64, filtered: bool) -> Result<Vec<(u64, Option<u64>, u32)>> {
    let mut c = f.from(addr, "fixed array header")?;
    if c.bytes(4)? != b"FAHD" {
        return Err(err(format!("fixed array header at {addr} lacks its FAHD signature")));
    }
    c.skip(1)?;
    let client = c.u8()?;
    let entry = c.u8()? as usize;
    let page_bits = c.u8()?;
    let max = f.length(&mut c)?;
    let block = f.offset(&mut c)?;
    if (client == 1) != filtered || max < nchunks {
        return Err(err(format!("fixed array at {addr} (client {client}, {max} entries) does not fit its dataset of {nchunks} chunks")));
    }
    if page_bits < 64 && max > (1u64 << page_bits) {
        return Err(err("paged fixed-array chunk index (more than 2^page_bits chunks) is not supported"));
    }
    let mut c = f.from(block, "fixed array data block")?;
    if c.bytes(4)? != b"FADB" {
        return Err(err(format!("fixed array data block at {block} lacks its FADB signature")));
    }
    c.skip(2)?;
    f.offset(&mut c)?;
    let size_bytes = entry.checked_sub(f.so + 4).filter(|&n| n <= 8);
    (0..nchunks)
        .map(|_| {
            let a = f.offset(&mut c)?;
            if filtered {
                let n = size_bytes.ok_or_else(|| err(format!("fixed array entry size {entry}")))?;
                let size = c.uint(n)?;
                Ok((a, Some(size), c.u32()?))
            } else {
                Ok((a, None, 0))
            }
        })
        .collect()
}
