//! The native twin of the browser app: `presets`, `summary`, `train`, `evaluate`, `bench` and
//! `search` on the same code.

use std::path::PathBuf;

use std::future::ready;

use mnist7k::backend::ComputeDevice;
use mnist7k::bench::{self, BenchConfig};
use mnist7k::config::TrainConfig;
use mnist7k::data::{load_dir, load_training_file, Mnist};
use mnist7k::error::Error;
use mnist7k::network::{preset, presets, thousands, Network, BUDGET};
use mnist7k::run::{Run, RunState, RUN_FORMAT};
use mnist7k::search::{self, SearchReport};
use mnist7k::session::{DataSummary, MetricsReport, Session};
use mnist7k::training::Event;

const USAGE: &str = "usage:
  mnist7k presets
  mnist7k summary [--preset NAME | --model FILE.json | --net TEXT] [--budget N]
  mnist7k train --data DIR [--preset NAME | --model FILE.json | --net TEXT] [--budget N]
                [--backend cpu|wgpu] [--epochs N] [--limit N] [--batch N] [--lr X]
                [--patience N] [--seed N] [--loss cross_entropy|mse|mae]
                [--optimizer adam|sgd] [--momentum X] [--schedule constant|step|one_cycle]
                [--step-every N] [--step-factor X] [--shift PIXELS] [--rotation DEGREES]
                [--norm-images N] [--average-decay X] [--json FILE] [--weights FILE]
                [--no-test]
  mnist7k evaluate --data DIR --weights FILE
  mnist7k bench --data DIR [--preset NAME | --model FILE.json | --net TEXT]
                [--backend cpu,wgpu] [--windows N] [--json FILE]
  mnist7k search --data DIR [--out reports/best-under-7k]

