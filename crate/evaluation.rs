//! Running a trained network over a whole data set: mean loss and every prediction, read back in
//! one asynchronous transfer per chunk so the same code works on WebGPU.

use std::future::Future;

use burn::prelude::*;
use burn::tensor::Transaction;
use serde::{Deserialize, Serialize};

use crate::data::Mnist;
use crate::error::Error;
use crate::history::EpochRecord;
use crate::loss::Loss;
use crate::metrics::{ClassificationReport, ConfusionMatrix};
use crate::model::{Cnn, PIXELS};

/// Images per forward pass when evaluating (no gradients, so larger than a training batch).
pub const CHUNK: usize = 1_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub predictions: Vec<u8>,
}

impl Evaluation {
    pub fn accuracy(&self, truth: &[u8]) -> f64 {
        let hits = truth
            .iter()
            .zip(&self.predictions)
            .filter(|(t, p)| t == p)
            .count();
        hits as f64 / truth.len().max(1) as f64
    }
}

/// The images of `data` at `indices`, as they are, on `device`: `[indices.len(), 784]`.
pub fn images(data: &Mnist, indices: &[usize], device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(data.batch_pixels(indices), [indices.len(), PIXELS]),
        device,
    )
}

/// Mean `loss` and predicted classes of `model` (an inference model) over `data`;
/// `progress` hears how many images are done after each chunk and is awaited, so that a browser
/// worker can answer its messages (drawing predictions) between chunks.
pub async fn evaluate<F: Future<Output = ()>>(
    model: &Cnn,
    data: &Mnist,
    device: &Device,
    loss: Loss,
    mut progress: impl FnMut(usize) -> F,
) -> Result<Evaluation, Error> {
    let output = model.network().output;
    let mut loss_sum = 0.0f64;
    let mut predictions = Vec::with_capacity(data.len());
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(CHUNK) {
        let images = images(data, chunk, device);
        let targets = Tensor::<1, Int>::from_data(
            TensorData::new(data.batch_labels(chunk), [chunk.len()]),
            device,
        );
        let logits = model.forward(images);
        let mean = loss.mean(output, logits.clone(), targets);
        let predicted = logits.argmax(1).flatten::<1>(0, 1);
        let [mean, predicted] = read_pair(mean, predicted).await?;
        loss_sum +=
            f64::from(mean.try_to_vec_as::<f32>().map_err(Error::read)?[0]) * chunk.len() as f64;
        predictions.extend(
            predicted
                .try_to_vec_as::<i64>()
                .map_err(Error::read)?
                .into_iter()
                .map(|p| p as u8),
        );
        progress(predictions.len()).await;
    }
    Ok(Evaluation {
        loss: loss_sum / data.len().max(1) as f64,
        predictions,
    })
}

async fn read_pair(a: Tensor<1>, b: Tensor<1, Int>) -> Result<[TensorData; 2], Error> {
    let data = Transaction::default()
        .register(a)
        .register(b)
        .execute_async()
        .await
        .map_err(Error::read)?;
    data.try_into()
        .map_err(|_| Error::Device("a transaction returned the wrong number of tensors".into()))
}

/// A test image the network got wrong, for the gallery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Misclassified {
    pub index: usize,
    pub truth: u8,
    pub predicted: u8,
}

/// Everything the page and the CLI report about a trained network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub history: Vec<EpochRecord>,
    pub test_loss: f64,
    pub test_accuracy: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub train_report: ClassificationReport,
    pub test_report: ClassificationReport,
    pub test_confusion: ConfusionMatrix,
    pub misclassified: Vec<Misclassified>,
}

/// Evaluates `model` on the whole training file (the report's support: 60,000) and the test set,
/// with the loss it was trained with.
/// That is 70,000 forward passes, seconds to minutes in a browser: `progress` hears
/// (images done, images in all) after each chunk and is awaited, as in [`evaluate`].
pub async fn metrics<F: Future<Output = ()>>(
    model: &Cnn,
    train_file: &Mnist,
    test: &Mnist,
    device: &Device,
    loss: Loss,
    history: Vec<EpochRecord>,
    mut progress: impl FnMut(usize, usize) -> F,
) -> Result<Metrics, Error> {
    let total = train_file.len() + test.len();
    let on_train = evaluate(model, train_file, device, loss, |done| {
        progress(done, total)
    })
    .await?;
    let on_test = evaluate(model, test, device, loss, |done| {
        progress(train_file.len() + done, total)
    })
    .await?;
    let train_confusion =
        ConfusionMatrix::from_predictions(train_file.labels(), &on_train.predictions);
    let test_confusion = ConfusionMatrix::from_predictions(test.labels(), &on_test.predictions);
    let misclassified = test
        .labels()
        .iter()
        .zip(&on_test.predictions)
        .enumerate()
        .filter(|(_, (t, p))| t != p)
        .map(|(index, (&truth, &predicted))| Misclassified {
            index,
            truth,
            predicted,
        })
        .collect();
    Ok(Metrics {
        history,
        test_loss: on_test.loss,
        test_accuracy: test_confusion.accuracy(),
        train_loss: on_train.loss,
        train_accuracy: train_confusion.accuracy(),
        train_report: train_confusion.report(),
        test_report: test_confusion.report(),
        test_confusion,
        misclassified,
    })
}
