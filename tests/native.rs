//! Native checks of the session on the real data set: a short run clears a floor just under its
//! deterministic value, Stop keeps the weights trained so far, the kept weights are the best
//! epoch's, resume starts from the checkpoint's weights, errors carry their kind, and the CLI
//! prints the report's table.
#![cfg(not(target_arch = "wasm32"))]

use std::future::ready;
use std::path::Path;
use std::process::Command;

use mnist7k::config::TrainConfig;
use mnist7k::data::{load_dir, Mnist, TEST_IMAGES, TRAIN_IMAGES, TRAIN_LABELS};
use mnist7k::error::{ErrorKind, Recovery};
use mnist7k::evaluation::evaluate;
use mnist7k::history::{Checkpoint, EpochRecord};
use mnist7k::network::{preset, Network};
use mnist7k::run::{Run, RunState};
use mnist7k::schedule::{Optimizer, Schedule};
use mnist7k::session::{Session, TrainSummary};
use mnist7k::training::{split, Event};
use mnist7k::weights::ModelWeights;

fn data() -> (Mnist, Mnist) {
    load_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("data").as_path())
        .expect("run scripts/setup.sh first: data/ holds the compressed MNIST files")
}

/// burn's random generator (weights' initialisation, dropout) is one per process, and the
/// harness runs tests on several threads: runs whose bits a test compares must not interleave.
/// Every training run here takes this lock.
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive<T>(run: impl std::future::Future<Output = T>) -> T {
    let _only = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    pollster::block_on(run)
}

fn session() -> Session {
    let (train_file, test) = data();
    session_on(train_file, test)
}

fn session_on(train_file: Mnist, test: Mnist) -> Session {
    let session = Session::new();
    session.set_data(train_file, test);
    pollster::block_on(session.use_backend("cpu")).unwrap();
    session
}

/// Trains to the end, collecting every event.
fn train(
    session: &Session,
    config: TrainConfig,
    resume: Option<Checkpoint>,
) -> (TrainSummary, Vec<Event>) {
    let mut events = Vec::new();
    let summary = exclusive(session.train(config, resume, |event| {
        events.push(event.clone());
        ready(true)
    }))
    .unwrap();
    (summary, events)
}

fn short(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        limit: Some(6_000),
        ..TrainConfig::default()
    }
}