`train --preset NAME` trains with the preset's recipe too (best7k: the search's); flags after
it change single settings. `--norm-images N` replaces the batch-norm layers' running statistics
after each epoch by their average over N training images without augmentation.
`--average-decay X` validates and keeps a moving average of the weights (decay up to X, 0: off;
the batch-norm statistics above are then the average's). `--no-test` reads only the training
file (choices made on the validation split never see a test figure); `evaluate` reads the test
set for weights saved with `--weights`, once, at the end.

`search` tries the candidates of crate/search.rs on the validation split, trains the winner with
five seeds, judges its refinements in pairs on validation (only an adopted one's runs read the
test set) and writes OUT.json and OUT.md; runs already in OUT.json are reused.

A network is a preset (see `mnist7k presets`), a JSON file ({\"layers\": [...], \"output\":
\"softmax\"}, as the page saves it in a weights file's \"network\") or its text form
(conv-8-3-valid-relu,maxpool-2,...,dense-10-none,softmax, as the page's links carry it).";

struct TrainArgs {
    data: PathBuf,
    backend: String,
    config: TrainConfig,
    json: Option<PathBuf>,
    weights: Option<PathBuf>,
    read_test: bool,
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

/// `--preset`, `--model` and `--net`: where a network comes from.
fn network_flag(flag: &str, value: &str) -> Option<Result<Network, String>> {
    let network = match flag {
        "--preset" => preset(value).map_err(|e| e.to_string()),
        "--model" => std::fs::read_to_string(value)
            .map_err(|e| format!("{value}: {e}"))
            .and_then(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| format!("{value} is not a network description: {e}"))
            }),
        "--net" => value
            .parse()
            .map_err(|e: mnist7k::network::NetworkError| e.to_string()),
        _ => return None,
    };
    Some(network)
}

fn parse_train(args: &[String]) -> Result<TrainArgs, String> {
    // The one flag without a value, taken out where a flag stands (not as another's value).
    let (mut rest, mut no_test, mut it) = (Vec::new(), false, args.iter());
    while let Some(arg) = it.next() {
        if arg == "--no-test" {
            no_test = true;
            continue;
        }
        rest.push(arg.clone());
        rest.extend(it.next().cloned());
    }
    let mut parsed = TrainArgs {
        data: PathBuf::from("data"),
        backend: "cpu".into(),
        config: TrainConfig::default(),
        json: None,
        weights: None,
        read_test: !no_test,
    };
    let args = &rest[..];
    for_each_flag(args, |flag, value| {
        if flag == "--preset" {
            // The preset's recipe first; the settings flags, wherever they stand, come after.
            parsed.config = TrainConfig {
                network: parsed.config.network.clone(),
                ..TrainConfig::for_preset(value).map_err(|e| e.to_string())?
            };
        }
        Ok(())
    })?;
    for_each_flag(args, |flag, value| {
        if let Some(network) = network_flag(flag, value) {
            parsed.config.network = network?;
            return Ok(());
        }
        let setting = match flag {
            "--data" => {
                parsed.data = value.into();
                return Ok(());
            }
            "--backend" => {
                parsed.backend = value.into();
                return Ok(());
            }
            "--json" => {
                parsed.json = Some(value.into());
                return Ok(());
            }
            "--weights" => {
                parsed.weights = Some(value.into());
                return Ok(());
            }
            "--loss" | "--optimizer" | "--schedule" => {
                return parsed
                    .config
                    .choose(&flag[2..], value)
                    .map_err(|e| e.to_string());
            }
            "--epochs" => "epochs",
            "--limit" => "limit",
            "--batch" => "batch_size",
            "--lr" => "learning_rate",
            "--patience" => "patience",
            "--seed" => "seed",
            "--budget" => "budget",
            "--momentum" => "momentum",
            "--step-every" => "step_every",
            "--step-factor" => "step_factor",
            "--shift" => "shift",
            "--rotation" => "rotation",
            "--norm-images" => "norm_images",
            "--average-decay" => "average_decay",
            _ => return unknown_option(flag),
        };
        parsed
            .config
            .set(setting, parse_number(flag, value)?)
            .map_err(|e| e.to_string())
    })?;
    parsed.config.validate().map_err(|e| e.to_string())?;
    Ok(parsed)
}

fn compute_device(name: &str) -> Result<ComputeDevice, Error> {
    pollster::block_on(ComputeDevice::named(name))
}

fn list_presets() {
    for p in presets() {
        let total = p.network.params().map_or("?".into(), thousands);
        println!("{:<8} {:>7} parameters  {}", p.id, total, p.name);
        println!("         {}", p.network);
    }
}

/// The Keras-style table; a refused network prints as far as it goes, then why.
fn summary(args: &[String]) -> Result<(), String> {
    let mut network = Network::report();
    let mut budget = BUDGET;
    for_each_flag(args, |flag, value| {
        if let Some(parsed) = network_flag(flag, value) {
            network = parsed?;
            return Ok(());
        }
        match flag {
            "--budget" => budget = parse_number(flag, value)?,
            _ => return unknown_option(flag),
        }
        Ok(())
    })?;
    let (table, error) = network.summary(budget);
    print!("{}", table.to_table());
    match error {
        Some(error) => Err(format!("invalid network: {error}")),
        None => Ok(()),
    }
}

fn write(path: &std::path::Path, text: String) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::storage(path.display(), e))
}

/// The metrics of the weights in use, with progress on stderr.
fn metrics(session: &Session) -> Result<MetricsReport, Error> {
    let report = pollster::block_on(session.metrics(|done, total| {
        eprint!("\revaluating: {done}/{total} images");
        ready(())
    }))?;
    eprintln!();
    Ok(report)
}

fn print_metrics(data: &DataSummary, report: &MetricsReport) {
    let metrics = &report.metrics;
    println!(
        "\ntraining file ({} images): loss {:.4}, accuracy {:.4}",
        data.train, metrics.train_loss, metrics.train_accuracy
    );
    println!("{}", metrics.train_report.to_table());
    println!(
        "test set ({} images): loss {:.4}, accuracy {:.4}",
        data.test, metrics.test_loss, metrics.test_accuracy
    );
    println!("{}", metrics.test_report.to_table());
}

fn train(args: TrainArgs) -> Result<(), Error> {
    let (train_file, test) = match args.read_test {
        true => load_dir(&args.data)?,
        false => (
            load_training_file(&args.data)?,
            Mnist::from_parts(Vec::new(), Vec::new()),
        ),
    };
    let session = Session::new();
    let data = session.set_data(train_file, test);
    let test = match args.read_test {
        true => format!("test {}", data.test),
        false => "test set not read: --no-test".into(),
    };
    println!(
        "training images per class: {:?} ({test})",
        data.class_counts
    );
    let (table, _) = args.config.network.summary(args.config.budget);
    print!("{}", table.to_table());
    let backend = pollster::block_on(session.use_backend(&args.backend))?;
    let epochs = args.config.epochs;
    let patience = args.config.patience;
    println!("backend {backend}: {}", args.config.recipe());
    let settings = args.config.clone();
    let network_name = presets()
        .into_iter()
        .find(|p| p.network == settings.network)
        .map_or("custom network", |p| p.id);
    let started = std::time::Instant::now();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64);
    let summary = pollster::block_on(session.train(args.config, None, |event| {
        match event {
            Event::Batch(_) => {}
            Event::Epoch(r) => println!(
                "Epoch {}/{epochs} - {:.1}s ({:.1}s in steps) - {:.0} samples/s - loss {:.4} - accuracy {:.4} - val_loss {:.4} - val_accuracy {:.4} ({:.1}s)",
                r.epoch, r.seconds, r.step_seconds, r.samples_per_second,
                r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy, r.validation_seconds
            ),
            Event::Done { early_stopped } => {
                if *early_stopped {
                    println!("early stopping: validation loss did not improve for {patience} epochs");
                }
            }
        }
        ready(true)
    }))?;
    let report = match args.read_test {
        true => {
            let report = metrics(&session)?;
            println!(
                "weights of {} ({} epochs trained)",
                report.weights_from, summary.epochs
            );
            print_metrics(&data, &report);
            Some(report)
        }
        false => {
            if let Some(kept) = session.checkpoint() {
                let record = &kept.history[kept.best_epoch - 1];
                println!(
                    "kept the weights of epoch {} ({} trained): val_loss {:.4} - val_accuracy {:.4}",
                    kept.best_epoch, summary.epochs, record.val_loss, record.val_accuracy
                );
            }
            println!(
                "test set not read (--no-test): `mnist7k evaluate --weights FILE` reads it for \
                 the weights --weights saves"
            );
            None
        }
    };
    if let Some(path) = args.json {
        let run = Run {
            format: RUN_FORMAT.into(),
            name: format!("{} (CLI, seed {})", network_name, settings.seed),
            created,
            state: match (summary.early_stopped, summary.stopped) {
                (true, _) => RunState::EarlyStopped,
                (_, true) => RunState::Stopped,
                _ => RunState::Finished,
            },
            backend: summary.backend.clone(),
            params: settings.network.params().unwrap_or(0),
            seconds: started.elapsed().as_secs_f64(),
            checkpoint: session.checkpoint(),
            metrics: report,
            settings,
        };
        write(&path, run.to_json())?;
        println!(
            "the run (settings, history, weights, metrics) written to {}",
            path.display()
        );
    }
    if let (Some(path), Some(weights)) = (args.weights, session.weights()) {
        write(&path, weights.to_json())?;
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
        if let Some(network) = network_flag(flag, value) {
            config.network = network?;
            return Ok(());
        }
        match flag {
            "--data" => data = value.into(),
            "--backend" => backends = value.into(),
            "--windows" => config.windows = parse_number(flag, value)?,
            "--json" => json = Some(PathBuf::from(value)),
            _ => return unknown_option(flag),
        }
        Ok(())
    })?;
    let train_file = load_training_file(&data).map_err(|e| e.to_string())?;
    let mut results = Vec::new();
    for name in backends.split(',') {
        let compute = compute_device(name).map_err(|e| e.to_string())?;
        let result = pollster::block_on(bench::run(&compute, &train_file, config.clone()))
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

/// `mnist7k evaluate`: the training file's and the test set's reports for a weights file.
fn evaluate(args: &[String]) -> Result<(), Error> {
    let mut data = PathBuf::from("data");
    let mut weights = None;
    for_each_flag(args, |flag, value| {
        match flag {
            "--data" => data = value.into(),
            "--weights" => weights = Some(PathBuf::from(value)),
            _ => return unknown_option(flag),
        }
        Ok(())
    })
    .map_err(Error::Config)?;
    let path =
        weights.ok_or_else(|| Error::Config(format!("evaluate needs --weights FILE\n{USAGE}")))?;
    let text = std::fs::read_to_string(&path).map_err(|e| Error::storage(path.display(), e))?;
    let (train_file, test) = load_dir(&data)?;
    let session = Session::new();
    let summary = session.set_data(train_file, test);
    let network = session.load_weights(&text)?;
    println!("weights of {}: {network}", path.display());
    print_metrics(&summary, &metrics(&session)?);
    Ok(())
}

/// `mnist7k search`: the candidates on the validation split, then the winner's final runs.
fn run_search(args: &[String]) -> Result<(), Error> {
    let mut data = PathBuf::from("data");
    let mut out = PathBuf::from("reports/best-under-7k");
    for_each_flag(args, |flag, value| {
        match flag {
            "--data" => data = value.into(),
            "--out" => out = value.into(),
            _ => return unknown_option(flag),
        }
        Ok(())
    })
    .map_err(Error::Config)?;
    let json = out.with_extension("json");
    let markdown = out.with_extension("md");
    let previous: Option<SearchReport> = match std::fs::read_to_string(&json) {
        Ok(text) => Some(serde_json::from_str(&text).map_err(|e| {
            Error::Config(format!(
                "{} is not a search report ({e}); move it away to start afresh",
                json.display()
            ))
        })?),
        Err(_) => None,
    };
    let (train_file, test) = load_dir(&data)?;
    let session = Session::new();
    session.set_data(train_file, test);
    pollster::block_on(session.use_backend("cpu"))?;
    let preset = TrainConfig::for_preset(search::PRESET)?;
    let command = format!("mnist7k search --data DIR --out {}", out.display());
    let save = |report: &SearchReport| {
        let written = (|| {
            write(
                &json,
                serde_json::to_string_pretty(report).expect("a report serialises"),
            )?;
            let winner = report.network.parse::<Network>().ok();
            let table = winner.map_or(String::new(), |n| n.summary(BUDGET).0.to_table());
            write(&markdown, report.to_markdown(&table, &command))
        })();
        ready(written)
    };
    let report = pollster::block_on(search::run(
        &session,
        search::candidates(),
        search::refinements(),
        &search::FINAL_SEEDS,
        previous,
        preset,
        |line| println!("{line}"),
        save,
    ))?;
    println!(
        "mean test accuracy over {} seeds: {:.4} (standard deviation {:.4}); written to {} and {}",
        report.runs.len(),
        report.mean_test_accuracy,
        report.std_test_accuracy,
        json.display(),
        markdown.display()
    );
    if !report.preset_is_winner {
        return Err(Error::Config(format!(
            "the winner ({}) is not what `--preset {}` trains: make it the preset (crate/network.rs \
             and TrainConfig::for_preset), then run the search again (its runs are reused)",
            report.chosen,
            search::PRESET
        )));
    }
    Ok(())
}

pub fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("presets") => {
            list_presets();
            Ok(())
        }
        Some("summary") => summary(&args[1..]),
        Some("train") => parse_train(&args[1..]).and_then(|a| train(a).map_err(|e| e.to_string())),
        Some("bench") => run_bench(&args[1..]),
        Some("search") => run_search(&args[1..]).map_err(|e| e.to_string()),
        Some("evaluate") => evaluate(&args[1..]).map_err(|e| e.to_string()),
        _ => Err(USAGE.to_string()),
    };
    if let Err(message) = result {
        eprintln!("error: {message}");
        std::process::exit(2);
    }
}
