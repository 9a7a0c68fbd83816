//! The native twin of the browser app: `summary`, `train` and `bench` on the same code.

use std::path::PathBuf;

use mnist7k::backend::ComputeDevice;
use mnist7k::bench::{self, BenchConfig};
use mnist7k::data::load_dir;
use mnist7k::evaluation::metrics;
use mnist7k::model::Cnn;
use mnist7k::training::{Event, TrainConfig, Trainer};

const USAGE: &str = "usage:
  mnist7k summary
  mnist7k train --data DIR [--backend cpu|wgpu] [--epochs N] [--limit N] [--batch N]
                [--lr X] [--patience N] [--seed N] [--json FILE] [--weights FILE]
  mnist7k bench --data DIR [--backend cpu,wgpu] [--windows N] [--json FILE]";

struct TrainArgs {
    data: PathBuf,
    backend: String,
    config: TrainConfig,
    json: Option<PathBuf>,
    weights: Option<PathBuf>,
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag} expects a number, got {value:?}"))
}

/// Walks `--flag value` pairs, handing each to `apply`.
fn for_each_flag(
    args: &[String],
    mut apply: impl FnMut(&str, &str) -> Result<(), String>,
) -> Result<(), String> {
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        apply(flag, value)?;
    }
    Ok(())
}

fn unknown_option(flag: &str) -> Result<(), String> {
    Err(format!("unknown option {flag}\n{USAGE}"))
}

fn parse_train(args: &[String]) -> Result<TrainArgs, String> {
    let mut parsed = TrainArgs {
        data: PathBuf::from("data"),
        backend: "cpu".into(),
        config: TrainConfig::default(),
        json: None,
        weights: None,
    };
    for_each_flag(args, |flag, value| {
        let c = &mut parsed.config;
        match flag {
            "--data" => parsed.data = value.into(),
            "--backend" => parsed.backend = value.into(),
            "--epochs" => c.epochs = parse_number(flag, value)?,
            "--limit" => c.limit = Some(parse_number(flag, value)?),
            "--batch" => c.batch_size = parse_number(flag, value)?,
            "--lr" => c.learning_rate = parse_number(flag, value)?,
            "--patience" => c.patience = parse_number(flag, value)?,
            "--seed" => c.seed = parse_number(flag, value)?,
            "--json" => parsed.json = Some(value.into()),
            "--weights" => parsed.weights = Some(value.into()),
            _ => return unknown_option(flag),
        }
        Ok(())
    })?;
    Ok(parsed)
}

pub fn compute_device(name: &str) -> Result<ComputeDevice, String> {
    match name {
        "cpu" => Ok(ComputeDevice::cpu()),
        "wgpu" => pollster::block_on(ComputeDevice::gpu()),
        other => Err(format!("unknown backend {other:?}: use cpu or wgpu")),
    }
}

fn summary() {
    let model = Cnn::new(&ComputeDevice::cpu().device);
    println!("{:<26} {:>12} {:>8}", "Layer (type)", "Output", "Params");
    for row in model.summary() {
        println!(
            "{:<26} {:>12} {:>8}",
            row.name, row.output_shape, row.params
        );
    }
    println!("Total params: {}", burn::module::Module::num_params(&model));
}

fn train(args: TrainArgs) -> Result<(), String> {
    let (train_file, test) = load_dir(&args.data).map_err(|e| e.to_string())?;
    println!(
        "training images per class: {:?} (test {})",
        train_file.class_counts(),
        test.len()
    );
    let compute = compute_device(&args.backend)?;
    let mut trainer = Trainer::new(args.config.clone(), &train_file, &compute, None)
        .map_err(|e| e.to_string())?;
    println!(
        "backend {}: {} training images, {} batches of {} per epoch",
        trainer.backend(),
        trainer.train_len(),
        trainer.batches_per_epoch(),
        args.config.batch_size
    );
    loop {
        match pollster::block_on(trainer.step()).map_err(|e| e.to_string())? {
            Event::Batch(_) => {}
            Event::Epoch(r) => println!(
                "Epoch {}/{} - {:.1}s - {:.0} samples/s - loss {:.4} - accuracy {:.4} - val_loss {:.4} - val_accuracy {:.4}",
                r.epoch, args.config.epochs, r.seconds, r.samples_per_second,
                r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy
            ),
            Event::Done { early_stopped } => {
                if early_stopped {
                    println!("early stopping: validation loss did not improve for {} epochs", args.config.patience);
                }
                break;
            }
        }
    }
    let checkpoint = trainer.checkpoint().ok_or("no epoch completed")?;
    let model = checkpoint
        .best_weights
        .to_model(&compute.device)
        .map_err(|e| e.to_string())?;
    let report = pollster::block_on(metrics(
        &model,
        &train_file,
        &test,
        &compute.device,
        checkpoint.history.clone(),
        &mut |done, total| eprint!("\revaluating: {done}/{total} images"),
    ))
    .map_err(|e| e.to_string())?;
    eprintln!();
    println!(
        "weights of epoch {} (best validation loss)",
        checkpoint.best_epoch
    );
    println!(
        "\ntraining file ({} images): loss {:.4}, accuracy {:.4}",
        train_file.len(),
        report.train_loss,
        report.train_accuracy
    );
    println!("{}", report.train_report.to_table());
    println!(
        "test set ({} images): loss {:.4}, accuracy {:.4}",
        test.len(),
        report.test_loss,
        report.test_accuracy
    );
    println!("{}", report.test_report.to_table());
    if let Some(path) = args.json {
        let json = serde_json::to_string_pretty(&report).expect("metrics serialise");
        std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("metrics written to {}", path.display());
    }
    if let Some(path) = args.weights {
        std::fs::write(&path, checkpoint.best_weights.to_json())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("weights written to {}", path.display());
    }
    Ok(())
}

fn run_bench(args: &[String]) -> Result<(), String> {
    let mut data = PathBuf::from("data");
    let mut backends = "cpu".to_string();
    let mut config = BenchConfig::default();
    let mut json = None;
    for_each_flag(args, |flag, value| {
        match flag {
            "--data" => data = value.into(),
            "--backend" => backends = value.into(),
            "--windows" => config.windows = parse_number(flag, value)?,
            "--json" => json = Some(PathBuf::from(value)),
            _ => return unknown_option(flag),
        }
        Ok(())
    })?;
    let (train_file, _) = load_dir(&data).map_err(|e| e.to_string())?;
    let mut results = Vec::new();
    for name in backends.split(',') {
        let compute = compute_device(name)?;
        let result = pollster::block_on(bench::run(&compute, &train_file, config))
            .map_err(|e| e.to_string())?;
        println!(
            "{:<6} {:>8.0} samples/s  {:>7.1} ms/batch  {:>6.2} GFLOP/s  first batch {:.2} s  loss {:.3}  process peak {}  windows {:?}",
            result.backend,
            result.samples_per_second,
            result.ms_per_batch,
            result.gflops,
            result.first_batch_seconds,
            result.final_loss,
            result.peak_memory_mib.map_or("–".into(), |mib| format!("{mib:.0} MiB")),
            result.window_samples_per_second.iter().map(|v| v.round()).collect::<Vec<_>>()
        );
        results.push(result);
    }
    if let Some(path) = json {
        let report = serde_json::json!({
            "where": "native",
            "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "results": results,
        });
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&report).expect("serialise"),
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

pub fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("summary") => {
            summary();
            Ok(())
        }
        Some("train") => parse_train(&args[1..]).and_then(train),
        Some("bench") => run_bench(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    if let Err(message) = result {
        eprintln!("error: {message}");
        std::process::exit(2);
    }
}
