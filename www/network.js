// The network designer: a preset to start from, the layers as rows of form controls (edit, move,
// remove, add), and the Keras-style summary against the parameter budget. Shapes, parameter
// counts and the verdict all come from Rust (`networkSummary`, in the worker): the page never
// computes them, so the editor cannot disagree with what training will build.

// What each layer type is called and the fields a new one starts with (their order is the order
// of the controls in its row).
const LAYER_TYPES = {
  conv2d: { label: 'Conv2D', fresh: { filters: 8, kernel: 3, padding: 'same', activation: 'relu' } },
  maxpool2d: { label: 'MaxPool2D', fresh: { size: 2 } },
  avgpool2d: { label: 'AvgPool2D', fresh: { size: 2 } },
  globalavgpool: { label: 'GlobalAvgPool', fresh: {} },
  batchnorm: { label: 'BatchNorm', fresh: {} },
  dropout: { label: 'Dropout', fresh: { rate: 0.3 } },
  flatten: { label: 'Flatten', fresh: {} },
  dense: { label: 'Dense', fresh: { units: 32, activation: 'relu' } },
};

// How each field is edited. Ranges here only guide the spinner: Rust checks them.
const FIELDS = {
  filters: { label: 'Filters', integer: true, min: 1 },
  kernel: { label: 'Kernel', choices: [1, 3, 5], numeric: true },
  padding: { label: 'Padding', choices: ['valid', 'same'] },
  activation: { label: 'Activation', choices: ['relu', 'none'] },
  size: { label: 'Size', integer: true, min: 1 },
  rate: { label: 'Rate', min: 0, max: 1, step: 0.05 },
  units: { label: 'Units', integer: true, min: 1 },
};
const OUTPUTS = ['softmax', 'sigmoid'];
const CUSTOM = 'custom';
// The network a page without a link shows, and the one an unreadable link falls back to.
const DEFAULT_PRESET = 'report';

const labelOf = (layer) => LAYER_TYPES[layer.type]?.label ?? layer.type;
const copy = (value) => JSON.parse(JSON.stringify(value));

// Key order differs between Rust's serialisation and the objects built here: compare sorted.
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function option(value, text) {
  const element = document.createElement('option');
  element.value = String(value);
  element.textContent = text;
  return element;
}

function fieldControl(name, value) {
  const spec = FIELDS[name];
  let control;
  if (spec.choices) {
    control = document.createElement('select');
    // A value this page does not list (a newer file, say) stays selectable rather than lost.
    const choices = spec.choices.some((c) => String(c) === String(value)) ? spec.choices : [...spec.choices, value];
    for (const choice of choices) control.append(option(choice, String(choice)));
  } else {
    control = document.createElement('input');
    control.type = 'number';
    control.min = String(spec.min);
    if (spec.max !== undefined) control.max = String(spec.max);
    control.step = spec.integer ? '1' : String(spec.step ?? 'any');
  }
  control.name = name;
  // A rate kept as f32 in Rust comes back as 0.30000001192092896: shown as 0.3, kept as is
  // until edited.
  control.value = typeof value === 'number' && !spec.integer ? String(Number(value.toPrecision(6))) : String(value);
  const label = document.createElement('label');
  label.append(`${spec.label} `, control);
  return { label, control };
}

// The value a field's control holds ({ value }), or why it holds none ({ problem }).
function readField(control) {
  const spec = FIELDS[control.name];
  if (spec.choices) {
    if (control.value === '') return { problem: 'choose a value' };
    return { value: spec.numeric ? Number(control.value) : control.value };
  }
  const value = Number(control.value);
  if (control.value === '' || !Number.isFinite(value)) return { problem: `enter a ${spec.integer ? 'whole ' : ''}number` };
  if (spec.integer && !Number.isInteger(value)) return { problem: `${value} is not a whole number` };
  return { value };
}

