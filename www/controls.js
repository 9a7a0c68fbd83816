// The settings form: the recipe's fields, mirrored in the URL query so a link reproduces a run.

// URL key -> [form field, config key, parse]
const FIELDS = {
  epochs: ['epochs', 'epochs', parseInt],
  limit: ['limit', 'limit', parseInt],
  batch: ['batch', 'batch_size', parseInt],
  lr: ['lr', 'learning_rate', parseFloat],
  patience: ['patience', 'patience', parseInt],
  beta1: ['beta1', 'beta1', parseFloat],
  beta2: ['beta2', 'beta2', parseFloat],
  eps: ['eps', 'epsilon', parseFloat],
  split: ['split', 'validation_split', parseFloat],
  seed: ['seed', 'seed', parseInt],
};
const FULL_TRAINING_SPLIT = 48000;

export function createControls(form) {
  const field = (name) => form.elements.namedItem(name);

  function fromUrl() {
    const query = new URLSearchParams(window.location.search);
    for (const key of [...Object.keys(FIELDS), 'backend']) {
      const value = query.get(key);
      if (value !== null && field(key)) field(key).value = value;
    }
  }

  function toUrl() {
    const query = new URLSearchParams();
    for (const key of [...Object.keys(FIELDS), 'backend']) {
      const input = field(key);
      if (input.value !== input.defaultValue && input.value !== '') query.set(key, input.value);
    }
    const search = query.toString();
    window.history.replaceState(null, '', search ? `?${search}` : window.location.pathname);
  }

  // The recipe as the Rust `TrainConfig` expects it, or an error naming the bad field.
  function config() {
    const out = {};
    for (const [name, key, parse] of Object.values(FIELDS)) {
      const input = field(name);
      const value = parse(input.value);
      if (!Number.isFinite(value) || !input.checkValidity()) {
        throw new Error(`${input.closest('label').textContent.trim()}: "${input.value}" is not valid`);
      }
      out[key] = value;
    }
    if (out.limit >= FULL_TRAINING_SPLIT) out.limit = null;
    return out;
  }

  function setEnabled(enabled) {
    for (const element of form.elements) element.disabled = !enabled;
  }

  fromUrl();
  form.addEventListener('input', toUrl);
  return {
    config,
    setEnabled,
    backendChoice: () => field('backend').value,
    onBackendChange: (handler) => field('backend').addEventListener('change', handler),
  };
}
