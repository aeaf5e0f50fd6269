// The devices view: every device in a sortable, filterable table that
// stays quick at tens of thousands of rows by putting in the page only the
// rows in sight (the rest is two spacer rows of the right height), plus
// adding and probing devices; the tools for many devices at once (CSV,
// discovery, probing a site or tag) are in `inventory.js`.

import { call } from '../api.js';
import { complain, say } from '../app.js';
import { withHostKeyCheck } from '../dialogs.js';
import { field, formatTime, h, replace } from '../dom.js';
import { inventoryPanels } from './inventory.js';

/** The height of one row in pixels; `styles.css` gives rows this height. */
const ROW_HEIGHT = 36;
/** Rows rendered beyond the visible ones on each side, for smooth scrolling. */
const OVERSCAN = 10;

const COLUMNS = [
  { key: 'name', title: 'Name' },
  { key: 'site', title: 'Site' },
  { key: 'tags', title: 'Tags' },
  { key: 'host', title: 'Address' },
  { key: 'board', title: 'Board' },
  { key: 'os_identifier', title: 'Firmware' },
  { key: 'last_seen', title: 'Last seen' },
];

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

/** Stops following the window's size; replaced on each render. */
let stopResize = null;

/** Whether the first paint of the list was reported to the shell. */
let firstPaintReported = false;

/** Adds to each row what filtering and sorting read. */
function prepare(rows) {
  for (const row of rows) {
    row.tags_text = row.tags.join(', ');
    row.haystack = [row.name, row.site, row.tags_text, row.host, row.board, row.model,
      row.os_identifier].filter(Boolean).join(' ').toLowerCase();
  }
  return rows;
}

export async function render(main) {
  const rows = prepare(await call('list_devices'));

  const filter = h('input', { id: 'device-filter', type: 'search', autocomplete: 'off',
    placeholder: 'name, site, tag, address, board or firmware' });
  const count = h('span', { id: 'device-count', role: 'status' });
  const scroller = h('div', { id: 'device-table-scroller', class: 'table-scroller',
    tabindex: 0, role: 'region', 'aria-label': 'Devices table, scrollable' });
  const body = h('tbody', {});
  const head = h('tr', {});
  const table = h('table', { id: 'device-table', class: 'fixed-rows' },
    h('thead', {}, head), body);
  scroller.append(table);

  const view = { rows, shown: rows, sortKey: 'name', ascending: true, body, scroller, table };
  for (const column of COLUMNS) {
    const button = h('button', { type: 'button', class: 'sort', text: column.title });
    const th = h('th', { scope: 'col', 'data-key': column.key, 'aria-sort': 'none' }, button);
    button.addEventListener('click', () => {
      view.ascending = view.sortKey === column.key ? !view.ascending : true;
      view.sortKey = column.key;
      update(view, filter.value, count, head);
    });
    head.append(th);
  }
  head.append(h('th', { scope: 'col', text: 'Actions' }));

  replace(main,
    h('h2', { text: 'Devices' }),
    addDeviceForm(() => render(main)),
    inventoryPanels(async () => {
      view.rows = prepare(await call('list_devices'));
      update(view, filter.value, count, head);
    }),
    h('div', { class: 'toolbar' },
      field('Filter devices', filter), count),
    scroller);

  let pending = false;
  const paintSoon = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      paint(view);
    });
  };
  scroller.addEventListener('scroll', paintSoon);
  if (stopResize) stopResize();
  window.addEventListener('resize', paintSoon);
  stopResize = () => window.removeEventListener('resize', paintSoon);
  filter.addEventListener('input', () => update(view, filter.value, count, head));
  update(view, '', count, head);

  if (!firstPaintReported) {
    // The second frame callback runs after the first frame was painted.
    requestAnimationFrame(() => requestAnimationFrame(() => {
      firstPaintReported = true;
      call('first_painted', { devices: rows.length }).catch(complain);
    }));
  }
  return () => {
    if (stopResize) stopResize();
    stopResize = null;
  };
}

/** Filters and sorts the rows, then paints what is in sight. */
function update(view, filterText, count, head) {
  const words = filterText.toLowerCase().split(/\s+/).filter(Boolean);
  const shown = words.length
    ? view.rows.filter((row) => words.every((word) => row.haystack.includes(word)))
    : view.rows.slice();
  const key = view.sortKey === 'tags' ? 'tags_text' : view.sortKey;
  const direction = view.ascending ? 1 : -1;
  shown.sort((a, b) => direction * collator.compare(a[key] || '', b[key] || ''));
  view.shown = shown;
  for (const th of head.querySelectorAll('th[data-key]')) {
    th.setAttribute('aria-sort', th.dataset.key === view.sortKey
      ? (view.ascending ? 'ascending' : 'descending') : 'none');
  }
  view.table.setAttribute('aria-rowcount', String(shown.length + 1));
  count.textContent = `${shown.length} of ${view.rows.length} devices`;
  view.scroller.scrollTop = 0;
  paint(view);
}

