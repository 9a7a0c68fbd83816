//! Deterministic random numbers without pulling a RNG crate into the wasm build: the same seed
//! gives the same shuffles and augmentations natively and in every browser.

#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1), from the top 53 bits.
    pub fn signed_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    pub fn shuffle(&mut self, items: &mut [usize]) {
        for i in (1..items.len()).rev() {
            items.swap(i, (self.next_u64() % (i as u64 + 1)) as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffling_is_a_permutation_and_differs_between_epochs() {
        let mut rng = SplitMix64(1);
        let mut order: Vec<usize> = (0..100).collect();
        rng.shuffle(&mut order);
        let first = order.clone();
        rng.shuffle(&mut order);
        assert_ne!(first, order);
        order.sort_unstable();
        assert_eq!(order, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn signed_units_cover_the_interval() {
        let mut rng = SplitMix64(9);
        let values: Vec<f64> = (0..10_000).map(|_| rng.signed_unit()).collect();
        assert!(values.iter().all(|v| (-1.0..1.0).contains(v)));
        let (low, high) = values
            .iter()
            .fold((1.0f64, -1.0f64), |(l, h), &v| (l.min(v), h.max(v)));
        println!("signed_unit range over 10,000 draws: {low:.4} .. {high:.4}");
        assert!(low < -0.99 && high > 0.99);
    }
}
