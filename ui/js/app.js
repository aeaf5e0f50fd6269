// The page's entry: routes the address's hash to a view, shows messages,
// and hands engine events to whichever view is listening.
//
// Routes: #/overview, #/firmware, #/devices, #/device/<name>, #/batch,
// #/batch/<id>, #/settings.

import { call, errorText, listen } from './api.js';
import { confirmAction } from './dialogs.js';
import * as overview from './views/overview.js';
import * as firmware from './views/firmware.js';
import * as devices from './views/devices.js';
import * as device from './views/device.js';
import * as settings from './views/settings.js';
import * as batch from './views/batch.js';

const views = { overview, firmware, devices, device, batch, settings };

/** Functions called with every engine event, while their view is shown. */
const operationListeners = new Set();

/** What the shell said at start: version, data directory, first run. */
export let appInfo = null;

let leaveView = null;

/** Shows a passing message in the status line. */
export function say(text) {
  document.getElementById('status-line').textContent = text;
  document.getElementById('error-line').hidden = true;
}

/** Shows an error until the next message. */
export function complain(error) {
  const line = document.getElementById('error-line');
  line.textContent = errorText(error);
  line.hidden = false;
}

/** Receives every engine event until the current view is left. */
export function onOperationEvent(listener) {
  operationListeners.add(listener);
}

/** Stops `listener` from receiving engine events. */
export function offOperationEvent(listener) {
  operationListeners.delete(listener);
}

async function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  const viewName = views[name] ? name : 'overview';
  const param = rest.length ? decodeURIComponent(rest.join('/')) : null;
  if (leaveView) leaveView();
  leaveView = null;
  operationListeners.clear();
  for (const link of document.querySelectorAll('nav a[data-view]')) {
    const current = link.dataset.view === viewName
      || (viewName === 'device' && link.dataset.view === 'devices');
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const main = document.getElementById('view');
  main.dataset.view = viewName;
  try {
    leaveView = (await views[viewName].render(main, param)) || null;
  } catch (error) {
    complain(error);
  }
}

/** Moves focus to the view after the user chose it, for screen readers. */
function focusView(event) {
  if (event.target.closest('nav a')) {
    requestAnimationFrame(() => document.getElementById('view').focus());
  }
}

/** Lists the work this start took up from a process that ended. */
async function showResumed() {
  const resumed = await call('resumed_work');
  if (resumed.length === 0) return;
  const list = document.getElementById('resumed-list');
  list.replaceChildren(...resumed.map((item) => {
    const link = document.createElement('a');
    link.href = item.kind === 'batch' ? `#/batch/${item.id}` : '#/overview';
    link.textContent = item.description;
    const entry = document.createElement('li');
    entry.dataset.kind = item.kind;
    entry.dataset.id = String(item.id);
    entry.append(link);
    return entry;
  }));
  const panel = document.getElementById('resumed');
  panel.hidden = false;
  document.getElementById('resumed-dismiss').addEventListener('click', () => {
    panel.hidden = true;
  }, { once: true });
}

/**
 * Asks before the window closes while work runs, saying what becomes of
 * each piece: the shell holds the close back until the user agrees.
 */
async function askBeforeClosing(work) {
  const lines = [];
  for (const operation of work.operations) {
    lines.push(operation.flashed
      ? `Device ${operation.device} is flashing (operation ${operation.id}): it reboots on its `
        + 'own, and the upgrade is resumed at the next start to verify it.'
      : `Device ${operation.device} is being upgraded (operation ${operation.id}) but has not `
        + 'started flashing: it stops, and nothing changes on the device.');
  }
  for (const id of work.batches) {
    lines.push(`Batch ${id} is running: devices already flashing reboot on their own, and the `
      + 'batch is resumed at the next start.');
  }
  const sure = await confirmAction('Close while upgrades run?', lines.join(' '),
    'Close the window', 'Keep it open');
  if (sure) await call('close_anyway');
  else say('The window stays open; the upgrades go on.');
}

async function start() {
  appInfo = await call('app_info');
  await listen('close-requested', (work) => { askBeforeClosing(work).catch(complain); });
  document.getElementById('quit').addEventListener('click', () => {
    call('quit').catch(complain);
  });
  showResumed().catch(complain);
  await listen('operation-event', (event) => {
    for (const listener of operationListeners) listener(event);
  });
  await listen('operation-run-error', (event) => {
    complain(`operation ${event.operation}: ${event.message}`);
    for (const listener of operationListeners) listener({ kind: 'run-error', ...event });
  });
  document.addEventListener('click', focusView);
  window.addEventListener('hashchange', route);
  if (!location.hash && appInfo.start_view) location.hash = `#/${appInfo.start_view}`;
  await route();
}

start().catch(complain);
