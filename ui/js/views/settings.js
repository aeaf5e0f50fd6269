// The settings view: every setting with what it governs, the keyring
// entries devices log in with, and the pinned host keys with their
// fingerprints. Values are checked by the engine when saved.

import { call } from '../api.js';
import { complain, say } from '../app.js';
import { confirmAction } from '../dialogs.js';
import { field, h, replace } from '../dom.js';

export async function render(main) {
  const [settings, credentials, hostKeys] = await Promise.all([
    call('list_settings'),
    call('list_credentials'),
    call('list_host_keys'),
  ]);
  const refresh = () => render(main);
  replace(main,
    h('h2', { text: 'Settings' }),
    settingsSection(settings, refresh),
    credentialsSection(credentials, refresh),
    hostKeysSection(hostKeys, refresh));
}

function settingsSection(settings, refresh) {
  return h('section', { 'aria-labelledby': 'settings-title' },
    h('h3', { id: 'settings-title', text: 'Timeouts, retries and limits' }),
    h('p', { class: 'hint', text: 'Values are JSON: a number, true or false, null where '
      + 'allowed, or a list. The command line (fwu settings) shares them.' }),
    h('table', { id: 'settings-table' },
      h('thead', {}, h('tr', {}, ['Setting', 'What it governs', 'Value', 'Actions']
        .map((title) => h('th', { scope: 'col', text: title })))),
      h('tbody', {}, settings.map((setting) => settingRow(setting, refresh)))));
}

function settingRow(setting, refresh) {
  const id = `setting-${setting.key.replace(/[^a-z0-9]+/gi, '-')}`;
  const value = h('input', { id, type: 'text', autocomplete: 'off',
    value: JSON.stringify(setting.value), 'aria-describedby': `${id}-description` });
  const save = h('button', { type: 'button', class: 'small', text: 'Save',
    'aria-label': `Save ${setting.key}` });
  const reset = h('button', { type: 'button', class: 'small', text: 'Default',
    'aria-label': `Reset ${setting.key} to its default`, disabled: !setting.stored });
  save.addEventListener('click', async () => {
    try {
      await call('set_setting', { key: setting.key, value: value.value });
      say(`${setting.key} saved.`);
      await refresh();
    } catch (error) {
      complain(error);
    }
  });
  reset.addEventListener('click', async () => {
    try {
      await call('unset_setting', { key: setting.key });
      say(`${setting.key} is back to its default.`);
      await refresh();
    } catch (error) {
      complain(error);
    }
  });
  value.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') save.click();
  });
  return h('tr', { 'data-setting': setting.key },
    h('th', { scope: 'row' }, h('label', { for: id }, h('code', { text: setting.key }))),
    h('td', { id: `${id}-description`, text: setting.description }),
    h('td', {}, value, setting.stored ? null : h('small', { class: 'hint', text: ' default' })),
    h('td', { class: 'actions' }, save, reset));
}

function credentialsSection(credentials, refresh) {
  const entry = h('input', { id: 'credential-entry', autocomplete: 'off', required: true });
  const secret = h('input', { id: 'credential-secret', type: 'password', required: true });
  const form = h('form', { id: 'credential-form' },
    field('Keyring entry', entry, 'A device\u2019s own entry is device/<name>/password.'),
    field('Password or passphrase', secret),
    h('div', { class: 'buttons' },
      h('button', { type: 'submit', text: 'Store in the keyring' })));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await call('set_credential', { entry: entry.value.trim(), secret: secret.value });
      secret.value = '';
      say(`Keyring entry ${entry.value.trim()} stored.`);
      await refresh();
    } catch (error) {
      complain(error);
    }
  });
  return h('section', { 'aria-labelledby': 'credentials-title' },
    h('h3', { id: 'credentials-title', text: 'Credentials in the OS keyring' }),
    h('p', { class: 'hint', text: 'Passwords never enter the catalogue; it names the entry.' }),
    credentials.length === 0
      ? h('p', { text: 'No device logs in with a keyring entry.' })
      : h('table', { id: 'credentials-table' },
        h('thead', {}, h('tr', {}, ['Entry', 'Devices', 'In the keyring']
          .map((title) => h('th', { scope: 'col', text: title })))),
        h('tbody', {}, credentials.map((row) => h('tr', {},
          h('td', {}, h('code', { text: row.entry })),
          h('td', { text: row.devices.join(', ') }),
          h('td', { text: row.present ? 'yes' : 'missing' }))))),
    h('div', { class: 'panel' }, form));
}

function hostKeysSection(hostKeys, refresh) {
  return h('section', { 'aria-labelledby': 'host-keys-title' },
    h('h3', { id: 'host-keys-title', text: 'Pinned host keys' }),
    hostKeys.length === 0
      ? h('p', { text: 'No host key is pinned yet: probing a device pins its key once '
        + 'you accept it.' })
      : h('table', { id: 'host-keys-table' },
        h('thead', {}, h('tr', {}, ['Device', 'Address', 'Algorithm', 'Fingerprint', 'Actions']
          .map((title) => h('th', { scope: 'col', text: title })))),
        h('tbody', {}, hostKeys.map((row) => {
          const forget = h('button', { type: 'button', class: 'small danger', text: 'Forget',
            'aria-label': `Forget the host key of ${row.device}` });
          forget.addEventListener('click', async () => {
            const sure = await confirmAction(`Forget the host key of ${row.device}?`,
              `Do this only after reinstalling ${row.device} yourself. The next connection `
              + 'shows the new key\u2019s fingerprint and asks you again.', 'Forget the key');
            if (!sure) return;
            try {
              await call('forget_host_key', { name: row.device });
              say(`The host key of ${row.device} is forgotten.`);
              await refresh();
            } catch (error) {
              complain(error);
            }
          });
          return h('tr', { 'data-device': row.device },
            h('td', { text: row.device }),
            h('td', { text: row.host }),
            h('td', { text: row.algorithm }),
            h('td', {}, h('code', { class: 'fingerprint', text: row.fingerprint })),
            h('td', {}, forget));
        }))));
}
