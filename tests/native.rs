//! Native end-to-end checks on the real data set: a short training run must clear an accuracy
//! floor, early stopping and resuming behave, and the CLI prints the report's table.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;
use std::process::Command;

use mnist7k::backend::ComputeDevice;
use mnist7k::data::{load_dir, Mnist};
use mnist7k::evaluation::metrics;
use mnist7k::training::{Checkpoint, Event, TrainConfig, Trainer};

fn data() -> (Mnist, Mnist) {
    load_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("data").as_path())
        .expect("run scripts/setup.sh first: data/ holds the compressed MNIST files")
}

fn run(trainer: &mut Trainer) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let event = pollster::block_on(trainer.step()).unwrap();
        let done = matches!(event, Event::Done { .. });
        events.push(event);
        if done {
            return events;
        }
    }
}

#[test]
fn two_short_epochs_learn_mnist_and_report_metrics() {
    let (train_file, test) = data();
    let compute = ComputeDevice::cpu();
    let config = TrainConfig {
        epochs: 2,
        limit: Some(6_000),
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(config, &train_file, &compute, None).unwrap();
    let events = run(&mut trainer);
    let epochs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Epoch(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(epochs.len(), 2);
    assert!(epochs[1].val_loss < epochs[0].val_loss, "{epochs:?}");
    let batches = events
        .iter()
        .filter(|e| matches!(e, Event::Batch(_)))
        .count();
    assert_eq!(batches, 2 * 6_000usize.div_ceil(128));

    let checkpoint = trainer.checkpoint().unwrap().clone();
    let model = checkpoint.best_weights.to_model(&compute.device).unwrap();
    let mut heard = Vec::new();
    let report = pollster::block_on(metrics(
        &model,
        &train_file.slice(0, 5_000),
        &test,
        &compute.device,
        checkpoint.history.clone(),
        &mut |done, total| heard.push((done, total)),
    ))
    .unwrap();
    // Progress rises chunk by chunk to every image of both sets.
    assert!(heard.windows(2).all(|w| w[0].0 < w[1].0), "{heard:?}");
    assert_eq!(heard.last(), Some(&(15_000, 15_000)));
    assert!(
        report.test_accuracy > 0.85,
        "6,000 images x 2 epochs: {}",
        report.test_accuracy
    );
    assert_eq!(report.test_report.weighted_avg.support, 10_000);
    assert_eq!(report.test_confusion.total(), 10_000);
    assert_eq!(
        report.misclassified.len() as u64,
        10_000 - report.test_confusion.correct()
    );

    // Resuming from the checkpoint (as after a WebGPU failure) continues the epoch count.
    let config = TrainConfig {
        epochs: 3,
        limit: Some(6_000),
        ..TrainConfig::default()
    };
    let mut resumed = Trainer::new(config, &train_file, &compute, Some(checkpoint)).unwrap();
    let events = run(&mut resumed);
    let last = resumed.checkpoint().unwrap();
    assert_eq!(last.history.len(), 3);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Epoch(r) if r.epoch == 3)));
}

#[test]
fn early_stopping_ends_a_run_whose_validation_loss_stalls() {
    let (train_file, _) = data();
    // 256 training images overfit quickly and a tenfold learning rate makes the validation loss
    // bounce; patience 0 stops at the first epoch that fails to improve, well before 40 epochs.
    let config = TrainConfig {
        epochs: 40,
        limit: Some(256),
        learning_rate: 0.01,
        patience: 0,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(config, &train_file, &ComputeDevice::cpu(), None).unwrap();
    let events = run(&mut trainer);
    assert!(matches!(
        events.last(),
        Some(Event::Done {
            early_stopped: true
        })
    ));
    let checkpoint: &Checkpoint = trainer.checkpoint().unwrap();
    assert!(checkpoint.history.len() < 40);
    let best = checkpoint
        .history
        .iter()
        .map(|r| r.val_loss)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(checkpoint.best_val_loss, best);
    assert_eq!(
        checkpoint.history.last().unwrap().epoch,
        checkpoint.best_epoch + 1
    );
}

#[test]
fn cli_summary_prints_each_layer_and_the_total() {
    let output = Command::new(env!("CARGO_BIN_EXE_mnist7k"))
        .arg("summary")
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    for count in ["80", "584", "1168", "2320", "2570", "Total params: 6722"] {
        assert!(text.contains(count), "{count} missing from:\n{text}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_mnist7k"))
        .args(["train", "--data", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("missing"));
    for (args, message) in [
        (&["bench", "--bogus", "1"][..], "unknown option --bogus"),
        (&["train", "--epochs"][..], "--epochs needs a value"),
        (&["train", "--lr", "fast"][..], "--lr expects a number"),
    ] {
        let wrong = Command::new(env!("CARGO_BIN_EXE_mnist7k"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(wrong.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&wrong.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
