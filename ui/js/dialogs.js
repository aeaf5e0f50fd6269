// The dialogs that guard the device: an unknown host key asks the user
// with its fingerprint; a changed one is an alarm that offers no way on;
// risky actions ask for confirmation.

import { call } from './api.js';

/** Opens a `<dialog>` and resolves to the value of the button that closed it. */
function ask(dialog) {
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue), { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

/**
 * Asks a yes-or-no question; resolves to true for yes. The buttons say
 * what each answer does, since "Cancel" is ambiguous next to a cancel.
 */
export async function confirmAction(title, text, yesLabel, noLabel = 'Cancel') {
  const dialog = document.getElementById('confirm-dialog');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-yes').textContent = yesLabel;
  document.getElementById('confirm-no').textContent = noLabel;
  return (await ask(dialog)) === 'yes';
}

/** Shows the alarm of a changed host key. */
export async function hostKeyAlarm(error) {
  document.getElementById('host-key-alarm-text').textContent = error.message;
  await ask(document.getElementById('host-key-alarm'));
}

/**
 * Runs `action` (which talks to device `name`). If the device shows a host
 * key seen for the first time, asks the user; once accepted the key is
 * pinned and `action` runs again. A changed key raises the alarm. Resolves
 * to the action's result, or null when the user refused or the key
 * changed.
 */
export async function withHostKeyCheck(name, action) {
  try {
    return await action();
  } catch (error) {
    if (error && error.kind === 'host-key-changed') {
      await hostKeyAlarm(error);
      return null;
    }
    if (!error || error.kind !== 'host-key-unknown') throw error;
    document.getElementById('host-key-text').textContent =
      `Device ${name} presented a host key this catalogue has never seen: ${error.message}.`;
    document.getElementById('host-key-fingerprint').textContent = error.fingerprint;
    const answer = await ask(document.getElementById('host-key-dialog'));
    if (answer !== 'accept') return null;
    try {
      await call('accept_host_key', { name, fingerprint: error.fingerprint });
    } catch (acceptError) {
      if (acceptError && acceptError.kind === 'host-key-changed') {
        await hostKeyAlarm(acceptError);
        return null;
      }
      throw acceptError;
    }
    return action();
  }
}
