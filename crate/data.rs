//! MNIST from IDX files (raw or gzip-compressed): validation with typed errors, splits, batches.

use std::io::Read;

use crate::model::{CLASSES, IMAGE_SIDE, PIXELS};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Everything that can be wrong with a data file, named so a person can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("{file} is missing or empty")]
    Missing { file: String },
    #[error("{file} is truncated: it should hold {expected} bytes but has {actual}")]
    Truncated {
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "{file} is not an MNIST {kind} file: magic number 0x{found:08x}, expected 0x{expected:08x}"
    )]
    WrongMagic {
        file: String,
        kind: &'static str,
        found: u32,
        expected: u32,
    },
    #[error("{file} holds {rows}x{cols} images; this network needs 28x28")]
    WrongDimensions { file: String, rows: u32, cols: u32 },
    #[error("{images_file} has {images} images but {labels_file} has {labels} labels")]
    CountMismatch {
        images_file: String,
        images: usize,
        labels_file: String,
        labels: usize,
    },
    #[error("{file}: label {label} of image {index} is not a digit 0-9")]
    BadLabel {
        file: String,
        index: usize,
        label: u8,
    },
    #[error("{file} could not be decompressed: {reason}")]
    Corrupt { file: String, reason: String },
    #[error("the MNIST data is not loaded yet")]
    NotLoaded,
}

/// A named file's bytes, as fetched or read from disk.
#[derive(Debug, Clone, Copy)]
pub struct NamedBytes<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// Images (row-major bytes, 784 per image) with their labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mnist {
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

/// Decompresses gzip data and passes anything else through unchanged.
pub fn decompress(file: NamedBytes) -> Result<Vec<u8>, DataError> {
    if !file.bytes.starts_with(&GZIP_MAGIC) {
        return Ok(file.bytes.to_vec());
    }
    let mut out = Vec::with_capacity(file.bytes.len() * 5);
    flate2::read::GzDecoder::new(file.bytes)
        .read_to_end(&mut out)
        .map_err(|e| DataError::Corrupt {
            file: file.name.to_string(),
            reason: e.to_string(),
        })?;
    Ok(out)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks the header and returns the payload after it, exactly as long as the header says.
fn payload<'a>(
    file: NamedBytes<'a>,
    kind: &'static str,
    magic: u32,
    header_len: usize,
    item_len: impl Fn(&[u8]) -> Result<usize, DataError>,
) -> Result<(usize, &'a [u8]), DataError> {
    let bytes = file.bytes;
    let name = || file.name.to_string();
    if bytes.is_empty() {
        return Err(DataError::Missing { file: name() });
    }
    // The magic number first: a swapped or foreign file should be called that, not "truncated".
    let found = (bytes.len() >= 4).then(|| read_u32(bytes, 0));
    if let Some(found) = found.filter(|&found| found != magic) {
        return Err(DataError::WrongMagic {
            file: name(),
            kind,
            found,
            expected: magic,
        });
    }
    if bytes.len() < header_len {
        return Err(DataError::Truncated {
            file: name(),
            expected: header_len as u64,
            actual: bytes.len() as u64,
        });
    }
    // In u64: a hostile count times 784 overflows a 32-bit usize (wasm32).
    let count = u64::from(read_u32(bytes, 4));
    let expected = header_len as u64 + count * item_len(bytes)? as u64;
    if (bytes.len() as u64) < expected {
        return Err(DataError::Truncated {
            file: name(),
            expected,
            actual: bytes.len() as u64,
        });
    }
    // Both fit in usize now: `expected` is at most the slice's length.
    Ok((count as usize, &bytes[header_len..expected as usize]))
}

fn parse_images(file: NamedBytes<'_>) -> Result<(usize, &[u8]), DataError> {
    payload(file, "images", IMAGES_MAGIC, 16, |bytes| {
        let (rows, cols) = (read_u32(bytes, 8), read_u32(bytes, 12));
        if (rows as usize, cols as usize) != (IMAGE_SIDE, IMAGE_SIDE) {
            return Err(DataError::WrongDimensions {
                file: file.name.to_string(),
                rows,
                cols,
            });
        }
        Ok(PIXELS)
    })
}

fn parse_labels(file: NamedBytes<'_>) -> Result<&[u8], DataError> {
    let (_, labels) = payload(file, "labels", LABELS_MAGIC, 8, |_| Ok(1))?;
    match labels.iter().position(|&l| l as usize >= CLASSES) {
        Some(index) => Err(DataError::BadLabel {
            file: file.name.to_string(),
            index,
            label: labels[index],
        }),
        None => Ok(labels),
    }
}

