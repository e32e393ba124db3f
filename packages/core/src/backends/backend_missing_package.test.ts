import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { build, type Plugin } from 'esbuild';

// A project that has @tensorflow/tfjs-core and none of the backend packages: setBackend (from this
// source, built as Node ESM and as CommonJS) must answer with the install line, whichever module
// loader failed to find the package.
// tfjs' packages and Dawn stay imports, resolved (or not) in the project; the gradient modules under
// @tensorflow/tfjs-core/dist/ are bundled, as @png/core's build bundles them.
const packagesExternal: Plugin = {
  name: 'packages-external',
  setup: (build) => build.onResolve({ filter: /^(@tensorflow\/tfjs-[a-z-]+|webgpu)$/ }, ({ path }) => ({ path, external: true })),
};

describe('setBackend without the backend package installed', () => {
  let app: string;
  beforeAll(async () => {
    app = fs.mkdtempSync(path.join(os.tmpdir(), 'png-missing-backend-'));
    const tfjsCore = path.dirname(require.resolve('@tensorflow/tfjs-core/package.json'));
    fs.mkdirSync(path.join(app, 'node_modules', '@tensorflow'), { recursive: true });
    fs.symlinkSync(tfjsCore, path.join(app, 'node_modules', '@tensorflow', 'tfjs-core'), 'dir');
    for (const format of ['esm', 'cjs'] as const) {
      await build({
        entryPoints: [path.join(__dirname, 'backend.ts')],
        outfile: path.join(app, format === 'esm' ? 'backend.mjs' : 'backend.cjs'),
        bundle: true,
        format,
        platform: 'node',
        plugins: [packagesExternal],
        logLevel: 'error',
      });
    }
  });
  afterAll(() => fs.rmSync(app, { recursive: true, force: true }));

  const setBackendIn = (format: 'esm' | 'cjs', name: string): string => {
    const call = `setBackend('${name}').then(() => console.log('no error'), (e) => console.log(e.message))`;
    const [args, code] =
      format === 'esm'
        ? [['--input-type=module', '-e'], `import { setBackend } from './backend.mjs'; ${call};`]
        : [['-e'], `const { setBackend } = require('./backend.cjs'); ${call};`];
    return execFileSync('node', [...args, code], { cwd: app, encoding: 'utf8' }).trim();
  };

  it.each(['esm', 'cjs'] as const)('%s: wasm and cpu name their package and the npm install line', (format) => {
    expect(setBackendIn(format, 'wasm')).toBe(
      "the 'wasm' backend needs the package @tensorflow/tfjs-backend-wasm, which is not installed: npm install @tensorflow/tfjs-backend-wasm@4.22.0",
    );
    expect(setBackendIn(format, 'cpu')).toBe(
      "the 'cpu' backend needs the package @tensorflow/tfjs-backend-cpu, which is not installed: npm install @tensorflow/tfjs-backend-cpu@4.22.0",
    );
  });

  it.each(['esm', 'cjs'] as const)('%s: webgpu in Node names Dawn (webgpu) and both packages to install', (format) => {
    expect(setBackendIn(format, 'webgpu')).toBe(
      "the 'webgpu' backend needs the package webgpu, which is not installed: npm install @tensorflow/tfjs-backend-webgpu@4.22.0 webgpu@0.6.2",
    );
  });
});
