//! DEFLATE decompression (RFC 1951) and its zlib wrapper (RFC 1950), for zip
//! members and HDF5's deflate filter. Never trusts its input.

use super::{Result, WeightsError};

/// Decompress a raw DEFLATE stream; `limit` bounds the output size.
pub fn inflate(_data: &[u8], _limit: usize) -> Result<Vec<u8>> {
    Err(WeightsError::Header("DEFLATE decompression is not implemented yet".into()))
}

/// Decompress a zlib stream (2-byte header, DEFLATE data, Adler-32).
pub fn zlib(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    if data.len() < 6 {
        return Err(WeightsError::Header("zlib stream shorter than its header and checksum".into()));
    }
    inflate(&data[2..], limit)
}
