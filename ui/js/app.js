// The page's entry: routes the address's hash to a view, shows messages,
// and hands engine events to whichever view is listening.
//
// Routes: #/overview, #/firmware, #/devices, #/device/<name>, #/batch,
// #/batch/<id>, #/settings.

import { call, errorText, listen } from './api.js';
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

async function start() {
  appInfo = await call('app_info');
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
