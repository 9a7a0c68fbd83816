// The runs table: every run kept (store.js), sortable, renamable, deletable, exportable (one run
// as JSON, the table as CSV), importable, and the offer to resume a run a reload interrupted.
// The run being trained is written after each of its epochs.

import { openStore } from './store.js';
import { element } from './dom.js';

const RUN_FORMAT = 'mnist7k-run-1';
const percent = (x) => (x === null || x === undefined ? '–' : `${(100 * x).toFixed(2)}%`);
const bestValidation = (run) => {
  const history = run.checkpoint?.history ?? [];
  return history.length ? Math.max(...history.map((r) => r.val_accuracy)) : null;
};

// Column: [key, heading, value for sorting and CSV, text shown].
const COLUMNS = [
  ['name', 'Name', (r) => r.name, (r) => r.name],
  ['params', 'Parameters', (r) => r.params, (r) => r.params.toLocaleString('en')],
  ['epochs', 'Epochs', (r) => r.checkpoint?.history.length ?? 0, (r) => String(r.checkpoint?.history.length ?? 0)],
  ['val', 'Best val. accuracy', bestValidation, (r) => percent(bestValidation(r))],
  ['test', 'Test accuracy', (r) => r.metrics?.test_accuracy ?? null, (r) => percent(r.metrics?.test_accuracy)],
  ['minutes', 'Minutes', (r) => r.seconds / 60, (r) => (r.seconds / 60).toFixed(1)],
  ['backend', 'Backend', (r) => r.backend, (r) => r.backend],
  ['state', 'State', (r) => r.state, (r) => r.state.replace('_', ' ')],
  ['created', 'Date', (r) => r.created, (r) => new Date(r.created).toLocaleString('en-GB')],
];

function download(name, type, text) {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = name;
  link.click();
  URL.revokeObjectURL(link.href);
}

const csvCell = (value) => {
  const text = value === null || value === undefined ? '' : String(value);
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
};

