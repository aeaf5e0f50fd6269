// One device: what the catalogue knows of it, its firmware, an upgrade
// form with the sysupgrade options, and its upgrade operations with the
// live progress and log of the one selected. Cancel is offered only while
// the operation has not started flashing.

import { call } from '../api.js';
import { complain, offOperationEvent, onOperationEvent, say } from '../app.js';
import { withHostKeyCheck } from '../dialogs.js';
import { field, formatBytes, formatTime, h, replace } from '../dom.js';
import { SYSUPGRADE_OPTIONS } from '../options.js';
import { probeDevice } from './devices.js';

/** The engine event listener of the device shown, replaced on each render. */
let listener = null;

/** Statuses after which nothing changes any more. */
const FINAL = new Set(['success', 'not-needed', 'failed', 'aborted', 'cancelled']);

export async function render(main, name) {
  const detail = await call('device_detail', { name });
  const device = detail.device;
  const panel = h('section', { id: 'operation-panel', class: 'panel',
    'aria-labelledby': 'operation-title' });
  const live = { id: null, panel, device: name };

  const refresh = () => render(main, name);
  replace(main,
    h('p', { class: 'breadcrumb' }, h('a', { href: '#/devices', text: 'Devices' }), ' › ',
      device.name),
    h('h2', { text: `Device ${device.name}` }),
    h('div', { class: 'columns' },
      detailsList(detail, refresh),
      upgradeForm(detail, live, refresh)),
    panel,
    operationsTable(detail.operations, live));

  const current = detail.operations.find((operation) => !FINAL.has(operation.status))
    || detail.operations[0];
  if (current) await showOperation(live, current.id);
  else replace(panel, h('h3', { id: 'operation-title', text: 'Upgrade operation' }),
    h('p', { text: 'No upgrade operation yet.' }));

  if (listener) offOperationEvent(listener);
  listener = (event) => onEvent(live, event, refresh);
  onOperationEvent(listener);
}

function detailsList(detail, refresh) {
  const d = detail.device;
  const login = d.auth.method === 'password' ? `password (keyring entry ${d.auth.credential})`
    : d.auth.method === 'key' ? `key file ${d.auth.key_file}` : 'SSH agent';
  const items = [
    ['Address', [d.host, ...d.alternate_hosts].join(', ') + `, port ${d.port}`],
    ['User', d.user],
    ['Login', login],
    ['Site', d.site || '–'],
    ['Tags', d.tags.join(', ') || '–'],
    ['Board', d.board || 'unknown (probe the device)'],
    ['Model', d.model || '–'],
    ['Firmware', d.os_identifier || 'unknown'],
    ['Image', detail.firmware_image
      ? `${detail.firmware_image.file_name} `
        + `(${detail.firmware.installed ? 'installed' : 'planned'})`
      : '–'],
    ['MAC', d.mac || '–'],
    ['Uptime', d.uptime === null || d.uptime === undefined ? '–' : `${d.uptime} s`],
    ['Last seen', d.last_seen ? formatTime(d.last_seen) : 'never'],
    ['Host key', detail.host_key_fingerprint || 'not pinned yet'],
  ];
  const probe = h('button', { id: 'device-probe', type: 'button', text: 'Probe' });
  probe.addEventListener('click', async () => {
    if (await probeDevice(d.name)) await refresh();
  });
  return h('section', { class: 'panel', 'aria-labelledby': 'details-title' },
    h('h3', { id: 'details-title', text: 'Details' }),
    h('dl', { id: 'device-details' }, items.map(([term, value]) =>
      [h('dt', { text: term }), h('dd', { 'data-term': term, text: value })])),
    h('div', { class: 'buttons' }, probe));
}

function upgradeForm(detail, live, refresh) {
  const choices = detail.candidate_images;
  const image = h('select', { id: 'upgrade-image', required: true },
    choices.map((choice) => h('option', { value: String(choice.image.id),
      text: `${choice.category} ${choice.version} — ${choice.image.file_name}` })));
  const options = SYSUPGRADE_OPTIONS.map(([letter, label]) => {
    const box = h('input', { type: 'checkbox', id: `upgrade-option-${letter}`,
      value: letter, name: 'option' });
    return h('div', { class: 'check' }, box, h('label', { for: box.id, text: label }));
  });
  const force = h('input', { type: 'checkbox', id: 'upgrade-force' });
  const start = h('button', { id: 'upgrade-start', type: 'submit', class: 'primary',
    text: 'Start upgrade' });
  const form = h('form', { id: 'upgrade-form', class: 'panel' },
    h('h3', { text: 'Upgrade' }),
    choices.length
      ? field('Image', image, 'Images whose boards include this device\u2019s board.')
      : h('p', { text: detail.device.board
        ? `No image in the catalogue lists board ${detail.device.board}.`
        : 'Probe the device first: its board decides which images fit.' }),
    h('fieldset', {}, h('legend', { text: 'sysupgrade options' }), options),
    h('div', { class: 'check' }, force,
      h('label', { for: force.id, text: 'Flash even if the image does not list this board' })),
    h('div', { class: 'buttons' }, start));
  if (!choices.length) start.disabled = true;

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const letters = [...form.querySelectorAll('input[name=option]:checked')]
      .map((box) => box.value);
    start.disabled = true;
    try {
      const args = { device: detail.device.name, imageId: Number(image.value),
        options: letters, force: force.checked };
      const operation = await withHostKeyCheck(detail.device.name,
        () => call('start_upgrade', args));
      if (operation) {
        say(`Upgrade operation ${operation.id} started on ${detail.device.name}.`);
        await showOperation(live, operation.id);
      }
    } catch (error) {
      complain(error);
    } finally {
      start.disabled = false;
    }
  });
  return form;
}