impl Mnist {
    /// Parses an images file and a labels file (each raw or gzip) and checks they agree.
    pub fn from_idx(images: NamedBytes, labels: NamedBytes) -> Result<Self, DataError> {
        let images_raw = decompress(images)?;
        let labels_raw = decompress(labels)?;
        let (count, pixels) = parse_images(NamedBytes {
            name: images.name,
            bytes: &images_raw,
        })?;
        let label_bytes = parse_labels(NamedBytes {
            name: labels.name,
            bytes: &labels_raw,
        })?;
        if count != label_bytes.len() {
            return Err(DataError::CountMismatch {
                images_file: images.name.to_string(),
                images: count,
                labels_file: labels.name.to_string(),
                labels: label_bytes.len(),
            });
        }
        Ok(Self {
            pixels: pixels.to_vec(),
            labels: label_bytes.to_vec(),
        })
    }

    /// Builds a set from raw parts; `pixels` holds 784 bytes per label.
    pub fn from_parts(pixels: Vec<u8>, labels: Vec<u8>) -> Self {
        assert_eq!(pixels.len(), labels.len() * PIXELS, "784 pixels per label");
        Self { pixels, labels }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    pub fn image(&self, index: usize) -> &[u8] {
        &self.pixels[index * PIXELS..(index + 1) * PIXELS]
    }

    /// How many images of each digit: the report checked the classes are balanced.
    pub fn class_counts(&self) -> [usize; CLASSES] {
        let mut counts = [0; CLASSES];
        for &label in &self.labels {
            counts[label as usize] += 1;
        }
        counts
    }

    /// Images `start..end` as a new set.
    pub fn slice(&self, start: usize, end: usize) -> Self {
        Self {
            pixels: self.pixels[start * PIXELS..end * PIXELS].to_vec(),
            labels: self.labels[start..end].to_vec(),
        }
    }

    /// Keras' `validation_split`: the LAST `fraction` of the images are held out, unshuffled.
    pub fn split_last(&self, fraction: f64) -> (Self, Self) {
        let held_out = (self.len() as f64 * fraction).round() as usize;
        let cut = self.len() - held_out.min(self.len());
        (self.slice(0, cut), self.slice(cut, self.len()))
    }

    /// Pixels of the chosen images scaled to [0, 1], flattened `[indices.len() * 784]`.
    pub fn batch_pixels(&self, indices: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(indices.len() * PIXELS);
        for &i in indices {
            out.extend(self.image(i).iter().map(|&p| f32::from(p) / 255.0));
        }
        out
    }

    pub fn batch_labels(&self, indices: &[usize]) -> Vec<i64> {
        indices.iter().map(|&i| i64::from(self.labels[i])).collect()
    }
}

/// File names the app and the CLI look for (each may also carry a `.gz` suffix).
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
/// The four files in the order the session loads them (the page fetches this list).
pub const DATA_FILES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// Reads the four MNIST files from a directory (raw or `.gz`), for the native CLI and tests.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_dir(dir: &std::path::Path) -> Result<(Mnist, Mnist), DataError> {
    Ok((
        load_training_file(dir)?,
        load_set(dir, TEST_IMAGES, TEST_LABELS)?,
    ))
}

/// Reads only the training file's two files, so that work meant for the validation split
/// (`mnist7k train --no-test`) cannot touch the test set, even by accident.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_training_file(dir: &std::path::Path) -> Result<Mnist, DataError> {
    load_set(dir, TRAIN_IMAGES, TRAIN_LABELS)
}

#[cfg(not(target_arch = "wasm32"))]
fn load_set(dir: &std::path::Path, images: &str, labels: &str) -> Result<Mnist, DataError> {
    let read = |name: &str| -> Result<(String, Vec<u8>), DataError> {
        for candidate in [name.to_string(), format!("{name}.gz")] {
            let path = dir.join(&candidate);
            if let Ok(bytes) = std::fs::read(&path) {
                return Ok((path.display().to_string(), bytes));
            }
        }
        Err(DataError::Missing {
            file: dir.join(name).display().to_string(),
        })
    };
    let (images_name, images) = read(images)?;
    let (labels_name, labels) = read(labels)?;
    Mnist::from_idx(
        NamedBytes {
            name: &images_name,
            bytes: &images,
        },
        NamedBytes {
            name: &labels_name,
            bytes: &labels,
        },
    )
}

