// The devices view's tools for many devices at once: import from a CSV
// file (every refused row shown with its line), export to one, discover
// OpenWrt devices on an address range and add the chosen ones with the
// host keys the scan saw, and probe a whole site or tag with one line per
// device as each answers.

import { call, errorText, listen } from '../api.js';
import { complain, say } from '../app.js';
import { field, h, replace } from '../dom.js';

/** The panels, in the order the view shows them; `refresh` reloads the table. */
export function inventoryPanels(refresh) {
  return h('div', { class: 'inventory' },
    importPanel(refresh), exportPanel(), discoverPanel(refresh), probePanel(refresh));
}

/** A path field with a button that fills it from a native file dialog. */
function pathField(id, label, hint, pick) {
  const input = h('input', { id, autocomplete: 'off' });
  const choose = h('button', { type: 'button', id: `${id}-pick`, text: 'Choose file…' });
  choose.addEventListener('click', async () => {
    try {
      const chosen = await pick();
      if (chosen) input.value = chosen;
    } catch (error) {
      complain(error);
    }
  });
  return { input, element: h('div', { class: 'columns' }, field(label, input, hint), choose) };
}

function importPanel(refresh) {
  const path = pathField('csv-import-path', 'CSV file', 'Columns: name, host, alternate_hosts, '
    + 'port, user, site, tags, credential, key_file; only name and host are required.',
  () => call('pick_csv_file'));
  const strict = h('input', { id: 'csv-import-strict', type: 'checkbox' });
  const result = h('div', { id: 'csv-import-result', role: 'status' });
  const form = h('form', { id: 'csv-import-form' },
    path.element,
    h('div', { class: 'check' }, strict, h('label', { for: strict.id,
      text: 'Strict: import nothing if any row is refused' })),
    h('div', { class: 'buttons' },
      h('button', { type: 'submit', id: 'csv-import-submit', class: 'primary',
        text: 'Import devices' })),
    result);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const report = await call('import_devices_csv', { path: path.input.value.trim(),
        strict: strict.checked });
      const verdict = report.imported
        ? `Imported ${report.devices.length} device(s); ${report.refused.length} row(s) refused.`
        : `Imported nothing: ${report.refused.length} row(s) refused`
          + `${strict.checked && report.refused.length ? ' (strict)' : ''}.`;
      replace(result,
        h('p', { id: 'csv-import-verdict', text: verdict }),
        report.refused.length ? h('table', { id: 'csv-refused' },
          h('caption', { text: 'Refused rows' }),
          h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Line' }),
            h('th', { scope: 'col', text: 'Why' }))),
          h('tbody', {}, report.refused.map((row) => h('tr', { 'data-line': row.line },
            h('td', { text: String(row.line) }), h('td', { text: row.reason }))))) : null);
      say(verdict);
      if (report.imported) await refresh();
    } catch (error) {
      replace(result, h('p', { class: 'error', text: errorText(error) }));
      complain(error);
    }
  });
  return h('details', { id: 'csv-import', class: 'panel' },
    h('summary', { text: 'Import devices from a CSV file' }), form);
}

function exportPanel() {
  const path = pathField('csv-export-path', 'Save to', 'The file is replaced if it exists.',
    () => call('pick_save_file', { kind: 'csv', suggested: 'devices.csv' }));
  const result = h('p', { id: 'csv-export-result', role: 'status' });
  const form = h('form', { id: 'csv-export-form' },
    path.element,
    h('div', { class: 'buttons' },
      h('button', { type: 'submit', id: 'csv-export-submit', text: 'Export devices' })),
    result);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const report = await call('export_devices_csv', { path: path.input.value.trim() });
      result.textContent = `Exported ${report.devices} device(s) to ${report.path}.`
        + (report.warnings.length ? ` ${report.warnings.join(' ')}` : '');
    } catch (error) {
      result.textContent = errorText(error);
    }
  });
  return h('details', { id: 'csv-export', class: 'panel' },
    h('summary', { text: 'Export devices to a CSV file' }), form);
}

