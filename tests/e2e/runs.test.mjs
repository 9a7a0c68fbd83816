// End-to-end: runs that last. Two short runs with different settings are both kept in the runs
// table and survive a reload; a third run, interrupted by a reload in its second epoch, is offered
// for resuming and carries on from its last saved epoch to "done"; an exported run imported into
// a fresh browser profile brings back its row, curves and weights (the same prediction).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BROWSERS, MINUTE, attr, click, downloaded, drawSeven, isHidden, noticeText, openPage, serveApp, text, typeInto,
  unexpected, waitForState,
} from './harness.mjs';

let stopServer = () => {};
before(async () => { stopServer = await serveApp(); });
after(() => stopServer());

// The runs table as { name, epochs, test, state } per row, in the order shown.
const rows = (page) => page.$$eval('[data-testid="run"]', (list) => list.map((row) => ({
  name: row.cells[0].querySelector('input').value,
  epochs: Number(row.cells[2].textContent),
  test: row.cells[4].textContent,
  state: row.cells[7].textContent,
})));

async function waitForRows(page, check, what, timeout = MINUTE) {
  try {
    await page.waitForFunction(`(${check.toString()})([...document.querySelectorAll('[data-testid="run"]')])`, { timeout, polling: 200 });
  } catch (error) {
    throw new Error(`the runs table never showed ${what} (${error.message}): ${JSON.stringify(await rows(page))}`);
  }
}

// The pad's probabilities once they stop changing.
async function settledProbabilities(page) {
  let last = await text(page, 'probabilities');
  for (let quiet = 0; quiet < 6;) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    const now = await text(page, 'probabilities');
    quiet = now === last ? quiet + 1 : 0;
    last = now;
  }
  return last;
}