function operationsTable(operations, live) {
  if (!operations.length) return null;
  return h('section', { 'aria-labelledby': 'operations-title' },
    h('h3', { id: 'operations-title', text: 'Upgrade operations' }),
    h('table', { id: 'device-operations' },
      h('thead', {}, h('tr', {}, ['Operation', 'Image', 'Status', 'Stage', 'Progress',
        'Started', 'Ended'].map((title) => h('th', { scope: 'col', text: title })))),
      h('tbody', {}, operations.map((operation) => {
        const open = h('button', { type: 'button', class: 'link',
          'aria-label': `Show operation ${operation.id}`, text: String(operation.id) });
        open.addEventListener('click', () => showOperation(live, operation.id));
        return h('tr', { 'data-operation': operation.id },
          h('td', {}, open),
          h('td', { text: String(operation.image_id) }),
          h('td', { text: operation.status }),
          h('td', { text: operation.stage }),
          h('td', { text: `${operation.progress}%` }),
          h('td', { text: formatTime(operation.created_at) }),
          h('td', { text: formatTime(operation.finished_at) }));
      }))));
}

/** Shows one operation, with its log, in the live panel. */
async function showOperation(live, id) {
  const detail = await call('operation_detail', { id });
  const operation = detail.operation;
  live.id = id;
  const cancel = h('button', { id: 'operation-cancel', type: 'button', text: 'Cancel upgrade' });
  cancel.addEventListener('click', async () => {
    try {
      await call('cancel_operation', { id });
      say(`Cancellation of operation ${id} requested; it stops before flashing.`);
    } catch (error) {
      complain(error);
    }
  });
  const log = h('ol', { id: 'operation-log', class: 'log', role: 'log',
    'aria-label': `Log of operation ${id}` },
  detail.log.map((line) => logLine(line.at, line.line)));
  replace(live.panel,
    h('h3', { id: 'operation-title', text: `Upgrade operation ${id}` }),
    h('p', {},
      'Status: ', h('strong', { id: 'operation-status', text: operation.status }),
      ' · stage ', h('span', { id: 'operation-stage', text: operation.stage }),
      ' · attempt ', h('span', { text: String(operation.attempts) })),
    h('div', { class: 'progress-line' },
      h('label', { for: 'operation-progress', text: 'Progress' }),
      h('progress', { id: 'operation-progress', max: 100, value: operation.progress }),
      h('span', { id: 'operation-percent', text: `${operation.progress}%` }),
      h('span', { id: 'operation-rate', class: 'hint' })),
    cancellable(operation) ? h('div', { class: 'buttons' }, cancel) : null,
    h('h4', { text: 'Log' }),
    log);
  log.scrollTop = log.scrollHeight;
}

/** Cancel is possible only before the flash, and only once. */
function cancellable(operation) {
  return !FINAL.has(operation.status) && !operation.flashed_at && !operation.cancel_requested;
}

function logLine(at, text) {
  return h('li', {}, h('time', { datetime: at, text: formatTime(at) }), ' ', text);
}

/** Applies an engine event to the panel when it is about the operation shown. */
async function onEvent(live, event, refresh) {
  if (event.operation !== live.id) return;
  const panel = live.panel;
  if (event.kind === 'log') {
    const log = panel.querySelector('#operation-log');
    log.append(logLine(new Date().toISOString(), event.line));
    log.scrollTop = log.scrollHeight;
  } else if (event.kind === 'upload') {
    panel.querySelector('#operation-rate').textContent =
      `${formatBytes(event.sent)} of ${formatBytes(event.total)} at `
      + `${formatBytes(event.bytes_per_second)}/s`;
  } else if (event.kind === 'progress') {
    panel.querySelector('#operation-progress').value = event.progress;
    panel.querySelector('#operation-percent').textContent = `${event.progress}%`;
    panel.querySelector('#operation-stage').textContent = event.stage;
    if (['flash', 'reconnect', 'verify', 'done'].includes(event.stage)) {
      // From the flash on, nothing may stop the device halfway.
      const cancel = panel.querySelector('#operation-cancel');
      if (cancel) cancel.closest('.buttons').remove();
    }
  } else if (event.kind === 'status') {
    panel.querySelector('#operation-status').textContent = event.status;
    if (FINAL.has(event.status)) {
      const cancel = panel.querySelector('#operation-cancel');
      if (cancel) cancel.closest('.buttons').remove();
      say(`Upgrade operation ${event.operation} on ${live.device}: ${event.status}.`);
      // The details (firmware, last seen) and the operations table changed.
      setTimeout(() => {
        if (live.id === event.operation && document.body.contains(panel)) refreshKeep(refresh);
      }, 300);
    }
  } else if (event.kind === 'run-error') {
    panel.querySelector('#operation-status').textContent = 'not run';
  }
}

/** Re-reads the view; errors go to the error line. */
function refreshKeep(refresh) {
  refresh().catch(complain);
}
