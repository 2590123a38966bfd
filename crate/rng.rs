//! The project's one random generator (xoshiro256**, seeded through
//! splitmix64) and normal draws by Box–Muller. Plain integer arithmetic, so
//! the same seed gives the same numbers natively and in wasm.

#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
    spare: Option<f64>,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng { s: [next(), next(), next(), next()], spare: None }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some(r * t.sin());
        r * t.cos()
    }

    /// The whole state as five words (the spare normal draw as its bits,
    /// or all ones when there is none): what a checkpoint stores.
    pub fn state(&self) -> [u64; 5] {
        let [a, b, c, d] = self.s;
        [a, b, c, d, self.spare.map_or(u64::MAX, f64::to_bits)]
    }

    /// A generator that continues exactly where [`Rng::state`] was taken.
    pub fn from_state(state: [u64; 5]) -> Rng {
        let [a, b, c, d, spare] = state;
        Rng { s: [a, b, c, d], spare: (spare != u64::MAX).then(|| f64::from_bits(spare)) }
    }

    /// `n` values from normal(0, sd) as f32.
    pub fn normal_vec(&mut self, n: usize, sd: f64) -> Vec<f32> {
        (0..n).map(|_| (self.normal() * sd) as f32).collect()
    }

    /// `n` values uniform in [lo, hi) as f32.
    pub fn uniform_vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..n).map(|_| (lo + (hi - lo) * self.uniform()) as f32).collect()
    }
}