/// Largest absolute difference between two sets of weights.
fn distance(a: &ModelWeights, b: &ModelWeights) -> f32 {
    a.tensors
        .iter()
        .zip(&b.tensors)
        .flat_map(|(x, y)| x.values.iter().zip(&y.values).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

#[test]
fn two_short_epochs_learn_mnist_and_report_metrics() {
    let session = session();
    let (summary, events) = train(&session, short(2), None);
    assert_eq!((summary.epochs, summary.stopped), (2, false));
    let epochs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Epoch(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(epochs.len(), 2);
    assert!(epochs[1].val_loss < epochs[0].val_loss, "{epochs:?}");
    // Where each epoch's time went: steps are part of the epoch, validation comes after it.
    for r in &epochs {
        println!(
            "epoch {}: {:.2} s, {:.2} s in steps, validation {:.2} s",
            r.epoch, r.seconds, r.step_seconds, r.validation_seconds
        );
        assert!(0.0 < r.step_seconds && r.step_seconds <= r.seconds, "{r:?}");
        assert!(r.validation_seconds > 0.0, "{r:?}");
    }
    let batches = events
        .iter()
        .filter(|e| matches!(e, Event::Batch(_)))
        .count();
    assert_eq!(batches, 2 * 6_000usize.div_ceil(128));

    let mut heard = Vec::new();
    let report = pollster::block_on(session.metrics(|done, total| {
        heard.push((done, total));
        ready(())
    }))
    .unwrap();
    // Progress rises chunk by chunk to every image of both sets.
    assert!(heard.windows(2).all(|w| w[0].0 < w[1].0), "{heard:?}");
    assert_eq!(heard.last(), Some(&(70_000, 70_000)));
    let accuracy = report.metrics.test_accuracy;
    // A fixed seed: the floor sits just under what this run gives.
    println!("6,000 images x 2 epochs: test accuracy {accuracy:.4}");
    assert!(
        accuracy > FLOOR_TWO_SHORT_EPOCHS,
        "test accuracy {accuracy}"
    );
    assert_eq!(report.weights_from, "epoch 2 (lowest validation loss)");
    assert_eq!(report.metrics.history, epochs);
    assert_eq!(report.metrics.test_report.weighted_avg.support, 10_000);
    assert_eq!(report.metrics.test_confusion.total(), 10_000);
    assert_eq!(
        report.metrics.misclassified.len() as u64,
        10_000 - report.metrics.test_confusion.correct()
    );
}

/// Observed 0.9192 since 2026-12-06 (seed 42), when every op of the report's network came to add
/// in one order on any number of threads and any CPU (0.9110 and 0.9145 before, as burn's
/// reductions ran on rayon); one point under it.
const FLOOR_TWO_SHORT_EPOCHS: f64 = 0.91;

#[test]
fn stop_keeps_the_weights_trained_so_far_and_the_finished_epochs() {
    let session = session();
    let config = short(3);
    let batches_per_epoch = 6_000usize.div_ceil(128);
    let mut seen = 0;
    // Stop half-way through the second epoch.
    let summary = exclusive(session.train(config, None, |event| {
        seen += usize::from(matches!(event, Event::Batch(_)));
        ready(seen < batches_per_epoch + batches_per_epoch / 2)
    }))
    .unwrap();
    assert!(summary.stopped && !summary.early_stopped);
    assert_eq!(summary.epochs, 1);
    let checkpoint = session.checkpoint().expect("the finished epoch is kept");
    assert_eq!(checkpoint.epochs_done(), 1);
    // Metrics and predictions use the weights of the moment Stop was pressed, half an epoch on.
    let stopped = session.weights().unwrap();
    let moved = distance(&stopped, &checkpoint.weights);
    println!("half an epoch after the checkpoint, the weights moved by up to {moved}");
    assert!(
        moved > 1e-3,
        "the stopped weights are the checkpoint's: {moved}"
    );
    let report = pollster::block_on(session.metrics(|_, _| ready(()))).unwrap();
    assert_eq!(
        report.weights_from,
        "the weights when Stop was pressed, after epoch 1"
    );
}

#[test]
fn the_kept_weights_are_the_best_epochs_and_reproduce_its_validation_loss() {
    let (train_file, _) = data();
    let session = session();
    // 256 training images overfit quickly and a tenfold learning rate makes the validation loss
    // bounce, so the best epoch is not the last.
    let config = TrainConfig {
        epochs: 40,
        limit: Some(256),
        learning_rate: 0.01,
        patience: 2,
        ..TrainConfig::default()
    };
    let (summary, _) = train(&session, config.clone(), None);
    assert!(summary.early_stopped, "{summary:?}");
    let checkpoint = session.checkpoint().unwrap();
    let losses: Vec<f64> = checkpoint.history.iter().map(|r| r.val_loss).collect();
    println!("validation losses: {losses:?}");
    assert!(checkpoint.history.len() < 40);
    assert_eq!(checkpoint.history.len(), checkpoint.best_epoch + 2);
    let best = losses.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(checkpoint.best_val_loss, best);
    assert_ne!(checkpoint.best_weights, checkpoint.weights);
    assert_eq!(session.weights(), Some(checkpoint.best_weights.clone()));

    // Evaluating the kept weights on the same validation split gives the recorded loss.
    let (_, validation) = split(&train_file, &config);
    let device = burn::prelude::Device::flex();
    let model = checkpoint.best_weights.to_model(&device).unwrap();
    let again = pollster::block_on(evaluate(&model, &validation, &device, config.loss, |_| {
        ready(())
    }))
    .unwrap();
    println!(
        "best epoch {}: recorded {}, evaluated again {}",
        checkpoint.best_epoch, checkpoint.best_val_loss, again.loss
    );
    // Natively burn's reductions run on rayon, whose splits may change the last bits; any other
    // epoch's weights would be off by far more (neighbouring epochs differ by > 1e-3 here).
    assert!(
        (again.loss - checkpoint.best_val_loss).abs() < 1e-5 * checkpoint.best_val_loss,
        "{} vs {}",
        again.loss,
        checkpoint.best_val_loss
    );
}

#[test]
fn resume_starts_from_the_checkpoints_weights() {
    let first = session();
    let (_, _) = train(&first, short(1), None);
    let checkpoint = first.checkpoint().unwrap();

    // Resume and stop after one batch: one Adam step (lr 1e-3) moves each weight by about 1e-3.
    let resumed = session();
    let summary =
        exclusive(resumed.train(short(3), Some(checkpoint.clone()), |_| ready(false))).unwrap();
    assert!(summary.stopped);
    assert_eq!(summary.epochs, 1, "the checkpoint's epoch counts");
    let after_one_step = resumed.weights().unwrap();
    let from_checkpoint = distance(&after_one_step, &checkpoint.weights);
    println!("one step after resuming, the weights moved by up to {from_checkpoint}");
    assert!(
        from_checkpoint > 0.0 && from_checkpoint < 2e-3,
        "{from_checkpoint}"
    );

    // Resuming to the end continues the epoch count and the history.
    let (summary, events) = train(&resumed, short(3), Some(checkpoint.clone()));
    assert_eq!(summary.epochs, 3);
    let history = resumed.checkpoint().unwrap().history;
    assert_eq!(history[0], checkpoint.history[0]);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Epoch(r) if r.epoch == 3)));
}

