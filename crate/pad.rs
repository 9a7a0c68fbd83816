//! MNIST-style preprocessing of a drawing: the ink's bounding box is scaled to fit 20x20 keeping
//! its aspect ratio (area-averaged, hence antialiased), then placed in 28x28 so that its centre of
//! mass sits at the centre, as LeCun et al. prepared the original digits.

use crate::model::{IMAGE_SIDE, PIXELS};

const FIT: usize = 20;
/// Ink below this (of 1.0) is treated as background when finding the bounding box.
const INK: f32 = 0.05;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PadError {
    #[error("the drawing has {actual} pixels but its size {width}x{height} needs {expected}")]
    WrongSize {
        width: usize,
        height: usize,
        expected: usize,
        actual: usize,
    },
}

struct Canvas<'a> {
    ink: &'a [f32],
    width: usize,
}

impl Canvas<'_> {
    fn at(&self, x: usize, y: usize) -> f32 {
        self.ink[y * self.width + x]
    }

    /// Smallest rectangle `(x0, y0, x1, y1)` (exclusive ends) holding all ink, if any.
    fn bounding_box(&self) -> Option<(usize, usize, usize, usize)> {
        let height = self.ink.len() / self.width;
        let mut bbox: Option<(usize, usize, usize, usize)> = None;
        for y in 0..height {
            for x in 0..self.width {
                if self.at(x, y) > INK {
                    let (x0, y0, x1, y1) = bbox.unwrap_or((x, y, x + 1, y + 1));
                    bbox = Some((x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1)));
                }
            }
        }
        bbox
    }

    /// Mean ink over the source rectangle `[x0, x1) x [y0, y1)` in fractional pixels.
    fn area_mean(&self, x0: f32, x1: f32, y0: f32, y1: f32) -> f32 {
        let mut sum = 0.0;
        for y in y0.floor() as usize..y1.ceil() as usize {
            let wy = (y1.min(y as f32 + 1.0) - y0.max(y as f32)).max(0.0);
            for x in x0.floor() as usize..x1.ceil() as usize {
                let wx = (x1.min(x as f32 + 1.0) - x0.max(x as f32)).max(0.0);
                sum += wx * wy * self.at(x, y);
            }
        }
        sum / ((x1 - x0) * (y1 - y0))
    }
}

/// Turns a drawing (`width * height` ink values in [0, 1], row-major) into the 784 pixels the
/// network reads. `Ok(None)` when nothing has been drawn.
pub fn preprocess(ink: &[f32], width: usize, height: usize) -> Result<Option<Vec<f32>>, PadError> {
    if width == 0 || ink.len() != width * height {
        return Err(PadError::WrongSize {
            width,
            height,
            expected: width * height,
            actual: ink.len(),
        });
    }
    let canvas = Canvas { ink, width };
    let Some((x0, y0, x1, y1)) = canvas.bounding_box() else {
        return Ok(None);
    };
    let (box_w, box_h) = ((x1 - x0) as f32, (y1 - y0) as f32);
    let scale = FIT as f32 / box_w.max(box_h);
    let out_w = ((box_w * scale).round() as usize).clamp(1, FIT);
    let out_h = ((box_h * scale).round() as usize).clamp(1, FIT);
    let (step_x, step_y) = (box_w / out_w as f32, box_h / out_h as f32);

    let mut small = vec![0.0f32; out_w * out_h];
    for (oy, row) in small.chunks_mut(out_w).enumerate() {
        let sy = y0 as f32 + oy as f32 * step_y;
        for (ox, value) in row.iter_mut().enumerate() {
            let sx = x0 as f32 + ox as f32 * step_x;
            *value = canvas.area_mean(sx, sx + step_x, sy, sy + step_y).min(1.0);
        }
    }
    Ok(Some(centre_by_mass(&small, out_w)))
}

