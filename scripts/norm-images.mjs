// Does the best7k recipe validate better with batch-norm statistics from clean images? A paired
// comparison on the validation split only: each final run's seed of reports/best-under-7k.json
// trains again with `--norm-images N`. Training steps are the same to the bit (tests/native.rs),
// so each pair differs only in the statistics the validated and kept weights carry: far less
// noise than two independent seeds. The rule, fixed before any run: the preset takes the
// setting if the mean gain in validation accuracy over the seeds exceeds twice its standard
// error. Nothing here reads the test set: the runs train with `--no-test`, which loads only the
// training file.
//   node scripts/norm-images.mjs [--images 10000] [--out reports/norm-images.json]
import { readFileSync, writeFileSync } from 'node:fs';
import { nativeRun, scriptFlags } from '../tests/e2e/harness.mjs';

const args = scriptFlags();
const images = Number(args.images ?? 10000);
const out = args.out ?? 'reports/norm-images.json';
const report = JSON.parse(readFileSync('reports/best-under-7k.json', 'utf8'));
const pct = (x) => `${(100 * x).toFixed(2)}%`;

const pairs = [];
for (const final of report.runs) {
  const started = Date.now();
  const { checkpoint } = nativeRun(['--preset', 'best7k', '--seed', String(final.seed), '--norm-images', String(images), '--no-test']);
  const kept = checkpoint.history[checkpoint.best_epoch - 1];
  const pair = {
    seed: final.seed,
    running: { kept_epoch: final.best_epoch, val_accuracy: final.val_accuracy },
    clean: { kept_epoch: checkpoint.best_epoch, val_accuracy: kept.val_accuracy, val_loss: kept.val_loss },
    gain: kept.val_accuracy - final.val_accuracy,
    minutes: (Date.now() - started) / 60000,
  };
  pairs.push(pair);
  console.log(`seed ${pair.seed}: running statistics ${pct(pair.running.val_accuracy)} (epoch ${pair.running.kept_epoch}), `
    + `${images} clean images ${pct(pair.clean.val_accuracy)} (epoch ${pair.clean.kept_epoch}): `
    + `${(100 * pair.gain).toFixed(3)} points, ${pair.minutes.toFixed(1)} min`);
}

const gains = pairs.map((p) => p.gain);
const mean = gains.reduce((a, b) => a + b, 0) / gains.length;
const sd = Math.sqrt(gains.reduce((a, g) => a + (g - mean) ** 2, 0) / (gains.length - 1));
const standardError = sd / Math.sqrt(gains.length);
const adopt = mean > 2 * standardError;
const verdict = `mean gain ${(100 * mean).toFixed(3)} points of validation accuracy `
  + `(standard error ${(100 * standardError).toFixed(3)} over ${gains.length} seeds): `
  + (adopt ? 'above twice its standard error, the preset takes the setting' : 'not above twice its standard error, the preset keeps its running statistics');
console.log(verdict);
writeFileSync(out, `${JSON.stringify({ images, pairs, mean_gain: mean, standard_error: standardError, adopt, verdict }, null, 2)}\n`);
console.log(`written to ${out}`);