/// A run stopped after its first epoch and resumed from its checkpoint (through JSON, as the
/// page stores it) ends exactly where the uninterrupted run ends: the same losses, bit for bit,
/// the same weights. Dropout (the report's network), augmentation and each optimizer's state are
/// all carried over.
#[test]
fn a_resumed_run_continues_the_same_curve_bit_for_bit() {
    let session = session();
    for optimizer in [Optimizer::Adam, Optimizer::Sgd] {
        let config = |epochs| TrainConfig {
            epochs,
            limit: Some(1_200),
            optimizer,
            learning_rate: if optimizer == Optimizer::Sgd {
                0.05
            } else {
                1e-3
            },
            shift: 1.0,
            rotation: 5.0,
            ..TrainConfig::default()
        };
        let (_, _) = train(&session, config(3), None);
        let straight = session.checkpoint().unwrap();

        let (_, _) = train(&session, config(1), None);
        let after_one = session.checkpoint().unwrap();
        assert!(
            after_one.optimizer.is_some(),
            "a CPU checkpoint carries the optimizer"
        );
        let stored: Checkpoint =
            serde_json::from_str(&serde_json::to_string(&after_one).unwrap()).unwrap();
        let (_, _) = train(&session, config(3), Some(stored));
        let resumed = session.checkpoint().unwrap();

        let losses = |c: &Checkpoint| {
            c.history
                .iter()
                .map(|r| (r.train_loss, r.val_loss))
                .collect::<Vec<_>>()
        };
        println!("{optimizer:?}: {:?}", losses(&straight));
        // The epochs trained after the resume repeat exactly. Epoch 1's record came back from
        // the checkpoint's JSON: serde_json without its `float_roundtrip` feature may read a
        // 17-digit value one unit in the last place off (seen: 2.2478575706481934 read as
        // 2.247857570648194), so there it is the closest neighbour at worst.
        let (resumed_losses, straight_losses) = (losses(&resumed), losses(&straight));
        assert_eq!(resumed_losses[1..], straight_losses[1..], "{optimizer:?}");
        let neighbours = |a: f64, b: f64| a.to_bits().abs_diff(b.to_bits()) <= 1;
        let (r, s) = (resumed_losses[0], straight_losses[0]);
        assert!(
            neighbours(r.0, s.0) && neighbours(r.1, s.1),
            "{optimizer:?}: {r:?} {s:?}"
        );
        assert_eq!(distance(&resumed.weights, &straight.weights), 0.0);
        assert_eq!(resumed.optimizer, straight.optimizer);

        // Without the optimizer's state the curve changes: the test can tell.
        let fresh = Checkpoint {
            optimizer: None,
            ..after_one.clone()
        };
        let (_, _) = train(&session, config(3), Some(fresh));
        assert_ne!(losses(&session.checkpoint().unwrap()), losses(&straight));
    }
}

/// An optimizer state that does not fit the network is refused with its reason.
#[test]
fn an_optimizer_state_of_another_network_is_refused() {
    let session = session();
    let (_, _) = train(&session, short(1), None);
    let mut checkpoint = session.checkpoint().unwrap();
    let tiny = session_checkpoint_of(&session, "tiny");
    checkpoint.optimizer = tiny.optimizer;
    let error = exclusive(session.train(short(2), Some(checkpoint), |_| ready(true))).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(
        error
            .to_string()
            .contains("the checkpoint's optimizer state does not fit this run"),
        "{error}"
    );
}

fn session_checkpoint_of(session: &Session, preset_id: &str) -> Checkpoint {
    let config = TrainConfig {
        network: preset(preset_id).unwrap(),
        ..short(1)
    };
    let (_, _) = train(session, config, None);
    session.checkpoint().unwrap()
}

