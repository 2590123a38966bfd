//! torch's weight layouts → the project's, cache-friendly: fc6 alone is a
//! 25088 × 4096 matrix, and a naive transposition writes each element a
//! page apart. Tiles of [`TILE`] × [`TILE`] keep reads and writes in cache.

const TILE: usize = 32;

/// `src` (rows, cols) row-major → (cols, rows) row-major.
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(src.len(), rows * cols, "transpose: {rows}×{cols} does not match {} values", src.len());
    let mut dst = vec![0.0f32; src.len()];
    for r0 in (0..rows).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows);
        for c0 in (0..cols).step_by(TILE) {
            let c1 = (c0 + TILE).min(cols);
            for r in r0..r1 {
                let row = &src[r * cols + c0..r * cols + c1];
                for (k, &v) in row.iter().enumerate() {
                    dst[(c0 + k) * rows + r] = v;
                }
            }
        }
    }
    dst
}

/// Convolution weights (O, I, 3, 3) → (3, 3, I, O).
pub fn oihw_to_hwio(src: &[f32], o: usize, i: usize) -> Vec<f32> {
    // (O, I·9) → (I·9, O): row ii·9 + t holds the O outputs of tap t, input ii.
    let t = transpose(src, o, i * 9);
    let mut dst = vec![0.0f32; src.len()];
    for ii in 0..i {
        for tap in 0..9 {
            let from = (ii * 9 + tap) * o;
            let to = (tap * i + ii) * o;
            dst[to..to + o].copy_from_slice(&t[from..from + o]);
        }
    }
    dst
}

/// fc6 (out, C·49) with inputs in torch's flattening of pool5 (c, y, x) →
/// (49·C, out) with inputs in (y, x, c) order. `w` is reordered in place
/// (one row of scratch) before the transposition.
pub fn fc6_to_nhwc(mut w: Vec<f32>, outputs: usize, c: usize) -> Vec<f32> {
    let inputs = c * 49;
    assert_eq!(w.len(), outputs * inputs, "fc6: {outputs}×{inputs} does not match {} values", w.len());
    let mut row = vec![0.0f32; inputs];
    for o in 0..outputs {
        let r = &mut w[o * inputs..(o + 1) * inputs];
        row.copy_from_slice(r);
        for ch in 0..c {
            for p in 0..49 {
                r[p * c + ch] = row[ch * 49 + p];
            }
        }
    }
    transpose(&w, outputs, inputs)
}
