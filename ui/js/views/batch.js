// The mass upgrade view: choose a build and a selection, see the dry run
// (every device the batch would touch and why others are left out), set
// options and waves, confirm with the number of devices, then follow the
// live board of every device's operation. #/batch/<id> opens a board.

import { call, errorText } from '../api.js';
import { complain, offOperationEvent, onOperationEvent, say } from '../app.js';
import { confirmAction } from '../dialogs.js';
import { field, formatTime, h, replace } from '../dom.js';
import { SYSUPGRADE_OPTIONS } from '../options.js';

/** The board's engine event listener, replaced on each render. */
let listener = null;

export async function render(main, id) {
  if (listener) offOperationEvent(listener);
  listener = null;
  if (id) return board(main, Number(id));
  const [catalogue, batches] = await Promise.all([
    call('firmware_catalogue'), call('list_batches')]);
  replace(main,
    h('h2', { text: 'Mass upgrade' }),
    batchForm(main, catalogue.builds),
    h('section', { 'aria-labelledby': 'batches-title' },
      h('h3', { id: 'batches-title', text: 'Batches' }),
      batches.length === 0 ? h('p', { text: 'No batch yet.' }) : batchesTable(batches)));
  return null;
}

/** The batches with their counts; shared with the fleet overview. */
export function batchesTable(batches) {
  return h('table', { id: 'batches-table' },
    h('thead', {}, h('tr', {}, ['Batch', 'Status', 'Devices', 'Done', 'Failed', 'Progress']
      .map((title) => h('th', { scope: 'col', text: title })))),
    h('tbody', {}, batches.map((summary) => h('tr', { 'data-batch': summary.batch },
      h('td', {}, h('a', { href: `#/batch/${summary.batch}`, text: `Batch ${summary.batch}` })),
      h('td', { text: summary.status }),
      h('td', { text: String(summary.total) }),
      h('td', { text: String(summary.success + summary.not_needed) }),
      h('td', { text: String(summary.failed + summary.aborted) }),
      h('td', {}, h('progress', { max: Math.max(1, summary.total),
        value: summary.success + summary.not_needed + summary.failed + summary.aborted
          + summary.cancelled, 'aria-label': `Batch ${summary.batch} finished operations` }))))));
}

function batchForm(main, builds) {
  const build = h('select', { id: 'batch-build', required: true },
    builds.map((b) => h('option', { value: `${b.category}\u0000${b.version}`,
      text: `${b.category} ${b.version}` })));
  const site = h('input', { id: 'batch-site', autocomplete: 'off' });
  const tags = h('input', { id: 'batch-tags', autocomplete: 'off' });
  const devices = h('input', { id: 'batch-devices', autocomplete: 'off' });
  const firmwareless = h('input', { id: 'batch-firmwareless', type: 'checkbox' });
  const concurrency = h('input', { id: 'batch-concurrency', type: 'number', min: 1, value: '8' });
  const wave = h('input', { id: 'batch-wave', type: 'number', min: 1 });
  const failures = h('input', { id: 'batch-failures', type: 'number', min: 0, max: 100 });
  const options = SYSUPGRADE_OPTIONS.map(([letter, label]) => {
    const box = h('input', { type: 'checkbox', id: `batch-option-${letter}`, value: letter,
      name: 'batch-option' });
    return h('div', { class: 'check' }, box, h('label', { for: box.id, text: label }));
  });
  const plan = h('div', { id: 'batch-plan' });
  const dryRun = h('button', { id: 'batch-dry-run', type: 'button', text: 'Dry run' });
  const start = h('button', { id: 'batch-start', type: 'submit', class: 'primary',
    text: 'Start batch…', disabled: true });

  const list = (text) => text.split(',').map((item) => item.trim()).filter(Boolean);
  const request = () => {
    const [category, version] = build.value.split('\u0000');
    return { category, version, selection: { site: site.value.trim() || null,
      tags: list(tags.value), devices: list(devices.value), firmwareless: firmwareless.checked } };
  };
  let planned = 0;
  dryRun.addEventListener('click', async () => {
    try {
      const result = await call('batch_dry_run', { request: request() });
      planned = result.upgrades.length;
      start.disabled = planned === 0;
      replace(plan, planTables(result));
      say(`Dry run: ${planned} device(s) would be upgraded, ${result.skipped.length} left out.`);
    } catch (error) {
      complain(error);
    }
  });
  for (const control of [build, site, tags, devices, firmwareless]) {
    // A changed selection needs a new dry run before starting.
    control.addEventListener('change', () => { start.disabled = true; });
  }

  const form = h('form', { id: 'batch-form', class: 'panel' },
    h('div', { class: 'columns' },
      h('div', {},
        h('h3', { text: 'Build and selection' }),
        field('Build', build),
        field('Site', site, 'Only devices of this site; empty for any.'),
        field('Tags', tags, 'Devices with any of these tags, separated by commas.'),
        field('Devices', devices, 'These devices by name, separated by commas.'),
        h('div', { class: 'check' }, firmwareless, h('label', { for: firmwareless.id,
          text: 'Include devices whose firmware is unknown when their board has an image' }))),
      h('div', {},
        h('h3', { text: 'Options and waves' }),
        h('fieldset', {}, h('legend', { text: 'sysupgrade options' }), options),
        field('Concurrency', concurrency, 'Operations running at once.'),
        field('First wave', wave, 'Devices upgraded before the rest; empty for none.'),
        field('Pause above failure %', failures, 'Empty to never pause on failures.'))),
    h('div', { class: 'buttons' }, dryRun, start),
    plan);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const chosen = request();
    const sure = await confirmAction('Start the batch?',
      `Upgrade ${planned} device${planned === 1 ? '' : 's'} to ${chosen.category} `
      + `${chosen.version}? Devices flash and reboot; a flash cannot be cancelled.`,
      `Upgrade ${planned} device${planned === 1 ? '' : 's'}`);
    if (!sure) return;
    const number = (input) => (input.value === '' ? null : Number(input.value));
    try {
      const batch = await call('start_batch', {
        request: chosen,
        options: [...form.querySelectorAll('input[name=batch-option]:checked')]
          .map((box) => box.value),
        rollout: { concurrency: number(concurrency) || 1, first_wave: number(wave),
          max_failures_percent: number(failures), deadline: null },
      });
      say(`Batch ${batch.id} started.`);
      location.hash = `#/batch/${batch.id}`;
    } catch (error) {
      complain(error);
    }
  });
  if (builds.length === 0) {
    dryRun.disabled = true;
    plan.append(h('p', { text: 'Import a build first.' }));
  }
  return form;
}