export async function createRuns(elements, { onLoad, onTrainAgain, onResume, onCompare, onProblem, readRun }) {
  const { table, resume, exportTable, importFile } = elements;
  const body = table.tBodies[0];
  const { store, problem } = await openStore();
  if (problem) onProblem(`Runs cannot be kept in this browser (${problem}): they will be lost on reload.`);
  let runs = store ? await store.all().catch((error) => {
    onProblem(`The kept runs could not be read (${error.message}).`);
    return [];
  }) : [];
  let sort = { key: 'created', descending: true };
  let current = null; // the run being trained
  const compared = new Set(); // ids of the runs overlaid on the charts

  async function save(run) {
    if (!store) return;
    try {
      await store.put(run);
    } catch (error) {
      onProblem(`The run "${run.name}" could not be saved (${error?.message ?? error}): the browser refused the write (storage full?).`);
    }
  }

  function button(text, action, testid) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = text;
    if (testid) b.dataset.testid = testid;
    b.addEventListener('click', action);
    return b;
  }

  function row(run) {
    const tr = document.createElement('tr');
    tr.dataset.testid = 'run';
    tr.dataset.id = run.id;
    for (const [key, , , shown] of COLUMNS) {
      const td = document.createElement('td');
      if (key === 'name') {
        const input = document.createElement('input');
        input.value = run.name;
        input.setAttribute('aria-label', 'Run name');
        input.addEventListener('change', () => {
          run.name = input.value.trim() || run.name;
          save(run);
        });
        td.append(input);
      } else {
        td.textContent = shown(run);
      }
      tr.append(td);
    }
    const actions = document.createElement('td');
    const compare = document.createElement('input');
    compare.type = 'checkbox';
    compare.name = 'compare';
    compare.checked = compared.has(run.id);
    compare.addEventListener('change', () => {
      if (compare.checked) compared.add(run.id);
      else compared.delete(run.id);
      onCompare();
    });
    actions.append(element('label', {}, [compare, ' compare ']));
    const usable = Boolean(run.checkpoint);
    const busy = run === current;
    const load = button('Load', () => onLoad(run));
    load.disabled = !usable || busy;
    const again = button('Train again', () => onTrainAgain(run));
    again.disabled = busy;
    const remove = button('Delete', async () => {
      runs = runs.filter((r) => r !== run);
      if (compared.delete(run.id)) onCompare();
      render();
      if (store) await store.remove(run.id).catch((error) => onProblem(`The run could not be deleted (${error.message}).`));
    });
    remove.disabled = busy;
    actions.append(load, again,
      button('Export', () => download(`mnist7k-run-${run.id}.json`, 'application/json', JSON.stringify(withoutId(run))), 'run-export'),
      remove);
    tr.append(actions);
    return tr;
  }

  function render() {
    const column = COLUMNS.find(([key]) => key === sort.key);
    const value = column[2];
    const sorted = [...runs].sort((a, b) => {
      const [x, y] = [value(a), value(b)];
      const order = x === y ? 0 : (x === null ? -1 : y === null ? 1 : (x < y ? -1 : 1));
      return sort.descending ? -order : order;
    });
    body.replaceChildren(...sorted.map(row));
    for (const th of table.tHead.rows[0].cells) {
      const key = th.dataset.key;
      if (key) th.setAttribute('aria-sort', key === sort.key ? (sort.descending ? 'descending' : 'ascending') : 'none');
    }
    table.hidden = runs.length === 0;
    exportTable.disabled = runs.length === 0;
    showResume();
  }

  // A run still "running" that is not this page's was interrupted by a reload or a crash.
  function interrupted() {
    return runs.filter((r) => r.state === 'running' && r !== current && (r.checkpoint?.history.length ?? 0) > 0)
      .sort((a, b) => b.created - a.created)[0] ?? null;
  }

  function showResume() {
    const run = current ? null : interrupted();
    resume.hidden = !run;
    resume.replaceChildren();
    if (!run) return;
    const epochs = run.checkpoint.history.length;
    resume.append(button(`Resume run "${run.name}" from epoch ${epochs} (of ${run.settings.epochs})`, () => onResume(run)));
  }

  const head = document.createElement('tr');
  for (const [key, heading] of COLUMNS) {
    const th = document.createElement('th');
    th.dataset.key = key;
    th.scope = 'col';
    const b = button(heading, () => {
      sort = { key, descending: sort.key === key ? !sort.descending : key !== 'name' };
      render();
    });
    th.append(b);
    head.append(th);
  }
  const actionsHead = document.createElement('th');
  actionsHead.textContent = 'Actions';
  head.append(actionsHead);
  table.tHead.replaceChildren(head);

  exportTable.addEventListener('click', () => {
    const lines = [COLUMNS.map(([key]) => key).join(',')];
    for (const run of runs) lines.push(COLUMNS.map(([, , value]) => csvCell(value(run))).join(','));
    download('mnist7k-runs.csv', 'text/csv', `${lines.join('\n')}\n`);
  });

  importFile.addEventListener('change', async () => {
    const file = importFile.files[0];
    importFile.value = '';
    if (!file) return;
    try {
      const run = await readRun(await file.text());
      // An imported run is a finished record: it is never offered for resuming.
      const kept = { ...run, id: `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`, state: run.state === 'running' ? 'stopped' : run.state };
      runs.push(kept);
      render();
      await save(kept);
    } catch (error) {
      onProblem(`Could not import ${file.name}: ${error?.message ?? error}`);
    }
  });

  render();
  return {
    // A new run (or a resumed one, `run` given) begins.
    started({ config, backend, params, name, run }) {
      current = run ?? {
        id: `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`,
        format: RUN_FORMAT,
        name,
        created: Date.now(),
        state: 'running',
        backend,
        params,
        settings: config,
        seconds: 0,
        checkpoint: null,
        metrics: null,
      };
      current.state = 'running';
      if (!runs.includes(current)) runs.push(current);
      render();
      save(current);
      return current;
    },
    checkpoint(checkpoint, backend) {
      if (!current) return;
      current.checkpoint = checkpoint;
      current.backend = backend;
      current.seconds = checkpoint.history.reduce((sum, r) => sum + r.seconds, 0);
      render();
      save(current);
    },
    ended(state) {
      if (!current) return;
      current.state = state;
      render();
      save(current);
    },
    // Metrics of the run just trained (metrics of a loaded file belong to no run).
    metrics(metrics) {
      if (!current) return;
      current.metrics = metrics;
      const run = current;
      current = null;
      render();
      save(run);
    },
    // The run being trained ends without metrics (a failure).
    release() {
      current = null;
      render();
    },
    current: () => current,
    // The runs ticked for comparison, in the table's order.
    compared: () => runs.filter((run) => compared.has(run.id)),
  };
}

function withoutId(run) {
  const { id, ...rest } = run;
  return rest;
}
