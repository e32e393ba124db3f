// Packs every workspace package with `npm pack` and checks them as their users get them:
// - every tarball installs into a fresh project (with tfjs packed from this repo's node_modules),
//   imports (ESM and CJS), runs its bins, and every README program (a ```js block that starts
//   with an import) runs there;
// - a project with only @png/eipa and what it depends on runs the README programs of core,
//   diffusion-backbone and eipa (its custom-head training step included) as ES modules and as
//   CommonJS, and esbuild and Vite bundle a consumer of the three for the browser without plugins;
// - the eipa training program runs on the @tensorflow/tfjs umbrella (fetched from the registry
//   once, then npm's cache) with one tfjs engine.
//   node scripts/pack_check.mjs        (after `npm run build`)
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const packagesDir = path.join(root, 'packages');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'png-pack-'));
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
/** The peers a user installs beside the packages, packed from this repository's node_modules. */
const TFJS = ['@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-cpu', '@tensorflow/tfjs-backend-wasm'];
/** @png/eipa and the workspace packages it depends on. */
const EIPA_CLOSURE = ['@png/eipa', '@png/diffusion-backbone', '@png/core', '@png/node-utils'];

/** A page's code that grounds with EIPA on a backbone fetched over HTTP. */
const BROWSER_CONSUMER = `import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { DiffusionBackbone, FeatureTaps, encodePhrases } from '@png/diffusion-backbone';
import { PhraseAdapter, attachEipa } from '@png/eipa';

export async function phraseStates(modelUrl, caption, spans) {
  await setBackend('wasm');
  const backbone = await DiffusionBackbone.fromUrl(modelUrl);
  const adapter = PhraseAdapter.create(backbone.unet, {}, { seed: 0 });
  const taps = new FeatureTaps(backbone.unet, { imageStride: backbone.vae.downsampleFactor });
  const eipa = attachEipa(backbone.unet, adapter, { levels: taps.levels });
  const phrases = encodePhrases(backbone.tokenizer, backbone.textEncoder, [{ caption, phrases: spans }], { maxPhrases: spans.length });
  const { outputs } = backbone.unet.forward(tf.zeros([1, 16, 16, 4]), 1, phrases.tensor, { encoderAttentionMask: phrases.mask, context: eipa.context(phrases) });
  return eipa.phraseStates(outputs, phrases);
}
`;

const pack = (dir) => {
  const [info] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', tmp], dir));
  return { file: path.join(tmp, info.filename), info };
};

const newProject = (name, tarballs) => {
  const app = path.join(tmp, name);
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name, private: true, type: 'module' }));
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...tarballs], app);
  return app;
};

/** The programs of a README: its ```js blocks that start with an import. */
const readmePrograms = (dir) =>
  [...fs.readFileSync(path.join(dir, 'README.md'), 'utf8').matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((m) => m[1]).filter((code) => code.startsWith('import '));

/** The same program as CommonJS: imports become requires, the body an async function. */
const toCommonJs = (code) => {
  const body = code
    .replace(/^import \* as (\w+) from '([^']+)';$/gm, "const $1 = require('$2');")
    .replace(/^import \{([^}]+)\} from '([^']+)';$/gm, (_, names, pkg) => `const {${names.replace(/ as /g, ': ')}} = require('${pkg}');`);
  if (/^import /m.test(body)) throw new Error(`an import the CommonJS rewrite does not know: ${body.match(/^import .*$/m)[0]}`);
  return `(async () => {\n${body}\n})().catch((e) => {\n  console.error(e);\n  process.exit(1);\n});\n`;
};

const runProgram = (app, file, code) => {
  fs.writeFileSync(path.join(app, file), code);
  try {
    return run('node', [file], app);
  } catch (e) {
    throw new Error(`${file} failed in ${app}:\n${e.stderr || e.message}`);
  }
};