function planTables(result) {
  return [
    h('h4', { text: `Would upgrade (${result.upgrades.length})` }),
    h('table', { id: 'batch-planned' },
      h('thead', {}, h('tr', {}, ['Device', 'Board', 'Runs now', 'Image type']
        .map((title) => h('th', { scope: 'col', text: title })))),
      h('tbody', {}, result.upgrades.map((p) => h('tr', {},
        h('td', { text: p.device }), h('td', { text: p.board }),
        h('td', { text: p.running || 'unknown' }), h('td', { text: p.image_type }))))),
    h('h4', { text: `Left out (${result.skipped.length})` }),
    h('table', { id: 'batch-skipped' },
      h('thead', {}, h('tr', {}, ['Device', 'Why'].map((title) =>
        h('th', { scope: 'col', text: title })))),
      h('tbody', {}, result.skipped.map((s) => h('tr', {},
        h('td', { text: s.device }), h('td', { text: s.reason }))))),
  ];
}

/** How often a board of a batch still at work reads itself again. */
const BOARD_REFRESH_MS = 1500;

/** The live board of one batch; resolves to a function that stops it. */
async function board(main, id) {
  const view = { main, id, timer: null, refreshing: false, stopped: false };
  await paintBoard(view);

  if (listener) offOperationEvent(listener);
  listener = (event) => {
    const row = main.querySelector(`#batch-board tr[data-operation="${event.operation}"]`);
    if (!row) return;
    if (event.kind === 'progress') {
      row.querySelector('progress').value = event.progress;
      row.querySelector('.stage').textContent = event.stage;
    } else if (event.kind === 'status') {
      // A verdict changes the counts and what can still be cancelled.
      row.querySelector('.status').textContent = event.status;
      refreshSoon(view);
    }
  };
  onOperationEvent(listener);
  // Events come only from this process; a batch run by `fwu` elsewhere,
  // and the counts, are kept live by reading the board again.
  view.timer = setInterval(() => refreshSoon(view), BOARD_REFRESH_MS);
  return () => {
    view.stopped = true;
    clearInterval(view.timer);
  };
}

/** Reads the board again unless a read is under way. */
function refreshSoon(view) {
  if (view.refreshing || view.stopped) return;
  view.refreshing = true;
  paintBoard(view).catch(complain).finally(() => { view.refreshing = false; });
}