#[test]
fn a_diverging_run_is_reported_as_divergence() {
    let session = session();
    let config = TrainConfig {
        epochs: 2,
        limit: Some(2_048),
        learning_rate: 0.9,
        ..TrainConfig::default()
    };
    let error = exclusive(session.train(config, None, |_| ready(true))).unwrap_err();
    println!("{error}");
    assert_eq!(error.kind(), ErrorKind::Divergence);
    assert_eq!(
        error.recovery(mnist7k::backend::Backend::Gpu),
        Recovery::Report
    );
    assert!(error
        .to_string()
        .contains("try a lower learning rate than 0.9"));
}

#[test]
fn a_session_refuses_what_it_cannot_do_with_its_reason() {
    let empty = Session::new();
    let error = pollster::block_on(empty.metrics(|_, _| ready(()))).unwrap_err();
    assert_eq!(error.to_string(), "the MNIST data is not loaded yet");
    assert_eq!(error.kind(), ErrorKind::Data);
    let error = pollster::block_on(empty.predict(vec![0.0; 784])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "no trained weights yet: train or load weights first"
    );
    assert_eq!(error.kind(), ErrorKind::Weights);
    let error = pollster::block_on(empty.use_backend("foo")).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    let error = empty.load_weights("not json").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Weights);
    assert!(empty.weights().is_none(), "a bad file changes nothing");
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(50_000_000));
    assert_eq!(
        empty.load_weights(&huge).unwrap_err().to_string(),
        "the weights file is 50.0 MB; an mnist7k weights file is well under 4 MB"
    );
    let corrupt_gzip: &[u8] = &[0x1f, 0x8b, 1, 2, 3];
    let error = empty.load_data([corrupt_gzip, &[], &[], &[]]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Data);
    assert!(
        error
            .to_string()
            .starts_with("train-images-idx3-ubyte could not be decompressed"),
        "{error}"
    );
    let (train_file, test) = data();
    empty.set_data(train_file, test);
    let error = exclusive(empty.train(short(1), None, |_| ready(true))).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the compute device failed: no backend selected yet"
    );
}