/** Puts in the table the rows in sight and spacers for the rest. */
function paint(view) {
  const { shown, scroller, body } = view;
  const visible = Math.ceil((scroller.clientHeight || 600) / ROW_HEIGHT);
  const first = Math.max(0, Math.floor(scroller.scrollTop / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(shown.length, first + visible + 2 * OVERSCAN);
  const rows = [];
  rows.push(spacer(first * ROW_HEIGHT));
  for (let index = first; index < last; index += 1) {
    rows.push(deviceRow(shown[index], index));
  }
  rows.push(spacer((shown.length - last) * ROW_HEIGHT));
  if (shown.length === 0) {
    rows.push(h('tr', {}, h('td', { colspan: COLUMNS.length + 1,
      text: view.rows.length ? 'No device matches the filter.' : 'No device yet.' })));
  }
  body.replaceChildren(...rows);
}

function spacer(height) {
  const cell = h('td', { colspan: COLUMNS.length + 1 });
  // Set through the style object: the content security policy refuses
  // style attributes, not styles set by a script of the page.
  cell.style.height = `${height}px`;
  return h('tr', { class: 'spacer', 'aria-hidden': 'true' }, cell);
}

function deviceRow(row, index) {
  const probe = h('button', { type: 'button', class: 'small',
    'aria-label': `Probe ${row.name}`, text: 'Probe' });
  probe.addEventListener('click', () => probeDevice(row.name));
  return h('tr', { 'data-device': row.name, 'aria-rowindex': index + 2 },
    h('td', {}, h('a', { href: `#/device/${encodeURIComponent(row.name)}`, text: row.name })),
    h('td', { text: row.site || '–' }),
    h('td', { text: row.tags_text || '–' }),
    h('td', { text: row.host }),
    h('td', { text: row.board || '–' }),
    h('td', { class: 'firmware', text: row.os_identifier || 'unknown' }),
    h('td', { text: row.last_seen ? formatTime(row.last_seen) : 'never' }),
    h('td', {}, probe));
}

/** Probes a device, asking about its host key when it is new. */
export async function probeDevice(name) {
  say(`Probing ${name}…`);
  try {
    const probed = await withHostKeyCheck(name, () => call('probe_device', { name }));
    if (!probed) {
      say(`Probe of ${name} stopped: its host key was not accepted.`);
      return null;
    }
    const identity = probed.identity;
    say(`${name}: board ${identity.board || '?'}, running ${identity.os_identifier || '?'}, `
      + `host key ${probed.host_key_fingerprint}.`);
    const row = document.querySelector(`tr[data-device="${CSS.escape(name)}"] .firmware`);
    if (row) row.textContent = identity.os_identifier || 'unknown';
    return probed;
  } catch (error) {
    complain(error);
    return null;
  }
}

function addDeviceForm(refresh) {
  const input = (id, props = {}) => h('input', { id, autocomplete: 'off', ...props });
  const name = input('device-name', { required: true });
  const host = input('device-host', { required: true });
  const alternates = input('device-alternates');
  const port = input('device-port', { type: 'number', min: 1, max: 65535, value: '22' });
  const user = input('device-user', { value: 'root' });
  const method = h('select', { id: 'device-login' },
    h('option', { value: 'password', text: 'Password (kept in the OS keyring)' }),
    h('option', { value: 'shared-password', text: 'Shared password entry in the keyring' }),
    h('option', { value: 'key-file', text: 'Private key file' }),
    h('option', { value: 'agent', text: 'SSH agent' }));
  const password = input('device-password', { type: 'password' });
  const entry = input('device-entry');
  const keyFile = input('device-key-file');
  const passphrase = input('device-passphrase', { type: 'password' });
  const site = input('device-site');
  const tags = input('device-tags');

  const logins = {
    password: field('Password', password),
    'shared-password': field('Keyring entry', entry, 'For example site/acme/root.'),
    'key-file': h('div', {}, field('Key file', keyFile), field('Key passphrase', passphrase,
      'Leave empty for a key without one.')),
    agent: h('p', { class: 'hint', text: 'The keys of the running SSH agent are offered.' }),
  };
  const showLogin = () => {
    for (const [key, element] of Object.entries(logins)) element.hidden = key !== method.value;
  };
  method.addEventListener('change', showLogin);
  showLogin();

  const form = h('form', { id: 'add-device-form' },
    h('div', { class: 'columns' },
      h('div', {},
        field('Name', name),
        field('Address', host, 'Host name or IP address.'),
        field('Alternate addresses', alternates, 'Separated by commas.'),
        field('SSH port', port),
        field('User', user)),
      h('div', {},
        field('Login', method),
        Object.values(logins),
        field('Site', site, 'A customer or network.'),
        field('Tags', tags, 'Separated by commas.'))),
    h('div', { class: 'buttons' },
      h('button', { id: 'add-device-submit', type: 'submit', class: 'primary',
        text: 'Add device' })));

  const list = (text) => text.split(',').map((item) => item.trim()).filter(Boolean);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const login = { method: method.value };
    if (method.value === 'password') login.password = password.value;
    if (method.value === 'shared-password') login.entry = entry.value.trim();
    if (method.value === 'key-file') {
      login.path = keyFile.value.trim();
      login.passphrase = passphrase.value || null;
    }
    try {
      const added = await call('add_device', {
        device: {
          name: name.value.trim(),
          host: host.value.trim(),
          alternate_hosts: list(alternates.value),
          port: Number(port.value) || 22,
          user: user.value.trim() || 'root',
          login,
          site: site.value.trim() || null,
          tags: list(tags.value),
        },
      });
      say(`Device ${added.name} added; probe it to read its board and firmware.`);
      await refresh();
    } catch (error) {
      complain(error);
    }
  });

  return h('details', { id: 'add-device', class: 'panel' },
    h('summary', { text: 'Add a device' }), form);
}
