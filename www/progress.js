// Status line, backend label, notices and the progress bar with speed and ETA.

export function createProgress({ status, backend, notice, bar, text, epochTime, bench }) {
  function setStatus(state, message) {
    status.dataset.state = state;
    status.textContent = message;
    delete status.dataset.kind;
  }

  // The kind of the failure just shown (config, data, weights, divergence, device, storage).
  function setKind(kind) {
    status.dataset.kind = kind;
  }

  function showNotice(message) {
    notice.hidden = !message;
    notice.textContent = message ?? '';
  }

  // A sentence after the notice shown (the link's problems are found at different times).
  function addNotice(message) {
    showNotice(notice.hidden ? message : `${notice.textContent} ${message}`);
  }

  function setBackend(name, reason) {
    backend.textContent = `${name} — ${reason}`;
    backend.dataset.backend = name;
  }

  function formatEta(seconds) {
    if (!Number.isFinite(seconds)) return '—';
    const m = Math.floor(seconds / 60);
    return m > 0 ? `${m} min ${Math.round(seconds % 60)} s` : `${Math.round(seconds)} s`;
  }

  // One batch done: the bar covers the whole run (epochs x batches), the ETA this epoch.
  function batch(event, maxEpochs) {
    const done = (event.epoch - 1) * event.batches + event.batch;
    bar.max = maxEpochs * event.batches;
    bar.value = done;
    text.textContent = `epoch ${event.epoch}/${maxEpochs} · batch ${event.batch}/${event.batches} · `
      + `${Math.round(event.samples_per_second)} samples/s · epoch ends in ${formatEta(event.epoch_eta_seconds)}`;
  }

  // Where the last epoch's time went: training steps, between them (the worker's messages), and
  // the validation pass; data-epoch keeps the record for scripts/bench-browser.mjs. The line is
  // always there ("—" until an epoch ends), so that the page below it never moves.
  function epoch(record) {
    const s = (seconds) => `${seconds.toFixed(1)} s`;
    epochTime.textContent = `epoch ${record.epoch}: ${s(record.seconds + record.validation_seconds)} — `
      + `${s(record.step_seconds)} in training steps, ${s(record.seconds - record.step_seconds)} between them, `
      + `${s(record.validation_seconds)} validating`;
    epochTime.dataset.epoch = JSON.stringify(record);
  }

  // Metrics run the network over 70,000 images: the bar shows how far that is.
  function evaluation(done, total) {
    bar.max = total;
    bar.value = done;
    text.textContent = done < total
      ? `computing metrics · ${done.toLocaleString('en')} of ${total.toLocaleString('en')} images`
      : `metrics computed on all ${total.toLocaleString('en')} images`;
  }

  // The speed test's result; data-result keeps the numbers for scripts/bench-browser.mjs.
  function showBench(backendName, { result, error }) {
    bench.hidden = false;
    if (error) {
      bench.textContent = `Speed test failed: ${error}`;
      delete bench.dataset.result;
      return;
    }
    const threads = backendName === 'cpu' ? ` (${result.threads} thread${result.threads === 1 ? '' : 's'})` : '';
    bench.textContent = `Speed on ${backendName}${threads}: ${Math.round(result.samples_per_second).toLocaleString('en')} samples/s · `
      + `${result.ms_per_batch.toFixed(1)} ms per batch of ${result.batch_size} · ${result.gflops.toFixed(2)} GFLOP/s · `
      + `loss ${result.final_loss.toFixed(3)} after ${result.batches} batches (first batch ${result.first_batch_seconds.toFixed(1)} s)`
      + (result.dispatches_per_step === undefined ? ''
        : ` · ${result.dispatches_per_step.toFixed(0)} dispatches and ${result.reads_per_step.toFixed(1)} reads per step`);
    bench.dataset.result = JSON.stringify(result);
  }

  return { setStatus, setKind, showNotice, addNotice, setBackend, batch, epoch, evaluation, showBench };
}
