// The firmware view: categories, their builds, and the images of each
// build with what was read from them. Images are added by dropping files
// on the window, through the platform's file dialog, or by typing a path.

import { call, listen } from '../api.js';
import { complain, say } from '../app.js';
import { field, formatBytes, formatTime, h, replace } from '../dom.js';

/** Stops listening to dropped files; replaced on each render. */
let stopDrop = null;

export async function render(main) {
  const catalogue = await call('firmware_catalogue');
  const buildChoices = catalogue.builds.map((build) => ({
    value: `${build.category}\u0000${build.version}`,
    label: `${build.category} ${build.version}`,
  }));

  replace(main,
    h('h2', { text: 'Firmware' }),
    importSection(buildChoices, () => render(main)),
    h('div', { class: 'columns' },
      categoryForm(() => render(main)),
      buildForm(catalogue.categories, () => render(main))),
    h('section', { 'aria-labelledby': 'catalogue-title' },
      h('h3', { id: 'catalogue-title', text: 'Categories, builds and images' }),
      catalogue.categories.length === 0
        ? h('p', { text: 'No category yet: add one above, such as "WiFi".' })
        : catalogue.categories.map((category) => categoryBlock(category, catalogue.builds))));

  // Files dropped anywhere on the window are imported into the chosen build.
  if (stopDrop) stopDrop();
  stopDrop = await listen('tauri://drag-drop', (drop) => {
    const paths = drop.paths || [];
    if (paths.length) importFiles(main, paths, () => render(main));
  });
  return () => {
    if (stopDrop) stopDrop();
    stopDrop = null;
  };
}

function importSection(buildChoices, refresh) {
  const build = h('select', { id: 'import-build', required: true },
    buildChoices.map((choice) => h('option', { value: choice.value, text: choice.label })));
  const path = h('input', { id: 'import-path', type: 'text', autocomplete: 'off',
    placeholder: '/path/to/openwrt-…-sysupgrade.bin' });
  const pick = h('button', { id: 'import-pick', type: 'button', text: 'Choose files…' });
  const form = h('form', { id: 'import-form', class: 'panel drop-zone' },
    h('h3', { text: 'Import images' }),
    h('p', { text: 'Drop image files on this window, choose them, or type a path.' }),
    field('Build', build),
    field('Image file path', path, 'Several paths may be separated by new lines.'),
    h('div', { class: 'buttons' },
      pick,
      h('button', { id: 'import-submit', type: 'submit', class: 'primary', text: 'Import' })));
  if (buildChoices.length === 0) {
    for (const control of [build, path, pick, form.querySelector('[type=submit]')]) {
      control.disabled = true;
    }
    form.append(h('p', { text: 'Add a category and a build first.' }));
  }
  pick.addEventListener('click', async () => {
    try {
      const files = await call('pick_image_files');
      if (files.length) await importFiles(form.closest('main'), files, refresh);
    } catch (error) {
      complain(error);
    }
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const files = path.value.split('\n').map((line) => line.trim()).filter(Boolean);
    if (files.length) await importFiles(form.closest('main'), files, refresh);
  });
  return form;
}

/** Imports files into the build chosen in the import form. */
async function importFiles(main, files, refresh) {
  const choice = main.querySelector('#import-build');
  if (!choice || !choice.value) {
    complain('choose a build to import into first');
    return;
  }
  const [category, version] = choice.value.split('\u0000');
  say(`Importing ${files.length} file(s) into ${category} ${version}…`);
  try {
    const outcomes = await call('import_images', { category, version, files });
    const failed = outcomes.filter((outcome) => outcome.error);
    await refresh();
    if (failed.length) {
      complain(failed.map((outcome) => `${outcome.file}: ${outcome.error}`).join('; '));
    } else {
      say(`Imported ${outcomes.length} image(s) into ${category} ${version}.`);
    }
  } catch (error) {
    complain(error);
  }
}