#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub fn idx_images(count: u32, rows: u32, cols: u32, fill: u8) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [IMAGES_MAGIC, count, rows, cols] {
            bytes.extend(word.to_be_bytes());
        }
        bytes.extend(std::iter::repeat_n(fill, (count * rows * cols) as usize));
        bytes
    }

    pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend(LABELS_MAGIC.to_be_bytes());
        bytes.extend((labels.len() as u32).to_be_bytes());
        bytes.extend(labels);
        bytes
    }

    fn named<'a>(name: &'static str, bytes: &'a [u8]) -> NamedBytes<'a> {
        NamedBytes { name, bytes }
    }

    fn parse(images: &[u8], labels: &[u8]) -> Result<Mnist, DataError> {
        Mnist::from_idx(named("img", images), named("lbl", labels))
    }

    #[test]
    fn reads_good_files_and_scales_pixels() {
        let set = parse(&idx_images(3, 28, 28, 255), &idx_labels(&[7, 0, 7])).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set.class_counts()[7], 2);
        let batch = set.batch_pixels(&[2, 0]);
        assert_eq!(batch.len(), 2 * PIXELS);
        assert!(batch.iter().all(|&p| p == 1.0));
        assert_eq!(set.batch_labels(&[0, 1]), vec![7, 0]);
    }

    #[test]
    fn reads_gzip_compressed_files() {
        let raw = idx_images(2, 28, 28, 3);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&raw).unwrap();
        let gz = encoder.finish().unwrap();
        let set = parse(&gz, &idx_labels(&[1, 2])).unwrap();
        assert_eq!(set.image(1)[0], 3);
    }

    #[test]
    fn rejects_truncated_files() {
        let mut images = idx_images(2, 28, 28, 0);
        images.truncate(100);
        assert_eq!(
            parse(&images, &idx_labels(&[1, 2])),
            Err(DataError::Truncated {
                file: "img".into(),
                expected: 16 + 2 * PIXELS as u64,
                actual: 100
            })
        );
        // A header claiming 2^32-1 images: 3.4 TB, past a 32-bit usize; an error, not a panic.
        let mut huge = idx_images(1, 28, 28, 0);
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            parse(&huge, &idx_labels(&[1])),
            Err(DataError::Truncated {
                file: "img".into(),
                expected: 16 + u64::from(u32::MAX) * PIXELS as u64,
                actual: 16 + PIXELS as u64
            })
        );
        assert!(matches!(
            parse(&idx_images(1, 28, 28, 0), &[0, 0, 8]),
            Err(DataError::Truncated { .. })
        ));
    }

    #[test]
    fn rejects_wrong_magic_for_swapped_files() {
        let err = parse(&idx_labels(&[1]), &idx_images(1, 28, 28, 0)).unwrap_err();
        assert!(
            matches!(err, DataError::WrongMagic { found: 0x801, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("not an MNIST images file"));
    }

    #[test]
    fn rejects_mismatched_counts_dimensions_labels_and_empty_files() {
        assert!(matches!(
            parse(&idx_images(3, 28, 28, 0), &idx_labels(&[1, 2])),
            Err(DataError::CountMismatch {
                images: 3,
                labels: 2,
                ..
            })
        ));
        assert!(matches!(
            parse(&idx_images(1, 32, 32, 0), &idx_labels(&[1])),
            Err(DataError::WrongDimensions { rows: 32, .. })
        ));
        assert!(matches!(
            parse(&idx_images(1, 28, 28, 0), &idx_labels(&[10])),
            Err(DataError::BadLabel { label: 10, .. })
        ));
        assert!(matches!(
            parse(&[], &idx_labels(&[1])),
            Err(DataError::Missing { .. })
        ));
        assert!(matches!(
            parse(&[0x1f, 0x8b, 1, 2, 3], &idx_labels(&[1])),
            Err(DataError::Corrupt { .. })
        ));
    }

    #[test]
    fn holds_out_the_last_fifth_like_keras() {
        let labels: Vec<u8> = (0..10).collect();
        let set = parse(&idx_images(10, 28, 28, 0), &idx_labels(&labels)).unwrap();
        let (train, validation) = set.split_last(0.2);
        assert_eq!(train.labels(), &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(validation.labels(), &[8, 9]);
    }
}
