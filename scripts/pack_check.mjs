// Packs every workspace package with `npm pack`, installs the tarballs into a fresh temporary
// project and imports each one there (ESM and CJS), runs their bins and loads the embedded
// backbone from the installed @png/pipeline, as a user of the published packages would.
//   node scripts/pack_check.mjs        (after `npm run build`)
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const packagesDir = path.join(root, 'packages');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'png-pack-'));
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

try {
  const packages = fs
    .readdirSync(packagesDir)
    .map((d) => path.join(packagesDir, d))
    .filter((d) => fs.existsSync(path.join(d, 'package.json')))
    .map((dir) => ({ dir, manifest: JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) }));
  const tarballs = [];
  for (const { dir, manifest } of packages) {
    if (!fs.existsSync(path.join(dir, 'dist'))) throw new Error(`${manifest.name}: no dist/; run npm run build first`);
    const [info] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', tmp], dir));
    const files = info.files.map((f) => f.path);
    const stray = files.filter((f) => /\.test\.|(^|\/)src\//.test(f));
    if (stray.length) throw new Error(`${manifest.name}: the tarball ships ${stray.join(', ')}`);
    tarballs.push(path.join(tmp, info.filename));
    console.log(`packed ${info.filename}: ${files.length} files, ${(info.size / 1024).toFixed(0)} KiB`);
  }
  const app = path.join(tmp, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...tarballs, '@tensorflow/tfjs-backend-wasm@4.22.0'], app); // a backend, as a user adds one
  for (const { manifest } of packages) {
    const esm = `import * as m from '${manifest.name}'; if (!Object.keys(m).length) throw new Error('no exports'); console.log('${manifest.name} (esm):', Object.keys(m).length, 'exports');`;
    console.log(run('node', ['--input-type=module', '-e', esm], app).trim());
    const cjs = `const m = require('${manifest.name}'); if (!Object.keys(m).length) throw new Error('no exports'); console.log('${manifest.name} (cjs):', Object.keys(m).length, 'exports');`;
    console.log(run('node', ['-e', cjs], app).trim());
  }
  // the bins run from the install, and `png` finds the embedded backbone shipped beside it
  for (const { manifest } of packages) {
    for (const bin of Object.keys(manifest.bin ?? {})) {
      const help = run(path.join(app, 'node_modules', '.bin', bin), ['--help'], app);
      if (!help.startsWith(`Usage: ${bin} `)) throw new Error(`${manifest.name}: '${bin} --help' printed ${JSON.stringify(help.slice(0, 80))}`);
      console.log(`${bin} --help: ok`);
    }
  }
  const embedded = run(
    'node',
    [
      '--input-type=module',
      '-e',
      "import { DiffusionBackbone } from '@png/diffusion-backbone'; import { setBackend } from '@png/core'; import { createRequire } from 'node:module'; import * as path from 'node:path'; await setBackend('wasm'); const dir = path.dirname(createRequire(import.meta.url).resolve('@png/pipeline/models/png-tiny-sd/model_index.json')); const b = await DiffusionBackbone.fromPretrained(dir); console.log('embedded backbone loads from the installed package:', b.unet.numParameters(), 'UNet parameters'); b.dispose();",
    ],
    app,
  );
  console.log(embedded.trim());
  console.log(`pack check passed for ${packages.length} packages`);
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