/// Places a small image in 28x28 with its centre of mass at (14, 14), clipping what falls off.
fn centre_by_mass(small: &[f32], width: usize) -> Vec<f32> {
    let (mut mass, mut mx, mut my) = (0.0f32, 0.0f32, 0.0f32);
    for (i, &v) in small.iter().enumerate() {
        mass += v;
        mx += v * ((i % width) as f32 + 0.5);
        my += v * ((i / width) as f32 + 0.5);
    }
    let centre = IMAGE_SIDE as f32 / 2.0;
    let shift_x = (centre - mx / mass).round() as isize;
    let shift_y = (centre - my / mass).round() as isize;
    let mut out = vec![0.0f32; PIXELS];
    for (i, &v) in small.iter().enumerate() {
        let x = (i % width) as isize + shift_x;
        let y = (i / width) as isize + shift_y;
        if (0..IMAGE_SIDE as isize).contains(&x) && (0..IMAGE_SIDE as isize).contains(&y) {
            out[y as usize * IMAGE_SIDE + x as usize] = v;
        }
    }
    out
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn blank(side: usize) -> Vec<f32> {
        vec![0.0; side * side]
    }

    fn stroke(
        ink: &mut [f32],
        side: usize,
        xs: std::ops::Range<usize>,
        ys: std::ops::Range<usize>,
    ) {
        for y in ys {
            for x in xs.clone() {
                ink[y * side + x] = 1.0;
            }
        }
    }

    fn centre_of_mass(image: &[f32]) -> (f32, f32) {
        let (mut m, mut x, mut y) = (0.0, 0.0, 0.0);
        for (i, &v) in image.iter().enumerate() {
            m += v;
            x += v * ((i % IMAGE_SIDE) as f32 + 0.5);
            y += v * ((i / IMAGE_SIDE) as f32 + 0.5);
        }
        (x / m, y / m)
    }

    fn ink_box(image: &[f32]) -> (usize, usize) {
        let canvas = Canvas {
            ink: image,
            width: IMAGE_SIDE,
        };
        let (x0, y0, x1, y1) = canvas.bounding_box().unwrap();
        (x1 - x0, y1 - y0)
    }

    #[test]
    fn a_tall_stroke_in_a_corner_is_scaled_to_20_high_and_centred() {
        let side = 280;
        let mut ink = blank(side);
        stroke(&mut ink, side, 10..50, 20..220);
        let out = preprocess(&ink, side, side).unwrap().unwrap();
        let (w, h) = ink_box(&out);
        assert_eq!(h, 20);
        assert_eq!(w, 4, "aspect ratio 40:200 kept");
        let (cx, cy) = centre_of_mass(&out);
        assert!(
            (cx - 14.0).abs() <= 0.5 && (cy - 14.0).abs() <= 0.5,
            "{cx} {cy}"
        );
        assert!(out.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }

    #[test]
    fn downscaling_antialiases_partial_pixels() {
        let side = 100;
        let mut ink = blank(side);
        // A disk 91 pixels wide: scaled by 20/91 its rim falls across output pixels.
        for y in 0..side {
            for x in 0..side {
                let (dx, dy) = (x as f32 - 50.0, y as f32 - 50.0);
                if dx * dx + dy * dy <= 45.0 * 45.0 {
                    ink[y * side + x] = 1.0;
                }
            }
        }
        let out = preprocess(&ink, side, side).unwrap().unwrap();
        let grey = out.iter().filter(|&&v| v > 0.0 && v < 1.0).count();
        assert!(grey > 0, "edges are grey, not thresholded");
        let (w, h) = ink_box(&out);
        assert!((18..=20).contains(&w) && (18..=20).contains(&h), "{w}x{h}");
    }

    #[test]
    fn centre_of_mass_not_box_centre_decides_placement() {
        let side = 200;
        let mut ink = blank(side);
        // An L: heavy vertical bar on the left, thin foot to the right.
        stroke(&mut ink, side, 20..60, 0..200);
        stroke(&mut ink, side, 60..200, 190..200);
        let out = preprocess(&ink, side, side).unwrap().unwrap();
        let (cx, cy) = centre_of_mass(&out);
        assert!((cx - 14.0).abs() <= 0.5 && (cy - 14.0).abs() <= 0.5);
        // The box is 20 wide but is not at columns 4..24 since the mass sits left.
        let first_col = (0..IMAGE_SIDE)
            .find(|&x| out[10 * IMAGE_SIDE + x] > 0.0)
            .unwrap();
        assert!(first_col > 4, "shifted right by mass: {first_col}");
    }

    #[test]
    fn empty_and_wrong_sized_drawings() {
        assert_eq!(preprocess(&blank(10), 10, 10), Ok(None));
        assert!(matches!(
            preprocess(&[0.0; 99], 10, 10),
            Err(PadError::WrongSize { expected: 100, .. })
        ));
    }
}