function discoverPanel(refresh) {
  const input = (id, props = {}) => h('input', { id, autocomplete: 'off', ...props });
  const range = input('discover-range', { required: true, placeholder: '192.0.2.0/24' });
  const port = input('discover-port', { type: 'number', min: 1, max: 65535, value: '22' });
  const user = input('discover-user', { value: 'root' });
  const method = h('select', { id: 'discover-login' },
    h('option', { value: 'shared-password', text: 'Shared password entry in the keyring' }),
    h('option', { value: 'key-file', text: 'Private key file' }),
    h('option', { value: 'agent', text: 'SSH agent' }));
  const entry = input('discover-entry');
  const keyFile = input('discover-key-file');
  const limit = input('discover-limit', { type: 'number', min: 1, max: 600, value: '30' });
  const logins = {
    'shared-password': field('Keyring entry', entry, 'Set it under Settings, credentials.'),
    'key-file': field('Key file', keyFile, 'A key without passphrase.'),
    agent: h('p', { class: 'hint', text: 'The keys of the running SSH agent are offered.' }),
  };
  const showLogin = () => {
    for (const [key, element] of Object.entries(logins)) element.hidden = key !== method.value;
  };
  method.addEventListener('change', showLogin);
  showLogin();
  const found = h('div', { id: 'discover-result' });
  const scan = h('button', { type: 'submit', id: 'discover-submit', class: 'primary',
    text: 'Scan' });
  const form = h('form', { id: 'discover-form' },
    h('div', { class: 'columns' },
      h('div', {},
        field('Address range', range, 'A CIDR block (192.0.2.0/24) or a range (192.0.2.5-40).'),
        field('SSH port', port),
        field('User', user),
        field('Time limit (seconds)', limit, 'The scan stops then, finished or not.')),
      h('div', {}, field('Login', method), Object.values(logins))),
    h('div', { class: 'buttons' }, scan),
    found);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const login = { method: method.value };
    if (method.value === 'shared-password') login.entry = entry.value.trim();
    if (method.value === 'key-file') login.path = keyFile.value.trim();
    scan.disabled = true;
    say(`Scanning ${range.value.trim()}…`);
    try {
      const discovery = await call('discover_devices', { request: {
        range: range.value.trim(), port: Number(port.value) || 22,
        user: user.value.trim() || 'root', login, time_limit: Number(limit.value) || 30 } });
      replace(found, discoveryResult(discovery, refresh));
      say(`Scanned ${discovery.scanned} of ${discovery.total} addresses: `
        + `${discovery.devices.length} OpenWrt device(s), ${discovery.others.length} other `
        + `SSH server(s)${discovery.complete ? '' : '; the time limit stopped the scan'}.`);
    } catch (error) {
      complain(error);
    } finally {
      scan.disabled = false;
    }
  });
  return h('details', { id: 'discover', class: 'panel' },
    h('summary', { text: 'Discover devices on an address range' }), form);
}

/** The devices a scan found, each with its fingerprint and a box to add it. */
function discoveryResult(discovery, refresh) {
  const rows = discovery.devices.map((device) => {
    const identity = device.identity || {};
    const addable = Boolean(device.identity && device.host_key);
    const box = h('input', { type: 'checkbox', id: `discover-add-${device.address}`,
      value: device.address, name: 'discover-add', checked: addable, disabled: !addable,
      'aria-label': `Add the device at ${device.address}` });
    return h('tr', { 'data-address': device.address },
      h('td', {}, box),
      h('td', { text: device.address }),
      h('td', { text: device.hostname || '–' }),
      h('td', { text: identity.board || '?' }),
      h('td', { text: identity.model || '?' }),
      h('td', { text: identity.os_identifier || '?' }),
      h('td', {}, h('code', { class: 'fingerprint', text: device.host_key_fingerprint || '?' })),
      h('td', { text: device.note || '' }));
  });
  const others = discovery.others.map((other) => h('li', {},
    `${other.address}: ${other.note || 'not OpenWrt'}`
    + (other.host_key_fingerprint ? ` (${other.host_key_fingerprint})` : '')));
  const site = h('input', { id: 'discover-site', autocomplete: 'off' });
  const tags = h('input', { id: 'discover-tags', autocomplete: 'off' });
  const add = h('button', { type: 'button', id: 'discover-add', class: 'primary',
    text: 'Add the chosen devices and pin their host keys' });
  const outcome = h('ul', { id: 'discover-added', class: 'result-lines' });
  add.addEventListener('click', async () => {
    const addresses = [...add.closest('#discover-result')
      .querySelectorAll('input[name=discover-add]:checked')].map((box) => box.value);
    if (addresses.length === 0) {
      say('Choose the devices to add first.');
      return;
    }
    try {
      const additions = await call('add_discovered', { addresses,
        site: site.value.trim() || null,
        tags: tags.value.split(',').map((tag) => tag.trim()).filter(Boolean) });
      replace(outcome, additions.map((addition) => h('li', {
        class: addition.device ? '' : 'bad' }, addition.device
        ? `${addition.address}: added as ${addition.device}`
        : `${addition.address}: not added, ${addition.skipped}`)));
      const added = additions.filter((addition) => addition.device).length;
      say(`${added} discovered device(s) added.`);
      if (added) await refresh();
    } catch (error) {
      complain(error);
    }
  });
  return [
    h('table', { id: 'discover-found' },
      h('caption', { text: `OpenWrt devices found in ${discovery.range} `
        + `(${discovery.elapsed_ms} ms)` }),
      h('thead', {}, h('tr', {}, ['Add', 'Address', 'Host name', 'Board', 'Model',
        'Firmware', 'Host key fingerprint', 'Note'].map((title) =>
        h('th', { scope: 'col', text: title })))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 8,
        text: 'No OpenWrt device answered.' })))),
    others.length ? h('details', {}, h('summary', { text: `Other SSH servers (${others.length})` }),
      h('ul', {}, others)) : null,
    h('p', { class: 'hint', text: 'Compare each fingerprint with the one the device shows on '
      + 'its own console: adding a device pins the key shown here.' }),
    h('div', { class: 'columns' }, field('Site for the added devices', site),
      field('Tags for the added devices', tags, 'Separated by commas.')),
    h('div', { class: 'buttons' }, add),
    outcome,
  ];
}

