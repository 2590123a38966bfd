//! DEFLATE (RFC 1951) and zlib (RFC 1950) decompression for HDF5's deflate
//! filter, by `miniz_oxide`, with the limits the readers rely on: the
//! output never grows past `limit` (the size the file declares), and a
//! truncated or corrupt stream is an error that says which.

use miniz_oxide::inflate::{self, DecompressError, TINFLStatus};

use super::{Result, WeightsError};

fn error(what: &str, limit: usize, e: DecompressError) -> WeightsError {
    let why = match e.status {
        TINFLStatus::HasMoreOutput => format!("inflates to more than the expected {limit} bytes: the file is corrupt"),
        TINFLStatus::FailedCannotMakeProgress | TINFLStatus::NeedsMoreInput => {
            "truncated (the stream ends before its final block does); the file is cut short or corrupt".to_string()
        }
        TINFLStatus::Adler32Mismatch => "Adler-32 checksum mismatch: the data is corrupt".to_string(),
        _ => "corrupt (not valid DEFLATE data)".to_string(),
    };
    WeightsError::Header(format!("{what}: {why}"))
}

/// Decompress a raw DEFLATE stream of at most `limit` bytes of output.
pub fn inflate(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    inflate::decompress_to_vec_with_limit(data, limit).map_err(|e| error("DEFLATE stream", limit, e))
}

/// Decompress a zlib stream (header, DEFLATE data, Adler-32 of the output)
/// of at most `limit` bytes of output.
pub fn zlib(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    inflate::decompress_to_vec_zlib_with_limit(data, limit).map_err(|e| error("zlib stream", limit, e))
}