try {
  const packages = fs
    .readdirSync(packagesDir)
    .map((d) => path.join(packagesDir, d))
    .filter((d) => fs.existsSync(path.join(d, 'package.json')))
    .map((dir) => ({ dir, manifest: JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) }));
  const tarballs = new Map();
  for (const { dir, manifest } of packages) {
    if (manifest.scripts?.build && !fs.existsSync(path.join(dir, 'dist'))) throw new Error(`${manifest.name}: no dist/; run npm run build first`);
    const { file, info } = pack(dir);
    const files = info.files.map((f) => f.path);
    const stray = files.filter((f) => /\.test\.|(^|\/)src\//.test(f));
    if (stray.length) throw new Error(`${manifest.name}: the tarball ships ${stray.join(', ')}`);
    tarballs.set(manifest.name, file);
    console.log(`packed ${info.filename}: ${files.length} files, ${(info.size / 1024).toFixed(0)} KiB`);
  }
  const tfjs = TFJS.map((name) => pack(path.join(root, 'node_modules', name)).file);

  // every package, as a user of all of them installs them
  const app = newProject('app', [...tarballs.values(), ...tfjs]);
  for (const { manifest } of packages) {
    const esm = `import * as m from '${manifest.name}'; if (!Object.keys(m).length) throw new Error('no exports'); console.log('${manifest.name} (esm):', Object.keys(m).length, 'exports');`;
    console.log(run('node', ['--input-type=module', '-e', esm], app).trim());
    const cjs = `const m = require('${manifest.name}'); if (!Object.keys(m).length) throw new Error('no exports'); console.log('${manifest.name} (cjs):', Object.keys(m).length, 'exports');`;
    console.log(run('node', ['-e', cjs], app).trim());
  }
  // the bins run from the install, and `png` finds the embedded backbone of @png/diffusion-backbone
  for (const { manifest } of packages) {
    for (const bin of Object.keys(manifest.bin ?? {})) {
      const help = run(path.join(app, 'node_modules', '.bin', bin), ['--help'], app);
      if (!help.startsWith(`Usage: ${bin} `)) throw new Error(`${manifest.name}: '${bin} --help' printed ${JSON.stringify(help.slice(0, 80))}`);
      console.log(`${bin} --help: ok`);
    }
  }
  const embedded = runProgram(
    app,
    'embedded.mjs',
    "import { setBackend } from '@png/core'; import { loadPngTinySd } from '@png/diffusion-backbone/png-tiny-sd'; await setBackend('wasm'); const b = await loadPngTinySd(); console.log('embedded backbone loads from the installed package:', b.unet.numParameters(), 'UNet parameters'); b.dispose();",
  );
  console.log(embedded.trim());
  for (const { dir, manifest } of packages) {
    readmePrograms(dir).forEach((code, i) => {
      runProgram(app, `readme-${path.basename(dir)}-${i}.mjs`, code);
      console.log(`${manifest.name} README program ${i + 1} runs`);
    });
  }

  // @png/eipa alone: its closure and tfjs, nothing else of the monorepo
  const eipaApp = newProject('eipa-app', [...EIPA_CLOSURE.map((name) => tarballs.get(name)), ...tfjs]);
  const installed = fs.readdirSync(path.join(eipaApp, 'node_modules', '@png')).map((d) => `@png/${d}`);
  if (installed.sort().join() !== [...EIPA_CLOSURE].sort().join()) throw new Error(`the eipa project holds ${installed.join(', ')}`);
  for (const name of ['@png/core', '@png/diffusion-backbone', '@png/eipa']) {
    const dir = path.join(packagesDir, name.slice('@png/'.length));
    readmePrograms(dir).forEach((code, i) => {
      const out = runProgram(eipaApp, `readme-${i}.mjs`, code);
      runProgram(eipaApp, `readme-${i}.cjs`, toCommonJs(code));
      if (name === '@png/eipa' && i === 1) console.log(out.trim().split('\n').at(-1));
      console.log(`${name} README program ${i + 1} runs with only @png/eipa's packages installed (esm and cjs)`);
    });
  }
  // a browser bundle of a consumer of the three, by esbuild as a user runs it: no plugins, no stubs
  fs.writeFileSync(path.join(eipaApp, 'browser_consumer.mjs'), BROWSER_CONSUMER);
  const { build } = await import('esbuild');
  const { metafile } = await build({
    absWorkingDir: eipaApp,
    entryPoints: ['browser_consumer.mjs'],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    outfile: 'bundle.js',
    metafile: true,
    logLevel: 'error',
  });
  const nodeOnly = Object.keys(metafile.inputs).filter((file) => /node_modules\/(@png\/node-utils|webgpu)\//.test(file));
  if (nodeOnly.length) throw new Error(`the browser bundle holds Node-only modules: ${nodeOnly.join(', ')}`);
  console.log(
    `browser bundle of @png/eipa + @png/diffusion-backbone + @png/core: ${(fs.statSync(path.join(eipaApp, 'bundle.js')).size / 1e6).toFixed(1)} MB, no Node module`,
  );
  // the same consumer through Vite (a production build, its default browser resolution), no plugins
  const vite = await import('vite');
  const [viteOutput] = [
    await vite.build({
      configFile: false,
      root: eipaApp,
      logLevel: 'error',
      build: { lib: { entry: path.join(eipaApp, 'browser_consumer.mjs'), formats: ['es'], fileName: 'vite_bundle' }, outDir: 'vite-dist', minify: false },
    }),
  ].flat();
  const viteModules = viteOutput.output.flatMap((chunk) => chunk.moduleIds ?? Object.keys(chunk.modules ?? {}));
  // (Vite stubs the Node built-ins of tfjs-core's own platform_node.js, as in every tfjs browser build: not ours)
  const viteNodeOnly = viteModules.filter((id) => /node_modules\/(@png\/node-utils|webgpu)\//.test(id));
  if (viteModules.length === 0) throw new Error('the Vite build reports no modules');
  if (viteNodeOnly.length) throw new Error(`the Vite browser build holds Node-only modules: ${viteNodeOnly.join(', ')}`);
  console.log(`Vite ${vite.version} browser build of the same consumer: ${viteModules.length} modules, no Node module`);

  // the @tensorflow/tfjs umbrella instead of tfjs-core (from the registry, or npm's cache): one engine
  const umbrellaApp = newProject('umbrella-app', [...EIPA_CLOSURE.map((name) => tarballs.get(name)), tfjs[2], '@tensorflow/tfjs@4.22.0']);
  const [training] = readmePrograms(path.join(packagesDir, 'eipa')).slice(1);
  const withUmbrella = `${training.replace("from '@tensorflow/tfjs-core'", "from '@tensorflow/tfjs'")}import * as tfjsCore from '@tensorflow/tfjs-core';\nconsole.log('one engine:', tf.engine() === tfjsCore.engine());\n`;
  for (const [file, code] of [
    ['umbrella.mjs', withUmbrella],
    ['umbrella.cjs', toCommonJs(withUmbrella)],
  ]) {
    const out = runProgram(umbrellaApp, file, code);
    if (!out.includes('one engine: true')) throw new Error(`${file}: @tensorflow/tfjs and @png/core do not share tfjs' engine:\n${out}`);
  }
  console.log("@png/eipa's training program runs on the @tensorflow/tfjs umbrella with one engine (esm and cjs)");
  console.log(`pack check passed for ${packages.length} packages`);
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
