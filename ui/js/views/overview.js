// The fleet overview: how many devices run each firmware, as a chart, the
// upgrade operations still running, and on first run the guided tour.

import { call } from '../api.js';
import { appInfo, complain, onOperationEvent, say } from '../app.js';
import { h, replace, svg } from '../dom.js';
import { batchesTable } from './batch.js';

/** Operations shown as running: those without a verdict. */
const RUNNING = new Set(['pending', 'in-progress']);

export async function render(main) {
  const [devices, operations, tour, batches] = await Promise.all([
    call('list_devices'),
    call('recent_operations', { limit: 500 }),
    call('tour_status'),
    call('list_batches'),
  ]);
  const runningBatches = batches.filter((b) => b.status === 'running' || b.status === 'paused');
  const running = operations.filter((operation) => RUNNING.has(operation.status));
  const empty = devices.length === 0;

  replace(main,
    h('h2', { text: 'Fleet overview' }),
    (appInfo.first_run || tour.running || empty) ? tourPanel(tour) : null,
    h('section', { 'aria-labelledby': 'chart-title' },
      h('h3', { id: 'chart-title', text: 'Devices by firmware version' }),
      empty ? h('p', { text: 'No devices yet: add them in the Devices view.' })
        : firmwareChart(devices)),
    h('section', { 'aria-labelledby': 'batches-running-title' },
      h('h3', { id: 'batches-running-title', text: 'Running batches' }),
      runningBatches.length ? batchesTable(runningBatches)
        : h('p', { text: 'No batch is running.' })),
    h('section', { 'aria-labelledby': 'running-title' },
      h('h3', { id: 'running-title', text: 'Running upgrade operations' }),
      runningTable(running)));

  onOperationEvent((event) => {
    const row = main.querySelector(`tr[data-operation="${event.operation}"]`);
    if (!row) return;
    if (event.kind === 'progress') {
      row.querySelector('progress').value = event.progress;
      row.querySelector('.stage').textContent = event.stage;
    } else if (event.kind === 'status') {
      row.querySelector('.status').textContent = event.status;
    }
  });
}

/** Counts devices by what they run; devices never probed count as unknown. */
function countByFirmware(devices) {
  const counts = new Map();
  for (const device of devices) {
    const firmware = device.os_identifier || 'unknown (not probed yet)';
    counts.set(firmware, (counts.get(firmware) || 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1]);
}

/** A horizontal bar chart in SVG, with the same figures as a table. */
function firmwareChart(devices) {
  const counts = countByFirmware(devices);
  const max = Math.max(...counts.map(([, count]) => count));
  const barHeight = 28;
  const labelWidth = 320;
  const width = 860;
  const height = counts.length * (barHeight + 8) + 8;
  const chart = svg('svg', {
    class: 'chart',
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-labelledby': 'chart-title',
  });
  counts.forEach(([firmware, count], index) => {
    const y = 8 + index * (barHeight + 8);
    const barWidth = Math.max(2, ((width - labelWidth - 80) * count) / max);
    chart.append(
      svg('text', { x: labelWidth - 8, y: y + barHeight * 0.68, class: 'chart-label',
        'text-anchor': 'end', text: firmware }),
      svg('rect', { x: labelWidth, y, width: barWidth, height: barHeight, rx: 3,
        class: 'chart-bar' }, svg('title', { text: `${firmware}: ${count}` })),
      svg('text', { x: labelWidth + barWidth + 8, y: y + barHeight * 0.68,
        class: 'chart-value', text: String(count) }));
  });
  return h('div', { id: 'firmware-chart' },
    chart,
    h('details', {},
      h('summary', { text: 'The same figures as a table' }),
      h('table', {},
        h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Firmware' }),
          h('th', { scope: 'col', text: 'Devices' }))),
        h('tbody', {}, counts.map(([firmware, count]) =>
          h('tr', {}, h('td', { text: firmware }), h('td', { text: String(count) })))))));
}

function runningTable(running) {
  if (running.length === 0) {
    return h('p', { id: 'running-none', text: 'No upgrade operation is running.' });
  }
  return h('table', { id: 'running-operations' },
    h('thead', {}, h('tr', {},
      ['Operation', 'Device', 'Batch', 'Status', 'Stage', 'Progress'].map((title) =>
        h('th', { scope: 'col', text: title })))),
    h('tbody', {}, running.map((operation) =>
      h('tr', { 'data-operation': operation.id },
        h('td', { text: String(operation.id) }),
        h('td', {}, h('a', { href: `#/device/${encodeURIComponent(operation.device)}`,
          text: operation.device })),
        h('td', { text: operation.batch_id ? String(operation.batch_id) : '–' }),
        h('td', { class: 'status', text: operation.status }),
        h('td', { class: 'stage', text: operation.stage }),
        h('td', {}, h('progress', { max: 100, value: operation.progress,
          'aria-label': `Progress of operation ${operation.id}` }))))));
}

/** The guided tour: simulated devices and a sample image (Linux only). */
function tourPanel(tour) {
  const panel = h('section', { id: 'tour', class: 'panel', 'aria-labelledby': 'tour-title' });
  const steps = h('ol', { class: 'tour-steps' },
    h('li', {}, 'Firmware: see the sample image of build WiFi 24.10.0 and the metadata '
      + 'read from it.'),
    h('li', {}, 'Devices: probe ', h('code', { text: 'tour-ap1' }),
      '; accept its host key after comparing the fingerprint.'),
    h('li', {}, 'Open ', h('code', { text: 'tour-ap1' }),
      ', choose the 24.10.0 image and start the upgrade: watch upload, flash, reboot '
      + 'and verification.'),
    h('li', {}, 'Come back here: the chart shows the device on its new firmware.'));

  const start = h('button', { id: 'tour-start', class: 'primary', type: 'button',
    text: 'Start the guided tour' });
  const stop = h('button', { id: 'tour-stop', type: 'button', text: 'Stop the guided tour' });
  start.addEventListener('click', async () => {
    start.disabled = true;
    say('Starting three simulated OpenWrt devices…');
    try {
      await call('start_tour');
      say('The guided tour is ready: three simulated devices and a sample image.');
      location.hash = '#/devices';
    } catch (error) {
      complain(error);
      start.disabled = false;
    }
  });
  stop.addEventListener('click', async () => {
    try {
      await call('stop_tour');
      say('The guided tour stopped; its devices are switched off.');
      location.reload();
    } catch (error) {
      complain(error);
    }
  });

  return replace(panel,
    h('h3', { id: 'tour-title', text: 'Guided tour' }),
    tour.running
      ? h('p', { text: `Running with simulated devices ${tour.devices.join(', ')}.` })
      : h('p', { text: 'New here? Try the whole flow on simulated OpenWrt devices that run '
        + 'on this machine only, with a sample image. It takes about two minutes.' }),
    steps,
    tour.supported
      ? h('div', { class: 'buttons' }, tour.running ? stop : start)
      : h('p', { text: 'The simulated devices run on Linux only.' }));
}