for (const engine of BROWSERS) {
  test(`${engine}: runs are kept across reloads, an interrupted run resumes, an exported run imports`, { timeout: 30 * MINUTE }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mnist7k-runs-'));
    const { browser, page, errors, open } = await openPage({ engine, query: '?backend=cpu&epochs=1&limit=1024&batch=64' });
    let exported;
    let probabilities;
    try {
      await open();
      await waitForState(page, 'idle', 5 * MINUTE);
      assert.equal(await isHidden(page, 'runs'), true, 'no runs yet');

      await click(page, 'train');
      await waitForState(page, 'done', 10 * MINUTE);
      await typeInto(page, 'lr', '0.003');
      await click(page, 'train');
      await waitForState(page, 'training', MINUTE);
      await waitForState(page, 'done', 10 * MINUTE);
      await waitForRows(page, (list) => list.length === 2 && list.every((r) => /%/.test(r.cells[4].textContent)), 'two finished runs');
      const two = await rows(page);
      console.log(JSON.stringify(two));
      assert.notEqual(two[0].test, two[1].test, 'different settings, different results');

      await page.reload();
      await waitForState(page, 'idle', 5 * MINUTE);
      assert.deepEqual(await rows(page), two, 'the runs survive a reload');
      assert.equal(await isHidden(page, 'resume'), true, 'finished runs are not offered for resuming');

      // Both runs overlaid: each brings its train and validation curves, named in the charts'
      // legend and in their text alternative.
      await page.$$eval('[data-testid="run"] input[name="compare"]', (boxes) => boxes.forEach((b) => b.click()));
      await page.waitForFunction((names) => {
        const headings = [...document.querySelectorAll('[data-testid="chart-loss"] table th')].map((th) => th.textContent);
        return names.every((name) => headings.includes(`${name} validation`));
      }, { timeout: MINUTE, polling: 200 }, two.map((r) => r.name));
      const legend = await page.$eval('[data-testid="chart-accuracy"] .u-legend', (e) => e.textContent);
      for (const { name } of two) assert.ok(legend.includes(`${name} train`), legend);
      // Renamed, and the name is kept.
      await page.$eval('[data-testid="run"] input[aria-label="Run name"]', (input) => {
        input.value = 'first of two';
        input.dispatchEvent(new Event('change', { bubbles: true }));
      });

      // A third run of three longer epochs (6,000 images: on every core, three epochs of 1,024
      // end within the second the test waits), reloaded once its first epoch is saved.
      await typeInto(page, 'epochs', '3');
      await typeInto(page, 'limit', '6000');
      await click(page, 'train');
      await waitForRows(page, (list) => list.some((r) => r.cells[2].textContent === '1' && /running/.test(r.cells[7].textContent)), 'the third run after epoch 1', 5 * MINUTE);
      const before = (await rows(page)).find((r) => r.state === 'running');
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await page.reload();
      await waitForState(page, 'idle', 5 * MINUTE);
      assert.equal(await isHidden(page, 'resume'), false, 'the interrupted run is offered');
      assert.ok((await rows(page)).some((r) => r.name === 'first of two'), 'the new name is kept');
      assert.match(await text(page, 'resume'), new RegExp(`Resume run "${before.name}" from epoch 1 \\(of 3\\)`));
      await page.$eval('[data-testid="resume"] button', (b) => b.click());
      await waitForState(page, 'training', MINUTE);
      await waitForState(page, 'done', 10 * MINUTE);
      await waitForRows(page, (list) => list.length === 3 && list.some((r) => r.cells[2].textContent === '3' && /finished/.test(r.cells[7].textContent)), 'the resumed run finished after 3 epochs');
      // Three epochs' training and validation points (epoch 1's from the saved run), plus batches.
      assert.ok(Number(await attr(page, 'chart-loss', 'data-points')) >= 6, 'the curves continue from epoch 1');
      assert.equal(await isHidden(page, 'resume'), true);

      // Export the resumed run and remember what its weights answer for a drawn 7.
      const resumedRow = await page.$$eval('[data-testid="run"]', (list) => list.findIndex((r) => r.cells[2].textContent === '3'));
      exported = await downloaded(page, `[data-testid="run"]:nth-child(${resumedRow + 1}) [data-testid="run-export"]`);
      const run = JSON.parse(exported);
      assert.deepEqual(run.checkpoint.history.map((r) => r.epoch), [1, 2, 3]);
      assert.equal(run.state, 'finished');
      assert.ok(run.checkpoint.optimizer, 'the CPU checkpoint carries the optimizer state');
      await drawSeven(page);
      probabilities = await settledProbabilities(page);
      assert.deepEqual(unexpected(errors), []);
    } finally {
      await browser.close();
    }

    // A fresh profile: nothing kept, then the imported run.
    const fresh = await openPage({ engine, query: '?backend=cpu' });
    try {
      await fresh.open();
      await waitForState(fresh.page, 'idle', 5 * MINUTE);
      assert.equal(await isHidden(fresh.page, 'runs'), true, 'a fresh profile has no runs');
      const path = join(dir, 'run.json');
      writeFileSync(path, exported);
      await (await fresh.page.$('[data-testid="run-import"]')).uploadFile(path);
      await waitForRows(fresh.page, (list) => list.length === 1, 'the imported run');
      const [imported] = await rows(fresh.page);
      const original = JSON.parse(exported);
      assert.equal(imported.epochs, 3);
      assert.equal(imported.test, `${(100 * original.metrics.test_accuracy).toFixed(2)}%`);
      await fresh.page.$$eval('[data-testid="run"] button', (buttons) => buttons.find((b) => b.textContent === 'Load').click());
      await fresh.page.waitForFunction(() => /Weights loaded/.test(document.querySelector('#notice').textContent), { timeout: 2 * MINUTE, polling: 200 })
        .catch(async (error) => { throw new Error(`notice "${await noticeText(fresh.page)}" (${error.message})`); });
      assert.equal(await attr(fresh.page, 'chart-loss', 'data-points'), '6', 'the imported run brings its curves');
      await waitForState(fresh.page, 'done', 5 * MINUTE);
      await drawSeven(fresh.page);
      assert.equal(await settledProbabilities(fresh.page), probabilities, 'the imported weights answer as the trained ones did');

      // A file that is not a run is refused with its reason.
      const bad = join(dir, 'bad.json');
      writeFileSync(bad, '{"format": "something else"}');
      await (await fresh.page.$('[data-testid="run-import"]')).uploadFile(bad);
      await fresh.page.waitForFunction(() => /Could not import bad\.json: .*not a run file/.test(document.querySelector('#notice').textContent), { timeout: MINUTE, polling: 200 })
        .catch(async (error) => { throw new Error(`notice "${await noticeText(fresh.page)}" (${error.message})`); });
      assert.equal((await rows(fresh.page)).length, 1);

      // Deleted, and gone after a reload.
      await fresh.page.$$eval('[data-testid="run"] button', (buttons) => buttons.find((b) => b.textContent === 'Delete').click());
      await waitForRows(fresh.page, (list) => list.length === 0, 'no runs');
      await fresh.page.reload();
      await waitForState(fresh.page, 'idle', 5 * MINUTE);
      assert.equal((await rows(fresh.page)).length, 0);
      assert.deepEqual(unexpected(fresh.errors), []);
    } finally {
      await fresh.browser.close();
    }
  });
}
