// Status line, backend label, notices and the progress bar with speed and ETA.

export function createProgress({ status, backend, notice, bar, text }) {
  function setStatus(state, message) {
    status.dataset.state = state;
    status.textContent = message;
  }

  function showNotice(message) {
    notice.hidden = !message;
    notice.textContent = message ?? '';
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

  return { setStatus, showNotice, setBackend, batch };
}
