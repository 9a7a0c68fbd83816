//! Light data augmentation, applied to each training batch on the CPU before it goes to the
//! device (so WebGPU and the CPU train on the same images): a random shift and rotation per
//! image, resampled bilinearly, zeros outside the frame.

use crate::model::IMAGE_SIDE;
use crate::rng::SplitMix64;
use crate::schedule::{cos_pi, sin_pi};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augmentation {
    /// Largest shift, in pixels, along each axis.
    pub shift: f64,
    /// Largest rotation, in degrees, either way.
    pub rotation: f64,
}

impl Augmentation {
    pub fn is_off(&self) -> bool {
        self.shift == 0.0 && self.rotation == 0.0
    }

    /// Moves each 28x28 image of `pixels` by its own random shift and rotation.
    pub fn apply(&self, pixels: &mut [f32], rng: &mut SplitMix64) {
        if self.is_off() {
            return;
        }
        let mut source = [0.0f32; IMAGE_SIDE * IMAGE_SIDE];
        for image in pixels.chunks_exact_mut(IMAGE_SIDE * IMAGE_SIDE) {
            source.copy_from_slice(image);
            let (angle, shift) = self.draw(rng);
            transform(&source, image, (cos_pi(angle), sin_pi(angle)), shift);
        }
    }

    /// Draws what `apply` would draw for `images` images, without moving any.
    pub fn skip(&self, images: usize, rng: &mut SplitMix64) {
        if self.is_off() {
            return;
        }
        for _ in 0..images {
            self.draw(rng);
        }
    }

    /// One image's rotation (in units of pi) and shift (pixels).
    fn draw(&self, rng: &mut SplitMix64) -> (f64, (f64, f64)) {
        let angle = self.rotation * rng.signed_unit() / 180.0;
        let dx = self.shift * rng.signed_unit();
        let dy = self.shift * rng.signed_unit();
        (angle, (dx, dy))
    }
}

/// `out` is `source` rotated by the angle whose cosine and sine are `rotation`, about the
/// centre, then shifted by `shift`: each output pixel reads the source where the inverse
/// transform lands.
fn transform(source: &[f32], out: &mut [f32], rotation: (f64, f64), shift: (f64, f64)) {
    let centre = (IMAGE_SIDE as f64 - 1.0) / 2.0;
    let (cos, sin) = rotation;
    let at = |x: isize, y: isize| -> f32 {
        let inside = (0..IMAGE_SIDE as isize).contains(&x) && (0..IMAGE_SIDE as isize).contains(&y);
        if inside {
            source[y as usize * IMAGE_SIDE + x as usize]
        } else {
            0.0
        }
    };
    for (y, row) in out.chunks_exact_mut(IMAGE_SIDE).enumerate() {
        for (x, value) in row.iter_mut().enumerate() {
            let u = x as f64 - centre - shift.0;
            let v = y as f64 - centre - shift.1;
            let sx = cos * u + sin * v + centre;
            let sy = -sin * u + cos * v + centre;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = ((sx - x0) as f32, (sy - y0) as f32);
            let (x0, y0) = (x0 as isize, y0 as isize);
            let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
            let bottom = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
            *value = top * (1.0 - fy) + bottom * fy;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIDE: usize = IMAGE_SIDE;

    fn dot(x: usize, y: usize) -> Vec<f32> {
        let mut image = vec![0.0; SIDE * SIDE];
        image[y * SIDE + x] = 1.0;
        image
    }

    fn ink_centre(image: &[f32]) -> (f64, f64) {
        let (mut sx, mut sy, mut total) = (0.0, 0.0, 0.0);
        for (i, &v) in image.iter().enumerate() {
            let v = f64::from(v);
            sx += v * (i % SIDE) as f64;
            sy += v * (i / SIDE) as f64;
            total += v;
        }
        (sx / total, sy / total)
    }

    #[test]
    fn a_whole_pixel_shift_moves_the_ink_exactly() {
        let mut out = vec![0.0; SIDE * SIDE];
        transform(&dot(10, 12), &mut out, (1.0, 0.0), (2.0, -1.0));
        assert_eq!(out, dot(12, 11));
    }

    #[test]
    fn a_quarter_turn_moves_a_dot_around_the_centre() {
        // (20, 10) is 6.5 right of and 3.5 above the centre (13.5, 13.5); a quarter turn (y
        // pointing down) puts it 6.5 below and 3.5 right of it.
        let mut out = vec![0.0; SIDE * SIDE];
        transform(&dot(20, 10), &mut out, (0.0, 1.0), (0.0, 0.0));
        let (x, y) = ink_centre(&out);
        println!("rotated dot centre: ({x:.3}, {y:.3})");
        assert!((x - 17.0).abs() < 1e-3 && (y - 20.0).abs() < 1e-3);
    }

    #[test]
    fn augmentation_keeps_ink_within_its_bounds_and_is_reproducible() {
        let augment = Augmentation {
            shift: 2.0,
            rotation: 10.0,
        };
        let original: Vec<f32> = (0..4).flat_map(|_| dot(14, 14)).collect();
        let run = |seed| {
            let mut pixels = original.clone();
            augment.apply(&mut pixels, &mut SplitMix64(seed));
            pixels
        };
        let a = run(5);
        assert_eq!(a, run(5));
        assert_ne!(a, run(6));
        for image in a.chunks_exact(SIDE * SIDE) {
            let (x, y) = ink_centre(image);
            // A dot half a pixel from the centre moves by the shift plus at most
            // 0.5 * sin(10 degrees) from the rotation.
            assert!(
                (x - 14.0).abs() <= 2.1 && (y - 14.0).abs() <= 2.1,
                "({x}, {y})"
            );
            // Bilinear resampling of a rotated grid keeps the ink only roughly.
            let total: f32 = image.iter().sum();
            println!("ink after augmentation: {total}");
            assert!((total - 1.0).abs() < 0.15, "ink is kept: {total}");
        }
    }
}
