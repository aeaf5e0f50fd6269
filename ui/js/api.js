// The page's only way to the machine: the shell's commands and events.
// Every command name here is granted one by one in the app's capability;
// a command error arrives as { message, kind, fingerprint }.

const tauri = window.__TAURI__;

/** Calls a command of the shell; rejects with its error. */
export function call(command, args = {}) {
  return tauri.core.invoke(command, args);
}

/** Listens to a window event; resolves to a function that stops it. */
export function listen(event, handler) {
  return tauri.event.listen(event, (message) => handler(message.payload));
}

/** The words of any error a command returned. */
export function errorText(error) {
  if (error && typeof error === 'object' && 'message' in error) return error.message;
  return String(error);
}