function probePanel(refresh) {
  const scope = h('select', { id: 'probe-scope' },
    h('option', { value: 'all', text: 'Every device' }),
    h('option', { value: 'site', text: 'The devices of a site' }),
    h('option', { value: 'tag', text: 'The devices with a tag' }));
  const name = h('input', { id: 'probe-name', autocomplete: 'off' });
  const nameField = field('Site or tag', name);
  const showName = () => { nameField.hidden = scope.value === 'all'; };
  scope.addEventListener('change', showName);
  showName();
  const lines = h('ol', { id: 'probe-lines', class: 'result-lines', role: 'log',
    'aria-label': 'Probe results, one line per device' });
  const verdict = h('p', { id: 'probe-verdict', role: 'status' });
  const run = h('button', { type: 'submit', id: 'probe-submit', class: 'primary',
    text: 'Probe' });
  const form = h('form', { id: 'probe-form' },
    h('div', { class: 'columns' }, field('Probe', scope), nameField),
    h('div', { class: 'buttons' }, run),
    verdict, lines);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    run.disabled = true;
    replace(lines);
    verdict.textContent = 'Probing…';
    // Lines come as each device answers; the command's result then
    // replaces them in name order.
    const stop = await listen('probe-outcome', (outcome) => lines.append(probeLine(outcome)));
    try {
      const outcomes = await call('probe_devices', {
        site: scope.value === 'site' ? name.value.trim() : null,
        tag: scope.value === 'tag' ? name.value.trim() : null,
      });
      replace(lines, outcomes.map(probeLine));
      const ok = outcomes.filter((outcome) => outcome.ok).length;
      const offline = outcomes.filter((outcome) => outcome.offline).length;
      verdict.textContent = `Probed ${outcomes.length} device(s): ${ok} answered, `
        + `${offline} offline, ${outcomes.length - ok - offline} failed otherwise.`;
      if (ok) await refresh();
    } catch (error) {
      verdict.textContent = errorText(error);
    } finally {
      stop();
      run.disabled = false;
    }
  });
  return h('details', { id: 'probe-many', class: 'panel' },
    h('summary', { text: 'Probe many devices' }), form);
}

/** One device's probe as one line. */
function probeLine(outcome) {
  const text = outcome.ok
    ? `${outcome.device}: ok, board ${outcome.board || '?'}, running `
      + `${outcome.os_identifier || '?'}, at ${outcome.address || '?'}`
    : `${outcome.device}: ${outcome.offline ? 'offline' : 'failed'}, ${outcome.error || '?'}`;
  return h('li', { 'data-device': outcome.device, class: outcome.ok ? '' : 'bad', text });
}