function categoryForm(refresh) {
  const name = h('input', { id: 'category-name', required: true, autocomplete: 'off' });
  const description = h('input', { id: 'category-description', autocomplete: 'off' });
  const form = h('form', { id: 'category-form', class: 'panel' },
    h('h3', { text: 'Add a category' }),
    field('Name', name, 'A family of firmware, such as "WiFi" or "LoRa gateway".'),
    field('Description', description),
    h('div', { class: 'buttons' },
      h('button', { type: 'submit', text: 'Add category' })));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await call('add_category', { name: name.value.trim(), description: description.value });
      say(`Category ${name.value.trim()} added.`);
      await refresh();
    } catch (error) {
      complain(error);
    }
  });
  return form;
}

function buildForm(categories, refresh) {
  const category = h('select', { id: 'build-category', required: true },
    categories.map((c) => h('option', { value: c.name, text: c.name })));
  const version = h('input', { id: 'build-version', required: true, autocomplete: 'off' });
  const os = h('input', { id: 'build-os', autocomplete: 'off' });
  const changelog = h('textarea', { id: 'build-changelog', rows: 3 });
  const form = h('form', { id: 'build-form', class: 'panel' },
    h('h3', { text: 'Add a build' }),
    field('Category', category),
    field('Version', version, 'Unique within the category, such as 24.10.0.'),
    field('OS identifier', os,
      'What devices running it report; filled from the first image with metadata when empty.'),
    field('Change log', changelog),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', text: 'Add build' })));
  if (categories.length === 0) {
    for (const control of form.querySelectorAll('input, select, textarea, button')) {
      control.disabled = true;
    }
  }
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await call('add_build', {
        category: category.value,
        version: version.value.trim(),
        osIdentifier: os.value.trim() || null,
        changelog: changelog.value,
      });
      say(`Build ${category.value} ${version.value.trim()} added.`);
      await refresh();
    } catch (error) {
      complain(error);
    }
  });
  return form;
}

function categoryBlock(category, builds) {
  const own = builds.filter((build) => build.category_id === category.id);
  return h('details', { class: 'category', open: true },
    h('summary', {}, h('strong', { text: category.name }),
      category.description ? ` — ${category.description}` : '',
      ` (${own.length} build${own.length === 1 ? '' : 's'})`),
    own.length === 0 ? h('p', { text: 'No build yet.' }) : own.map(buildBlock));
}

function buildBlock(build) {
  return h('section', { class: 'build', 'data-build': `${build.category} ${build.version}` },
    h('h4', { text: `${build.category} ${build.version}` }),
    h('p', { class: 'meta' },
      `OS identifier: ${build.os_identifier || '–'} · added ${formatTime(build.created_at)}`),
    build.changelog ? h('p', { class: 'changelog', text: build.changelog }) : null,
    build.images.length === 0
      ? h('p', { text: 'No image yet.' })
      : h('table', { class: 'images' },
        h('caption', { text: `Images of ${build.category} ${build.version}` }),
        h('thead', {}, h('tr', {},
          ['File', 'Type', 'Size', 'SHA-256', 'Boards', 'Metadata'].map((title) =>
            h('th', { scope: 'col', text: title })))),
        h('tbody', {}, build.images.map(imageRow))));
}

function imageRow(image) {
  return h('tr', { 'data-image': image.id },
    h('td', { class: 'file-name', text: image.file_name }),
    h('td', { text: image.type }),
    h('td', { text: formatBytes(image.size) }),
    h('td', {}, h('code', { title: image.sha256, text: `${image.sha256.slice(0, 16)}…` })),
    h('td', { text: image.boards.join(', ') || '–' }),
    h('td', {}, image.metadata
      ? h('details', {},
        h('summary', { text: metadataSummary(image.metadata) }),
        h('pre', { text: JSON.stringify(image.metadata, null, 2) }))
      : 'none (boards from the image type table)'));
}

/** One line from fwtool metadata: version, revision and target. */
function metadataSummary(metadata) {
  const version = metadata.version || {};
  return [version.dist, version.version, version.revision, version.target]
    .filter(Boolean).join(' ') || 'metadata';
}
