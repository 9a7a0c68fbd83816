// The settings form: the recipe's fields, mirrored in the URL query so a link reproduces a run.
// Ranges come from Rust (`settingsBounds`), which also checks them: the form only makes sure
// each field holds a number.

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

  const fromLink = {};
  const problems = [];
  function fromUrl() {
    const query = new URLSearchParams(window.location.search);
    for (const key of [...Object.keys(FIELDS), 'backend']) {
      const value = query.get(key);
      const input = field(key);
      if (value === null || !input) continue;
      fromLink[key] = value;
      if (input.tagName === 'SELECT' && ![...input.options].some((o) => o.value === value)) {
        const choices = [...input.options].map((o) => o.value).join(', ');
        problems.push(`The link's ${key} "${value}" is not one of ${choices}: using ${input.value}.`);
        continue;
      }
      input.value = value;
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

  // The settings as Rust's `TrainConfig::from_json` reads them, or an error naming a field that
  // holds no number (a number input shows "" for text such as `?lr=abc`: name what was typed).
  function config() {
    const out = {};
    for (const [name, key, parse] of Object.values(FIELDS)) {
      const input = field(name);
      const value = parse(input.value);
      if (!Number.isFinite(value)) {
        const typed = input.value || fromLink[name] || '';
        throw new Error(`${input.closest('label').textContent.trim()}: ${typed ? `"${typed}" is not a number` : 'enter a number'}`);
      }
      out[key] = value;
    }
    if (out.limit >= FULL_TRAINING_SPLIT) out.limit = null;
    return out;
  }

  // The allowed range of each field, as the browser's number inputs express it.
  function applyBounds(bounds) {
    for (const [name, key] of Object.values(FIELDS)) {
      const bound = bounds.find((b) => b.key === key);
      const input = field(name);
      if (!bound || !input) continue;
      input.min = String(bound.min);
      input.max = String(bound.max);
      input.step = bound.integer ? '1' : 'any';
      input.title = `${bound.name}: ${bound.min_allowed ? 'from' : 'above'} ${bound.min} ${bound.max_allowed ? 'to' : 'below'} ${bound.max}`;
    }
  }

  function setEnabled(enabled) {
    for (const element of form.elements) element.disabled = !enabled;
  }

  fromUrl();
  form.addEventListener('input', toUrl);
  return {
    config,
    applyBounds,
    setEnabled,
    backendChoice: () => field('backend').value,
    // What the link asked for that the form cannot hold, as sentences for a notice.
    linkProblems: () => [...problems],
    onBackendChange: (handler) => field('backend').addEventListener('change', handler),
  };
}