/** Reads a batch's board and paints it, keeping the focus where it was. */
async function paintBoard(view) {
  const { main, id } = view;
  const data = await call('batch_board', { id });
  if (view.stopped) return;
  const { batch, summary } = data;
  const focused = document.activeElement && document.activeElement.id;
  const steer = (command, done) => async () => {
    try {
      await call(command, { id });
      say(done);
      await paintBoard(view);
    } catch (error) {
      complain(error);
    }
  };
  const buttons = h('div', { class: 'buttons' });
  if (summary.state === 'running') {
    buttons.append(h('button', { type: 'button', id: 'batch-pause', text: 'Pause',
      onclick: steer('pause_batch', `Batch ${id} paused: running operations finish.`) }));
  }
  if (summary.state === 'paused') {
    buttons.append(h('button', { type: 'button', id: 'batch-resume', text: 'Resume',
      onclick: steer('resume_batch', `Batch ${id} resumed.`) }));
  }
  if (data.cancellable) {
    const cancel = async () => {
      const sure = await confirmAction(`Cancel batch ${id}?`,
        'Devices not yet flashing are cancelled; devices already flashing still reach '
        + 'their verdict.', 'Cancel the batch', 'Keep it running');
      if (sure) await steer('cancel_batch', `Batch ${id} cancelled.`)();
    };
    buttons.append(h('button', { type: 'button', id: 'batch-cancel', class: 'danger',
      text: 'Cancel batch', onclick: cancel }));
  }
  buttons.append(h('button', { type: 'button', id: 'batch-report', text: 'Report…',
    onclick: () => showReport(id).catch(complain) }));
  const live = summary.status === 'running';
  replace(main,
    h('p', { class: 'breadcrumb' }, h('a', { href: '#/batch', text: 'Mass upgrade' }), ' › ',
      `Batch ${id}`),
    h('h2', { text: `Batch ${id}: ${batch.category} ${batch.version}` }),
    h('p', { id: 'batch-summary', 'aria-live': live ? 'polite' : 'off' }, 'Status ',
      h('strong', { id: 'batch-status', text: summary.status }),
      ` · ${summary.total} devices · ${summary.success + summary.not_needed} done · `
      + `${summary.in_progress} running · ${summary.pending} waiting · `
      + `${summary.failed} failed · ${summary.aborted} aborted · ${summary.cancelled} cancelled`
      + ` · ${summary.skipped} left out · started ${formatTime(batch.created_at)}`,
      summary.pause_reason ? ` · paused: ${summary.pause_reason}` : ''),
    buttons,
    h('table', { id: 'batch-board' },
      h('thead', {}, h('tr', {}, ['Device', 'Operation', 'Status', 'Stage', 'Progress']
        .map((title) => h('th', { scope: 'col', text: title })))),
      h('tbody', {}, data.operations.map((operation) => h('tr', {
        'data-operation': operation.id },
      h('td', {}, h('a', { href: `#/device/${encodeURIComponent(operation.device)}`,
        text: operation.device })),
      h('td', { text: String(operation.id) }),
      h('td', { class: 'status', text: operation.status }),
      h('td', { class: 'stage', text: operation.stage }),
      h('td', {}, h('progress', { max: 100, value: operation.progress,
        'aria-label': `Progress of ${operation.device}` })))))));
  if (focused) {
    const again = document.getElementById(focused);
    if (again) again.focus();
  }
}

/**
 * The batch's report in a dialog: one row per device, and a way to save it
 * as a web page for a customer, at a typed path or one picked in a dialog.
 */
async function showReport(id) {
  const rows = await call('batch_report', { id });
  const path = h('input', { id: 'report-path', autocomplete: 'off',
    placeholder: `/home/me/batch-${id}-report.html` });
  const pick = h('button', { type: 'button', id: 'report-pick', text: 'Choose file…' });
  const save = h('button', { type: 'button', id: 'report-save', class: 'primary',
    text: 'Save as web page' });
  const close = h('button', { type: 'button', id: 'report-close', text: 'Close' });
  const message = h('p', { id: 'report-message', role: 'status' });
  const dialog = h('dialog', { id: 'report-dialog', class: 'wide',
    'aria-labelledby': 'report-title' },
  h('h2', { id: 'report-title', text: `Report of batch ${id}` }),
  h('div', { class: 'table-scroller short' },
    h('table', { id: 'report-table' },
      h('thead', {}, h('tr', {}, ['Device', 'Site', 'Before', 'After', 'Status', 'Duration',
        'Reason'].map((title) => h('th', { scope: 'col', text: title })))),
      h('tbody', {}, rows.map((row) => h('tr', {},
        h('td', { text: row.device }), h('td', { text: row.site || '–' }),
        h('td', { text: row.firmware_before || '–' }),
        h('td', { text: row.firmware_after || '–' }),
        h('td', { text: row.status }),
        h('td', { text: row.duration_seconds === null ? '–' : `${row.duration_seconds} s` }),
        h('td', { text: row.reason || '' })))))),
  field('Save to', path, 'A path on this machine, or choose one.'),
  h('div', { class: 'buttons' }, pick, save, close),
  message);
  pick.addEventListener('click', async () => {
    try {
      const chosen = await call('pick_save_file', { kind: 'html',
        suggested: `batch-${id}-report.html` });
      if (chosen) path.value = chosen;
    } catch (error) {
      message.textContent = errorText(error);
    }
  });
  save.addEventListener('click', async () => {
    if (!path.value.trim()) {
      message.textContent = 'Give a path or choose a file first.';
      path.focus();
      return;
    }
    try {
      const written = await call('save_batch_report', { id, path: path.value.trim() });
      message.textContent = `Report written to ${written}.`;
    } catch (error) {
      message.textContent = errorText(error);
    }
  });
  close.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => dialog.remove());
  // Outside the view: the board repaints itself while the dialog is open.
  document.body.append(dialog);
  dialog.showModal();
}
