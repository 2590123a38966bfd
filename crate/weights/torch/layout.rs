//! torch's weight layouts → the project's, cache-friendly: fc6 alone is a
//! 4096 × 25088 matrix, and a naive transposition writes each element a
//! page apart (and, rows being powers of two apart, into the same cache
//! sets). Tiles of [`TILE_ROWS`] source rows × [`TILE_COLS`] source columns:
//! each destination row gets one contiguous run per tile. The reordering of
//! the inputs (fc6's pool5 flattening, the convolution taps) rides along as
//! a map of destination rows, so every weight is copied once.

const TILE_ROWS: usize = 32;
const TILE_COLS: usize = 128;

/// `src` (rows, cols) row-major → `dst` (cols, rows) with source column `c`
/// landing in destination row `row_of[c]` (a permutation of 0..cols).
fn transpose_into_rows(src: &[f32], rows: usize, cols: usize, row_of: &[usize]) -> Vec<f32> {
    assert_eq!(src.len(), rows * cols, "transpose: {rows}×{cols} does not match {} values", src.len());
    assert_eq!(row_of.len(), cols);
    let mut dst = vec![0.0f32; src.len()];
    for c0 in (0..cols).step_by(TILE_COLS) {
        let c1 = (c0 + TILE_COLS).min(cols);
        for r0 in (0..rows).step_by(TILE_ROWS) {
            let r1 = (r0 + TILE_ROWS).min(rows);
            for c in c0..c1 {
                let to = row_of[c] * rows;
                for (k, d) in dst[to + r0..to + r1].iter_mut().enumerate() {
                    *d = src[(r0 + k) * cols + c];
                }
            }
        }
    }
    dst
}

/// `src` (rows, cols) row-major → (cols, rows) row-major.
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let row_of: Vec<usize> = (0..cols).collect();
    transpose_into_rows(src, rows, cols, &row_of)
}

/// Convolution weights (O, I, 3, 3) → (3, 3, I, O): source column ii·9 + t
/// (input ii, tap t) is destination row t·I + ii.
pub fn oihw_to_hwio(src: &[f32], o: usize, i: usize) -> Vec<f32> {
    let row_of: Vec<usize> = (0..i * 9).map(|c| (c % 9) * i + c / 9).collect();
    transpose_into_rows(src, o, i * 9, &row_of)
}

/// fc6 (out, C·49) with inputs in torch's flattening of pool5 (c, y, x) →
/// (49·C, out) with inputs in (y, x, c) order: source column ch·49 + p is
/// destination row p·C + ch.
pub fn fc6_to_nhwc(w: &[f32], outputs: usize, c: usize) -> Vec<f32> {
    let row_of: Vec<usize> = (0..c * 49).map(|k| (k % 49) * c + k / 49).collect();
    transpose_into_rows(w, outputs, c * 49, &row_of)
}