/// A designed network (batch norm, "same" padding, global average pooling) with the other
/// recipe: SGD, one-cycle, augmentation. It learns, its weights file carries the network and the
/// settings, and a fresh session restores both from the file alone.
#[test]
fn a_designed_network_with_another_recipe_trains_and_its_file_restores_it() {
    let session = session();
    let config = TrainConfig {
        epochs: 2,
        limit: Some(3_000),
        batch_size: 32,
        network: preset("best7k").unwrap(),
        optimizer: Optimizer::Sgd,
        learning_rate: 0.1,
        schedule: Schedule::OneCycle,
        shift: 2.0,
        rotation: 10.0,
        ..TrainConfig::default()
    };
    let (summary, events) = train(&session, config.clone(), None);
    assert_eq!(summary.epochs, 2);
    let Some(Event::Epoch(record)) = events.iter().rev().find(|e| matches!(e, Event::Epoch(_)))
    else {
        panic!("an epoch was recorded")
    };
    println!(
        "best7k candidate, 2 epochs of 3,000 augmented images, SGD one-cycle: val accuracy {:.4}",
        record.val_accuracy
    );
    // 0.956 seen; an unaugmented run of the report's network reaches 0.91 on 6,000 images.
    assert!(record.val_accuracy > 0.9, "{record:?}");
    let weights = session.weights().unwrap();
    assert_eq!(weights.network, config.network);
    assert_eq!(weights.settings.as_ref(), Some(&config));
    let fresh = Session::new();
    let network = fresh.load_weights(&weights.to_json()).unwrap();
    assert_eq!(network, config.network);
    let pixels: Vec<f32> = (0..784).map(|i| ((i * 7) % 13) as f32 / 13.0).collect();
    let a = pollster::block_on(session.predict(pixels.clone())).unwrap();
    let b = pollster::block_on(fresh.predict(pixels)).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_network_over_budget_or_another_networks_checkpoint_is_refused() {
    let session = session();
    let over = TrainConfig {
        budget: 5_000,
        ..short(1)
    };
    let error = exclusive(session.train(over, None, |_| ready(true))).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert_eq!(
        error.to_string(),
        "invalid network: the network has 6,722 parameters, over the budget of 5,000; the \
         largest layer is dense (2,570)"
    );
    let stopped = exclusive(session.train(short(1), None, |_| ready(false))).unwrap();
    assert!(stopped.stopped);
    let tiny = TrainConfig {
        network: preset("tiny").unwrap(),
        ..short(2)
    };
    let checkpoint = Checkpoint::first(
        mnist7k::history::EpochRecord {
            epoch: 1,
            train_loss: 1.0,
            train_accuracy: 0.5,
            val_loss: 1.0,
            val_accuracy: 0.5,
            seconds: 1.0,
            step_seconds: 0.9,
            validation_seconds: 0.1,
            samples_per_second: 1.0,
            backend: "cpu".into(),
        },
        session.weights().unwrap(),
    );
    let error = exclusive(session.train(tiny, Some(checkpoint), |_| ready(true))).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(
        error.to_string().starts_with(
            "invalid setting: the run to resume trained another network (conv-8-3-valid-relu,"
        ),
        "{error}"
    );
}

fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mnist7k"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn cli_summary_prints_each_layer_and_the_total() {
    let (code, text, _) = cli(&["summary"]);
    assert_eq!(code, Some(0));
    for count in [
        "80",
        "584",
        "1,168",
        "2,320",
        "2,570",
        "Total params: 6,722 (budget 7,000)",
    ] {
        assert!(text.contains(count), "{count} missing from:\n{text}");
    }
    let (code, text, _) = cli(&["presets"]);
    assert_eq!(code, Some(0));
    for line in ["report     6,722 parameters", "tiny       1,066 parameters"] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    let (_, tiny, _) = cli(&["summary", "--preset", "tiny"]);
    assert!(tiny.contains("global_average_pooling2d"), "{tiny}");
    let model = std::env::temp_dir().join("mnist7k-cli-model.json");
    std::fs::write(
        &model,
        serde_json::to_string(&preset("tiny").unwrap()).unwrap(),
    )
    .unwrap();
    let (code, from_file, _) = cli(&["summary", "--model", model.to_str().unwrap()]);
    assert_eq!((code, &from_file), (Some(0), &tiny));
    let report = Network::report().to_string();
    let (code, text, stderr) = cli(&["summary", "--net", &report, "--budget", "6000"]);
    assert_eq!(code, Some(2));
    assert!(
        text.contains("Total params: 6,722 (budget 6,000)"),
        "{text}"
    );
    assert!(
        stderr.contains("the network has 6,722 parameters, over the budget of 6,000"),
        "{stderr}"
    );
    let (code, _, stderr) = cli(&["train", "--data", "/nonexistent"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("missing"));
    for (args, message) in [
        (&["bench", "--bogus", "1"][..], "unknown option --bogus"),
        (&["train", "--epochs"][..], "--epochs needs a value"),
        (&["train", "--lr", "fast"][..], "--lr expects a number"),
        (
            &["train", "--preset", "huge"][..],
            "there is no preset \"huge\"; the presets are report, tiny, best7k",
        ),
        (
            &["train", "--loss", "hinge"][..],
            "loss must be one of cross_entropy, mse, mae",
        ),
        (
            &["summary", "--net", "conv-8-3-valid-relu"][..],
            "a network ends with its output",
        ),
    ] {
        let (code, _, stderr) = cli(args);
        assert_eq!(code, Some(2), "{args:?}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

/// The search on two quick candidates and two refinements: the winner is the better on
/// validation, its final runs read the test set; a refinement worse on validation is not
/// adopted, one better for both seeds is, and its runs become the final runs, read on the test
/// set; a second pass reuses every run, and a final run repeats exactly when its settings are
/// trained again (what `train --preset best7k --seed N` relies on).
#[test]
fn the_search_picks_on_validation_reuses_finished_runs_and_repeats_exactly() {
    use mnist7k::search::{self, Candidate, Refinement};
    let session = session();
    let quick = |learning_rate| TrainConfig {
        network: preset("tiny").unwrap(),
        epochs: 1,
        limit: Some(1_200),
        learning_rate,
        seed: search::SEARCH_SEED,
        ..TrainConfig::default()
    };
    let candidates = vec![
        Candidate {
            name: "slow",
            why: "a learning rate too low for one short epoch",
            config: quick(1e-5),
        },
        Candidate {
            name: "usual",
            why: "Adam's usual rate",
            config: quick(1e-2),
        },
    ];
    // Real refinements leave training alone; these change it, so that one outcome is certain
    // each way.
    let refinements = vec![
        Refinement {
            name: "crawl",
            why: "a learning rate too low",
            apply: |config| config.learning_rate = 1e-5,
        },
        Refinement {
            name: "four times as long",
            why: "three more epochs",
            apply: |config| config.epochs = 4,
        },
    ];
    // What `save` was last handed, which the CLI writes: the report as returned.
    let saved = std::cell::RefCell::new(None);
    let run = |previous, log: &mut Vec<String>| {
        let report = exclusive(search::run(
            &session,
            candidates.clone(),
            refinements.clone(),
            &[1, 2],
            previous,
            // The preset carries the refinement the rule adopts.
            TrainConfig {
                epochs: 4,
                ..quick(1e-2)
            },
            |line| log.push(line),
            |report| {
                *saved.borrow_mut() = Some(report.clone());
                ready(Ok(()))
            },
        ))
        .unwrap();
        assert_eq!(saved.borrow().as_ref(), Some(&report));
        report
    };
    let mut first_log = Vec::new();
    let report = run(None, &mut first_log);
    let accuracies: Vec<f64> = report.search.iter().map(|t| t.val_accuracy).collect();
    println!("validation accuracies {accuracies:?}");
    assert_eq!(report.chosen, "usual", "{accuracies:?}");
    let seeds = |runs: &[search::FinalRun]| runs.iter().map(|r| r.seed).collect::<Vec<_>>();
    for (paired, adopted) in report.refinements.iter().zip([false, true]) {
        let gains: Vec<f64> = paired.pairs.iter().map(|p| p.with - p.without).collect();
        println!("{}: gains {gains:?}", paired.name);
        let mean = (gains[0] + gains[1]) / 2.0;
        let standard_error = (gains[0] - gains[1]).abs() / 2.0;
        assert_eq!(paired.adopted, mean > 2.0 * standard_error);
        assert_eq!(paired.adopted, adopted, "{}", paired.name);
    }
    let without: Vec<f64> = report
        .unrefined_runs
        .iter()
        .map(|r| r.val_accuracy)
        .collect();
    let paired = |i: usize| &report.refinements[i].pairs;
    assert_eq!(
        paired(0).iter().map(|p| p.without).collect::<Vec<_>>(),
        without
    );
    assert_eq!(
        paired(1).iter().map(|p| p.without).collect::<Vec<_>>(),
        without
    );
    // The adopted refinement's runs are the final runs, which the preset trains.
    assert_eq!(seeds(&report.runs), [1, 2]);
    assert!(report.runs.iter().all(|r| r.settings.epochs == 4));
    assert_eq!(
        report
            .runs
            .iter()
            .map(|r| r.val_accuracy)
            .collect::<Vec<_>>(),
        paired(1).iter().map(|p| p.with).collect::<Vec<_>>()
    );
    assert!(report.preset_is_winner);
    assert_ne!(report.runs[0].test_accuracy, report.runs[1].test_accuracy);
    let mean = (report.runs[0].test_accuracy + report.runs[1].test_accuracy) / 2.0;
    assert!((report.mean_test_accuracy - mean).abs() < 1e-12);
    let markdown = report.to_markdown("table\n", "mnist7k search");
    assert!(
        markdown.contains("| usual | Adam's usual rate |"),
        "{markdown}"
    );
    for heading in ["### crawl: not adopted", "### four times as long: adopted"] {
        assert!(
            markdown.contains(heading),
            "{heading} missing from {markdown}"
        );
    }

    let mut second_log = Vec::new();
    let again = run(Some(report.clone()), &mut second_log);
    assert_eq!(again, report);
    assert!(
        first_log.iter().any(|l| l.contains("epoch 1/1"))
            && !second_log.iter().any(|l| l.contains("epoch 1/")),
        "{second_log:?}"
    );

    let (_, _) = train(&session, report.runs[1].settings.clone(), None);
    let metrics = pollster::block_on(session.metrics(|_, _| ready(()))).unwrap();
    assert_eq!(metrics.metrics.test_accuracy, report.runs[1].test_accuracy);
}

#[test]
fn the_best7k_preset_fits_the_budget_and_trains_with_its_own_recipe() {
    let config = TrainConfig::for_preset("best7k").unwrap();
    let params = config.network.params().unwrap();
    println!("best7k: {params} parameters, {} epochs", config.epochs);
    assert!(params <= mnist7k::network::BUDGET, "{params}");
    assert!(config.epochs <= 20);
    assert_ne!(config.schedule, TrainConfig::default().schedule);
    // The CLI's --preset brings the recipe; a flag changes one setting wherever it stands.
    let json = std::env::temp_dir().join("mnist7k-cli-run.json");
    let (code, text, stderr) = cli(&[
        "train",
        "--epochs",
        "1",
        "--data",
        "data",
        "--preset",
        "best7k",
        "--limit",
        "256",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    // --json writes a run, as the page keeps and imports them.
    let run = Run::from_json(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(run.state, RunState::Finished);
    assert_eq!(run.settings.network, config.network);
    assert_eq!(run.checkpoint.as_ref().unwrap().history.len(), 1);
    assert!(run.checkpoint.as_ref().unwrap().optimizer.is_some());
    let metrics = run.metrics.unwrap();
    assert!(text.contains(&format!("accuracy {:.4}", metrics.metrics.test_accuracy)));
    let expected = TrainConfig {
        epochs: 1,
        limit: Some(256),
        ..config
    }
    .recipe();
    println!("{expected}");
    assert!(text.contains(&expected), "{expected} missing from:\n{text}");
}

/// One figure of every epoch a checkpoint recorded.
fn figures(c: &Checkpoint, f: fn(&EpochRecord) -> f64) -> Vec<f64> {
    c.history.iter().map(f).collect()
}

/// `train --no-test` reads only the training file and keeps no test figure; `evaluate` reads the
/// test set for the weights it saved and prints what `train` prints when it reads it itself.
#[test]
fn cli_trains_without_the_test_set_and_evaluates_the_saved_weights_later() {
    let dir = std::env::temp_dir().join("mnist7k-cli-no-test");
    std::fs::create_dir_all(&dir).unwrap();
    for file in [TRAIN_IMAGES, TRAIN_LABELS] {
        let name = format!("{file}.gz");
        std::fs::copy(Path::new("data").join(&name), dir.join(&name)).unwrap();
    }
    let (weights, json) = (dir.join("weights.json"), dir.join("run.json"));
    let quick = [
        "--preset", "tiny", "--epochs", "1", "--limit", "3000", "--lr", "0.01",
    ];
    let (code, text, stderr) = cli(&[
        &["train", "--data", dir.to_str().unwrap(), "--no-test"][..],
        &quick,
        &["--weights", weights.to_str().unwrap()],
        &["--json", json.to_str().unwrap()],
    ]
    .concat());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(text.contains("test set not read (--no-test)"), "{text}");
    assert!(!text.contains("test set ("), "{text}");
    let run = Run::from_json(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(run.metrics.is_none());
    let evaluate = |data: &str| {
        cli(&[
            "evaluate",
            "--data",
            data,
            "--weights",
            weights.to_str().unwrap(),
        ])
    };
    let (code, _, stderr) = evaluate(dir.to_str().unwrap());
    assert_eq!(code, Some(2));
    assert!(stderr.contains(TEST_IMAGES), "{stderr}");
    let (code, evaluated, stderr) = evaluate("data");
    assert_eq!(code, Some(0), "{stderr}");
    let (code, trained, stderr) = cli(&[&["train", "--data", "data"][..], &quick].concat());
    assert_eq!(code, Some(0), "{stderr}");
    let reports = |text: &str| text[text.find("\ntraining file (").unwrap()..].to_string();
    println!("{}", reports(&evaluated));
    assert_eq!(reports(&evaluated), reports(&trained));
}

/// Weight averaging changes what is validated and kept, never how it trains: the same training
/// losses to the bit, the trained weights (kept beside the average) those of the run without
/// it; and a run resumed after its first epoch (through JSON) ends exactly where the
/// uninterrupted one ends, average and trained weights alike.
#[test]
fn weight_averaging_leaves_training_alone_and_resumes_exactly() {
    let session = session();
    let config = |epochs, average_decay| TrainConfig {
        epochs,
        limit: Some(1_200),
        average_decay,
        norm_images: 500,
        shift: 1.0,
        rotation: 5.0,
        network: preset("best7k").unwrap(),
        ..TrainConfig::default()
    };
    let run = |config, resume| {
        let _ = train(&session, config, resume);
        session.checkpoint().unwrap()
    };
    let (plain, averaged) = (run(config(2, 0.0), None), run(config(2, 0.99), None));
    println!(
        "validation loss without averaging {:?}, with {:?}",
        figures(&plain, |r| r.val_loss),
        figures(&averaged, |r| r.val_loss)
    );
    assert_eq!(
        figures(&averaged, |r| r.train_loss),
        figures(&plain, |r| r.train_loss)
    );
    assert_ne!(
        figures(&averaged, |r| r.val_loss),
        figures(&plain, |r| r.val_loss)
    );
    assert!(plain.trained.is_none());
    let trained = averaged.trained.as_ref().unwrap();
    let learned = |t: &&mnist7k::weights::Tensor32| !t.name.contains("running");
    for ((a, t), p) in averaged
        .weights
        .tensors
        .iter()
        .zip(&trained.tensors)
        .zip(&plain.weights.tensors)
        .filter(|((a, _), _)| learned(a))
    {
        assert_ne!(a.values, t.values, "{}", a.name);
        assert_eq!(t.values, p.values, "{}", t.name);
    }

    let after_one = run(config(1, 0.99), None);
    let stored: Checkpoint =
        serde_json::from_str(&serde_json::to_string(&after_one).unwrap()).unwrap();
    let refused = exclusive(session.train(config(2, 0.0), Some(stored.clone()), |_| ready(true)));
    assert_eq!(
        refused.unwrap_err().to_string(),
        "invalid setting: the run to resume and its settings disagree on weight averaging"
    );
    let resumed = run(config(2, 0.99), Some(stored));
    let curve = |c: &Checkpoint| {
        c.history[1..]
            .iter()
            .map(|r| (r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy))
            .collect::<Vec<_>>()
    };
    assert_eq!(curve(&resumed), curve(&averaged));
    assert_eq!(resumed.weights, averaged.weights);
    assert_eq!(resumed.trained, averaged.trained);
}

/// Batch-norm statistics from clean images change what is validated and kept, never how it
/// trains: the same training losses to the bit, other validation figures, and the kept
/// weights differ only in the running statistics.
#[test]
fn batch_norm_statistics_from_clean_images_leave_training_alone() {
    let session = session();
    let config = |norm_images| TrainConfig {
        epochs: 2,
        limit: Some(1_200),
        norm_images,
        ..TrainConfig::for_preset("best7k").unwrap()
    };
    let run = |norm_images| {
        let _ = train(&session, config(norm_images), None);
        session.checkpoint().unwrap()
    };
    let (running, clean) = (run(0), run(500));
    let val_loss = |c: &Checkpoint| figures(c, |r| r.val_loss);
    println!(
        "validation loss, running statistics {:?}, from 500 clean images {:?}",
        val_loss(&running),
        val_loss(&clean)
    );
    assert_eq!(
        figures(&clean, |r| r.train_loss),
        figures(&running, |r| r.train_loss)
    );
    assert_ne!(val_loss(&clean), val_loss(&running));
    let statistic = |t: &mnist7k::weights::Tensor32| t.name.contains("running");
    for (a, b) in clean.weights.tensors.iter().zip(&running.weights.tensors) {
        assert_eq!(a.values == b.values, !statistic(a), "{}", a.name);
    }
    assert!(config(500)
        .recipe()
        .ends_with("batch-norm statistics from 500 clean training images"));
    // Beyond the training split it takes the whole split; a network without batch norm ignores it.
    let (_, _) = train(
        &session,
        TrainConfig {
            limit: Some(600),
            ..config(60_000)
        },
        None,
    );
    let (_, _) = train(
        &session,
        TrainConfig {
            norm_images: 500,
            limit: Some(600),
            ..short(1)
        },
        None,
    );
}

/// The same run on 1, 2 and 3 threads: the same losses and weights to the bit. The convolutions
/// split their work by image and sum the weight gradient in fixed groups, whatever the count
/// (the browser's all-cores module runs the same code on its Web Workers).
#[test]
fn the_thread_count_does_not_change_a_run() {
    let (train_file, test) = data();
    let config = TrainConfig {
        epochs: 2,
        limit: Some(1_200),
        batch_size: 64,
        ..TrainConfig::default()
    };
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        // The session lives on the pool's thread, where the run starts.
        let run = pool.install(|| {
            let session = session_on(train_file.clone(), test.clone());
            train(&session, config.clone(), None);
            session.checkpoint().unwrap()
        });
        let losses: Vec<_> = run
            .history
            .iter()
            .map(|r| (r.train_loss, r.val_loss))
            .collect();
        (losses, run.weights)
    };
    let (one, one_weights) = on(1);
    println!("1 thread: {one:?}");
    for threads in [2, 3] {
        let (losses, weights) = on(threads);
        assert_eq!(losses, one, "{threads} threads");
        assert_eq!(distance(&weights, &one_weights), 0.0, "{threads} threads");
    }
}