export function createNetworkEditor(elements, { send, onChange, onUnreadable, onPresetChosen }) {
  const { preset, layers: list, output, addType, add, budget, error, summary, total, budgetShown, meter } = elements;
  let presets = [];
  let layers = [];
  let outputActivation = 'softmax';
  let custom = null; // the last network edited away from the presets, so the select can bring it back
  let enabled = true;
  let shown = false; // whether a network has been shown (the select has something to match)
  let rows = [];
  // The request the editor waits for (its id) and the verdict on the one before.
  let nextId = 0;
  let pending = null;
  let verdict = { accepted: false, error: null };

  for (const [type, { label }] of Object.entries(LAYER_TYPES)) addType.append(option(type, label));
  for (const name of OUTPUTS) output.append(option(name, name));

  const network = () => ({ layers: copy(layers), output: outputActivation });

  const presetOf = (candidate) => {
    const key = canonical(candidate);
    return presets.find((p) => canonical(p.network) === key)?.id ?? CUSTOM;
  };

  function showPresetChoice() {
    const id = presetOf(network());
    if (id === CUSTOM) custom = network();
    const customOption = preset.querySelector(`option[value="${CUSTOM}"]`);
    customOption.hidden = custom === null;
    customOption.disabled = custom === null;
    preset.value = id;
  }

  function layerRow(layer, index) {
    const item = document.createElement('li');
    item.className = 'layer';
    item.dataset.testid = 'layer';
    item.dataset.type = layer.type;
    const title = document.createElement('span');
    title.className = 'layer-type';
    title.textContent = labelOf(layer);
    item.append(title);
    const controls = [];
    for (const name of Object.keys(LAYER_TYPES[layer.type]?.fresh ?? {})) {
      const { label, control } = fieldControl(name, layer[name]);
      item.append(label);
      controls.push(control);
    }
    const actions = document.createElement('span');
    actions.className = 'layer-actions';
    const what = `layer ${index + 1} (${labelOf(layer)})`;
    for (const [action, symbol, name] of [['up', '↑', `Move ${what} up`], ['down', '↓', `Move ${what} down`], ['remove', '✕', `Remove ${what}`]]) {
      const button = document.createElement('button');
      button.type = 'button';
      button.dataset.action = action;
      button.textContent = symbol;
      button.setAttribute('aria-label', name);
      button.title = name;
      actions.append(button);
    }
    item.append(actions);
    return { item, controls, buttons: [...actions.children] };
  }

  // The controls' disabled state: all off while training, and a move that has nowhere to go.
  function refreshEnabled() {
    for (const element of [preset, output, addType, add]) element.disabled = !enabled;
    rows.forEach(({ controls, buttons }, i) => {
      for (const control of controls) control.disabled = !enabled;
      for (const button of buttons) {
        const nowhere = (button.dataset.action === 'up' && i === 0) || (button.dataset.action === 'down' && i === rows.length - 1);
        button.disabled = !enabled || nowhere;
      }
    });
  }

  // Rebuilds the rows after a change of structure; `focus` ([index, action or null]) keeps the
  // keyboard where the person was, since the focused button is replaced.
  function render(focus = null) {
    shown = true;
    rows = layers.map(layerRow);
    list.replaceChildren(...rows.map((r) => r.item));
    output.value = outputActivation;
    refreshEnabled();
    showPresetChoice();
    markInvalid();
    if (focus) {
      const [index, action] = focus;
      const row = rows[Math.min(index, rows.length - 1)];
      const candidates = !row ? [] : action
        ? [...row.buttons.filter((b) => b.dataset.action === action), ...row.buttons]
        : [row.controls[0], ...row.buttons];
      (candidates.find((element) => element && !element.disabled) ?? add).focus();
    }
  }

  function markInvalid() {
    const index = verdict.error?.layer ?? null;
    rows.forEach(({ item, controls }, i) => {
      const invalid = i === index;
      item.classList.toggle('invalid', invalid);
      for (const control of controls) {
        if (invalid) {
          control.setAttribute('aria-invalid', 'true');
          control.setAttribute('aria-describedby', error.id);
        } else {
          control.removeAttribute('aria-invalid');
          control.removeAttribute('aria-describedby');
        }
      }
    });
  }

  function showError(refusal) {
    error.hidden = !refusal;
    error.textContent = refusal?.message ?? '';
  }

  function cell(row, text, header = false) {
    const element = document.createElement(header ? 'th' : 'td');
    element.textContent = text;
    row.append(element);
  }

  function showSummary(result) {
    const body = summary.tBodies[0] ?? summary.createTBody();
    const foot = summary.tFoot ?? summary.createTFoot();
    body.replaceChildren();
    foot.replaceChildren();
    total.parentElement.hidden = !result;
    total.textContent = result ? String(result.total) : '';
    budgetShown.textContent = result ? String(result.budget) : '';
    if (!result) return;
    meter.max = result.budget;
    meter.value = Math.min(result.total, result.budget);
    const rowsOut = [{ name: 'input', layer: 'Input', output: result.input, params: 0 }, ...result.rows];
    for (const r of rowsOut) {
      const row = body.insertRow();
      cell(row, r.name, true);
      cell(row, r.layer);
      cell(row, r.output);
      cell(row, r.params.toLocaleString('en'));
    }
    for (const [name, value] of [
      ['Total params', result.total],
      ['Non-trainable params', result.non_trainable],
      ['Multiply-adds per image', result.macs],
    ]) {
      if (value === undefined || value === null) continue;
      const row = foot.insertRow();
      const label = document.createElement('th');
      label.colSpan = 3;
      label.scope = 'row';
      label.textContent = name;
      row.append(label);
      cell(row, value.toLocaleString('en'));
    }
  }

  // `text` (the worker's, for the link) is null when there is no new one to record.
  function report(text) {
    markInvalid();
    onChange({ accepted: verdict.accepted, refusal: verdict.error, text, preset: presetOf(network()) });
  }

  // Sends the question to the worker; the verdict is unknown (Train off) until it answers.
  function ask(question) {
    nextId += 1;
    pending = { id: nextId, question };
    verdict = { accepted: false, error: null };
    summary.setAttribute('aria-busy', 'true');
    report(null);
    send({ type: 'network', id: nextId, ...question });
  }

  // A problem the page can name without asking (a field or the budget holding no number).
  function refuse(problem) {
    pending = null;
    summary.setAttribute('aria-busy', 'false');
    verdict = { accepted: false, error: problem };
    showError(problem);
    report(null);
  }

  function budgetValue() {
    const value = Number(budget.value);
    return budget.value !== '' && Number.isInteger(value) ? value : null;
  }

  // The current network (or a link's text of one) to the worker, unless a field is unreadable.
  function check(question = { network: network() }) {
    const limit = budgetValue();
    if (limit === null) {
      refuse({ message: `Parameter budget: ${budget.value ? `"${budget.value}" is not a whole number` : 'enter a whole number'}`, layer: null });
      return;
    }
    for (const [i, { controls }] of rows.entries()) {
      for (const control of controls) {
        const { problem } = readField(control);
        if (problem) {
          refuse({ message: `Layer ${i + 1} (${labelOf(layers[i])}), ${FIELDS[control.name].label.toLowerCase()}: ${problem}`, layer: i });
          return;
        }
      }
    }
    ask({ ...question, budget: limit });
  }

  function setNetwork(next) {
    layers = copy(next.layers);
    outputActivation = next.output ?? 'softmax';
    render();
    check();
  }

  function choose(id) {
    if (id === CUSTOM) {
      if (custom) setNetwork(custom);
      return;
    }
    const found = presets.find((p) => p.id === id) ?? presets.find((p) => p.id === DEFAULT_PRESET) ?? presets[0];
    if (found) setNetwork(found.network);
  }

  // A person's choice brings the preset's recipe too; a link's preset keeps the link's settings.
  preset.addEventListener('change', () => {
    choose(preset.value);
    const chosen = presets.find((p) => p.id === preset.value);
    if (chosen) onPresetChosen?.(chosen);
  });
  output.addEventListener('input', () => {
    outputActivation = output.value;
    showPresetChoice();
    check();
  });
  budget.addEventListener('input', () => check());

  // A field edit changes no structure: the model is updated in place, so the focus stays put.
  list.addEventListener('input', (event) => {
    const control = event.target;
    const index = rows.findIndex((r) => r.controls.includes(control));
    if (index < 0) return;
    const { value } = readField(control);
    if (value !== undefined) layers[index][control.name] = value;
    showPresetChoice();
    check();
  });

  list.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action]');
    const index = rows.findIndex((r) => r.buttons.includes(button));
    if (index < 0) return;
    const { action } = button.dataset;
    if (action === 'remove') {
      layers.splice(index, 1);
      render([index, 'remove']);
    } else {
      const to = action === 'up' ? index - 1 : index + 1;
      [layers[index], layers[to]] = [layers[to], layers[index]];
      render([to, action]);
    }
    check();
  });

  // A network's last layer makes its 10 outputs (a Dense of 10, or GlobalAvgPool over 10
  // channels): anything appended after it could only be refused, so a new layer goes just
  // before it, where a designer grows a network; the move buttons take it anywhere else.
  add.addEventListener('click', () => {
    const type = addType.value;
    const at = Math.max(0, layers.length - 1);
    layers.splice(at, 0, { type, ...LAYER_TYPES[type].fresh });
    render([at, null]);
    check();
  });

  return {
    // The presets from Rust, as the select's options (a custom network keeps its own option).
    setPresets(list) {
      presets = list;
      preset.replaceChildren(...presets.map((p) => option(p.id, p.name)), option(CUSTOM, 'Custom'));
      if (shown) showPresetChoice();
    },
    hasPreset: (id) => presets.some((p) => p.id === id),
    presetIds: () => presets.map((p) => p.id),
    defaultPreset: DEFAULT_PRESET,
    choose,
    setNetwork,
    // A link's text of a network: the worker parses it; unreadable text falls back to the
    // report's network after `onUnreadable` has said why.
    askText: (text) => check({ text }),
    // Asks again after the worker was replaced (its answer to the last question is lost).
    resend() {
      if (pending) check(pending.question.text !== undefined ? { text: pending.question.text } : undefined);
    },
    answered(reply) {
      if (!pending || reply.id !== pending.id) return;
      const fromText = pending.question.text !== undefined;
      pending = null;
      summary.setAttribute('aria-busy', 'false');
      if (reply.network === null && fromText) {
        onUnreadable(reply.text, reply.error?.message ?? 'unreadable');
        choose(DEFAULT_PRESET);
        return;
      }
      if (fromText) {
        layers = copy(reply.network.layers);
        outputActivation = reply.network.output ?? 'softmax';
        render();
      }
      verdict = { accepted: !reply.error && Boolean(reply.summary), error: reply.error };
      showSummary(reply.summary);
      showError(reply.error);
      report(reply.text);
    },
    network,
    accepted: () => verdict.accepted,
    setEnabled(on) {
      enabled = on;
      refreshEnabled();
    },
  };
}
