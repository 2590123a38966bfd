//! IEEE 754 binary16 <-> binary32, by hand (round to nearest, ties to even).

/// f32 -> f16 bits, rounding to nearest even. Values beyond the half range
/// become ±inf; NaN stays NaN (quiet).
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x007f_ffff;
    if exp == 0xff {
        // inf or NaN
        return sign | 0x7c00 | if man != 0 { 0x0200 | (man >> 13) as u16 } else { 0 };
    }
    let e = exp - 127 + 15; // rebiased exponent
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // subnormal half (or zero): shift the full mantissa (with its implicit 1) right.
        if e < -10 {
            return sign; // rounds to zero (below half the smallest subnormal)
        }
        let m = man | 0x0080_0000;
        let shift = (14 - e) as u32; // 13 + (1 - e)
        let half_m = m >> shift;
        let rem = m & ((1u32 << shift) - 1);
        let halfway = 1u32 << (shift - 1);
        let round_up = rem > halfway || (rem == halfway && (half_m & 1) == 1);
        return sign | (half_m + u32::from(round_up)) as u16;
    }
    let half_m = man >> 13;
    let rem = man & 0x1fff;
    let round_up = rem > 0x1000 || (rem == 0x1000 && (half_m & 1) == 1);
    // A carry out of the mantissa correctly bumps the exponent (up to inf).
    let v = ((e as u32) << 10 | half_m) + u32::from(round_up);
    sign | v as u16
}

/// f16 bits -> f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x03ff) as u32;
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // subnormal: value = man * 2^-24
            let v = man as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}
