// Bundles the grounding page (main.ts → dist/main.js) for browsers with esbuild.
//   node examples/browser/build.mjs [--entry FILE.ts --outdir DIR]   (another page: the browser tests')
// The @png packages are bundled from their TypeScript sources (tsconfig.base.json paths), so the
// page needs no `npm run build` first. Their Node-only imports (node:fs, node:path, pngjs' zlib, the
// 'webgpu' package of Dawn for Node, …) sit on code paths a browser never takes (loading from
// folders, dataset files, the CLI); they are replaced by stubs whose functions throw an error naming
// the module, and tree shaking drops most of them.
import * as esbuild from 'esbuild';
import { builtinModules } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');

/** Node's builtin modules: stubbed unless the importing package maps them away for browsers itself. */
const NODE_BUILTIN = new RegExp(`^(node:.*|${builtinModules.map((m) => m.replace(/[/.]/g, '\\$&')).join('|')})$`);
/** Packages that exist only for Node: Dawn's WebGPU for Node (browsers have navigator.gpu). */
const NODE_PACKAGES = /^webgpu$/;

/**
 * An ES module standing in for the Node-only module `name`: a default export and, for a builtin,
 * its export names (so that named imports bundle), each a function that throws when called.
 */
async function stubSource(name) {
  const names = NODE_BUILTIN.test(name) ? Object.keys(await import(name)).filter((n) => n !== 'default' && /^[A-Za-z_$][\w$]*$/.test(n)) : [];
  return [
    `const unavailable = (what) => function () { throw new Error(${JSON.stringify(name)} + (what ? '.' + what : '') + ' is Node-only; this code path does not run in a browser'); };`,
    ...names.map((n) => `export const ${n} = unavailable(${JSON.stringify(n)});`),
    `export default new Proxy(unavailable(''), { get: (_, key) => (typeof key === 'string' ? unavailable(key) : undefined) });`,
  ].join('\n');
}

const nodeOnlyStubs = {
  name: 'node-only-stubs',
  setup(build) {
    build.onResolve({ filter: NODE_PACKAGES }, (args) => ({ path: args.path, namespace: 'node-only' }));
    build.onResolve({ filter: NODE_BUILTIN }, async (args) => {
      if (args.pluginData === 'native') return undefined;
      // Packages that map a builtin away for browsers (their package.json "browser" field) keep their mapping.
      const native = await build.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: 'native' });
      return native.errors.length ? { path: args.path, namespace: 'node-only' } : undefined;
    });
    build.onLoad({ filter: /.*/, namespace: 'node-only' }, async (args) => ({ contents: await stubSource(args.path), loader: 'js' }));
  },
};

const { values } = parseArgs({
  options: { entry: { type: 'string', default: path.join(here, 'main.ts') }, outdir: { type: 'string', default: path.join(here, 'dist') } },
});
const started = performance.now();
await esbuild.build({
  entryPoints: [path.resolve(values.entry)],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  outdir: path.resolve(values.outdir),
  sourcemap: true,
  tsconfig: path.join(repo, 'tsconfig.base.json'),
  plugins: [nodeOnlyStubs],
  logLevel: 'warning',
});
const output = path.join(path.resolve(values.outdir), `${path.basename(values.entry, path.extname(values.entry))}.js`);
console.log(`built ${path.relative(process.cwd(), output)} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
