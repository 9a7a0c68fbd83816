// The settings form: the recipe's fields, mirrored in the URL query so a link reproduces a run.
// Ranges and choices come from Rust (`settingsBounds`, `settingsChoices`), which also checks
// them: the form only makes sure each field holds a number. The budget input sits in the
// Network section but belongs to this form (its `form` attribute).

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
  momentum: ['momentum', 'momentum', parseFloat],
  step_every: ['step_every', 'step_every', parseInt],
  step_factor: ['step_factor', 'step_factor', parseFloat],
  shift: ['shift', 'shift', parseFloat],
  rotation: ['rotation', 'rotation', parseFloat],
  norm_images: ['norm_images', 'norm_images', parseInt],
  average: ['average', 'average_decay', parseFloat],
  budget: ['budget', 'budget', parseInt],
};
// Settings picked from Rust's list (`settingsChoices`); URL key = form field = config key.
const CHOICES = ['loss', 'optimizer', 'schedule'];
// What the link carries that no form field holds: the designer's network (see main.js).
const LINKED = ['net', 'preset'];
const FULL_TRAINING_SPLIT = 48000;

export function createControls(form) {
  const field = (name) => form.elements.namedItem(name);

  const fromLink = {};
  const problems = [];
  const linked = {};
  function fromUrl() {
    const query = new URLSearchParams(window.location.search);
    for (const key of LINKED) linked[key] = query.get(key);
    // The choices' options arrive from the worker later: applyChoices takes these values then.
    for (const key of CHOICES) {
      if (query.get(key) !== null) fromLink[key] = query.get(key);
    }
    for (const key of [...Object.keys(FIELDS), 'backend', 'threads']) {
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

  // A select's default is its default-selected option (the first without one), as for a reset.
  const defaultOf = (input) => (input.tagName === 'SELECT'
    ? ([...input.options].find((o) => o.defaultSelected) ?? input.options[0])?.value
    : input.defaultValue);

  function toUrl() {
    const query = new URLSearchParams();
    for (const key of [...Object.keys(FIELDS), ...CHOICES, 'backend', 'threads']) {
      const input = field(key);
      if (!input) continue;
      if (input.value !== defaultOf(input) && input.value !== '') query.set(key, input.value);
      // Choices not yet listed keep what the link asked for.
      else if (input.tagName === 'SELECT' && input.options.length === 0 && fromLink[key]) query.set(key, fromLink[key]);
    }
    for (const key of LINKED) {
      if (linked[key] !== null && linked[key] !== undefined) query.set(key, linked[key]);
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
    // No choice listed yet (the worker has not started): Rust's default applies.
    for (const key of CHOICES) {
      if (field(key)?.value) out[key] = field(key).value;
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

  // Each choice as a select's options, Rust's default selected by default. The first time, the
  // link's values are applied; returns what the link asked for that is not a choice, as
  // sentences for a notice.
  let choicesApplied = false;
  function applyChoices(choices) {
    const found = [];
    for (const { key, choices: values, default: fallback } of choices) {
      const select = field(key);
      if (!select || select.tagName !== 'SELECT') continue;
      const current = select.options.length > 0 ? select.value : null;
      select.replaceChildren(...values.map((value) => {
        const option = document.createElement('option');
        option.value = value;
        option.textContent = value.replaceAll('_', ' ');
        option.defaultSelected = value === fallback;
        return option;
      }));
      let wanted = current;
      if (!choicesApplied && fromLink[key] !== undefined) {
        wanted = fromLink[key];
        if (!values.includes(wanted)) {
          found.push(`The link's ${key} "${wanted}" is not one of ${values.join(', ')}: using ${fallback}.`);
        }
      }
      select.value = values.includes(wanted) ? wanted : fallback;
    }
    choicesApplied = true;
    showRelevance();
    return found;
  }

  // Settings that only one choice uses (momentum: SGD; the step sizes: the step schedule) are
  // dimmed under the others: `data-when="optimizer=sgd"` on their label.
  function showRelevance() {
    for (const label of document.querySelectorAll('[data-when]')) {
      const [key, value] = label.dataset.when.split('=');
      label.classList.toggle('inactive', field(key)?.value !== value);
    }
  }

  // A preset's recipe into the form; the seed, the image limit, the split and the budget are the
  // person's and stay, unless `everything` (a kept run's settings, to train it again).
  const PERSONAL = ['seed', 'limit', 'validation_split', 'budget'];
  function applyRecipe(settings, { everything = false } = {}) {
    for (const [name, key] of Object.values(FIELDS)) {
      if (!everything && PERSONAL.includes(key)) continue;
      if (key === 'limit' && everything && settings.limit === null) {
        field(name).value = String(FULL_TRAINING_SPLIT);
        continue;
      }
      if (settings[key] === undefined || settings[key] === null) {
        // A run kept before a setting existed trained with its default, not the form's value.
        if (everything && settings[key] === undefined) field(name).value = defaultOf(field(name));
        continue;
      }
      field(name).value = String(settings[key]);
    }
    for (const key of CHOICES) {
      if (field(key) && settings[key] !== undefined) field(key).value = settings[key];
    }
    showRelevance();
    toUrl();
  }

  function setEnabled(enabled) {
    for (const element of form.elements) element.disabled = !enabled;
  }

  fromUrl();
  // `input` from the budget, outside the form element, does not bubble through it.
  document.addEventListener('input', (event) => {
    if (event.target.form !== form) return;
    showRelevance();
    toUrl();
  });
  return {
    config,
    applyBounds,
    applyChoices,
    applyRecipe,
    setEnabled,
    // The link's value of a key no field holds (net, preset), or null.
    linked: (key) => linked[key] ?? null,
    // Records such a value in the link (null removes it). The link is left as it came until
    // something changes, as for the form's fields.
    setLinked(key, value) {
      if ((linked[key] ?? null) === value) return;
      linked[key] = value;
      toUrl();
    },
    backendChoice: () => field('backend').value,
    // What the link asked for that the form cannot hold, as sentences for a notice.
    linkProblems: () => [...problems],
    onBackendChange: (handler) => field('backend').addEventListener('change', handler),
  };
}
