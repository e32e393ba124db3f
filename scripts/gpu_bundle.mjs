// Builds a self-contained folder that runs the backends benchmark (bench_backends.mjs) on a bare
// x86-64 Linux machine with a GPU, its Vulkan driver and the Vulkan loader, but no npm, no internet
// and no Node:
//   npm run gpu:bundle [-- --out DIR] [--node PATH]
// then copy DIR to the machine and run DIR/run.sh (it prints the WebGPU adapter and the figures).
// DIR (default dist/gpu-bundle) holds:
//   run.sh                    unpacks node and dawn.node on its first run (gzip -d), then runs the benchmark
//   bench.mjs                 one esbuild bundle of bench_backends.mjs, the @png packages and tfjs
//   *.wasm                    tfjs-backend-wasm's binaries (the wasm backend reads them beside bench.mjs)
//   dawn.node.gz              the `webgpu` package's linux-x64 Dawn addon
//   node.gz                   the Node binary running this script (--node), stripped of its symbols
//   tiny-sd/                  the tiny CLIP text encoder and tokenizer of the fixtures (the grounder's text side)
// Node is the one running this script, not Debian's `nodejs`: Debian's (18.20.4 in bookworm) is below
// the project's engines (Node ≥ 20) and needs libnode.so.108 (47 MB), ICU 72 (37 MB) and four more
// libraries beside it; this one needs only glibc and libstdc++, checked with ldd below. Both need
// gzip to stay under the 60 MiB limit (see the root README, "A real-GPU figure").
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const LIMIT_BYTES = 60 * 2 ** 20;
// Unpacks node and dawn.node beside bench.mjs on the first run (into a copy of the folder when it is
// read-only), then runs the benchmark: without arguments SD v1.5's UNet (width 320) at 256×256 on
// WebGPU, forward and training step; with arguments, those of bench_backends.mjs.
const RUN_SH = `#!/bin/sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -w "$here" ] && [ ! -x "$here/node" ]; then
  copy=$(mktemp -d)
  cp -R "$here/." "$copy/"
  exec "$copy/run.sh" "$@"
fi
if [ ! -x "$here/node" ]; then
  mkdir -p "$here/dist/linux-x64"
  gzip -dc "$here/dawn.node.gz" > "$here/dist/linux-x64/dawn.node.part"
  mv "$here/dist/linux-x64/dawn.node.part" "$here/dist/linux-x64/dawn.node"
  gzip -dc "$here/node.gz" > "$here/node.part"
  chmod +x "$here/node.part"
  mv "$here/node.part" "$here/node"
fi
if [ "$#" -eq 0 ]; then set -- --backends webgpu --size 256 --width 320 --train --runs 3; fi
exec "$here/node" "$here/bench.mjs" --fixtures "$here/tiny-sd" "$@"
`;
const root = new URL('..', import.meta.url).pathname;
const { values: args } = parseArgs({
  options: {
    out: { type: 'string', default: path.join(root, 'dist', 'gpu-bundle') },
    node: { type: 'string', default: process.execPath },
  },
});
if (process.platform !== 'linux' || process.arch !== 'x64')
  throw new Error(`gpu_bundle builds for x86-64 Linux and takes the Node binary running it: run it there (this is ${process.platform}-${process.arch})`);
// A bare machine has glibc and libstdc++ (the NVIDIA driver needs them too), not libnode, ICU or libuv.
const BARE_LIBRARIES = /^(linux-vdso|ld-linux-x86-64|libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s)\.so/;
const needs = execFileSync('ldd', [args.node], { encoding: 'utf8' })
  .split('\n')
  .map((line) => line.trim().split(/\s/)[0].replace(/^.*\//, ''))
  .filter((lib) => lib && !BARE_LIBRARIES.test(lib));
if (needs.length)
  throw new Error(
    `${args.node} needs ${needs.join(', ')}, which a bare machine may lack: pass --node a Node ≥ 20 binary that needs only glibc and libstdc++ (nodejs.org's or NodeSource's linux-x64 build)`,
  );

const staging = `${args.out}.tmp-${process.pid}`;
fs.rmSync(staging, { recursive: true, force: true });
fs.mkdirSync(staging, { recursive: true });
const require = createRequire(import.meta.url);

// @png/core imports Dawn, tfjs-backend-webgpu and @png/node-utils by a specifier esbuild does not follow
// (importUnbundled in packages/core/src/node_only.ts, bundled from source through tsconfig.json's
// paths): in the bundle, those three become static imports of the bundled copies.
let patched = false;
const bundleOptionalImports = {
  name: 'bundle-optional-imports',
  setup(build) {
    build.onLoad({ filter: /[\\/]packages[\\/]core[\\/]src[\\/]node_only\.ts$/ }, (file) => {
      const source = fs.readFileSync(file.path, 'utf8');
      const dynamic = 'return import(/* webpackIgnore: true */ /* @vite-ignore */ specifier);';
      if (!source.includes(dynamic)) throw new Error(`${file.path}: importUnbundled() no longer reads "${dynamic}"; update gpu_bundle.mjs`);
      const bundled = `const modules: Record<string, () => Promise<unknown>> = {
    webgpu: () => import('webgpu'),
    '@tensorflow/tfjs-backend-webgpu': () => import('@tensorflow/tfjs-backend-webgpu'),
    '@png/node-utils': () => import('@png/node-utils'),
  };
  if (!Object.hasOwn(modules, specifier)) throw new Error(\`\${specifier} is not in the gpu bundle\`);
  return modules[specifier]() as Promise<T>;`;
      patched = true;
      return { contents: source.replace(dynamic, bundled), loader: 'ts' };
    });
  },
};
await esbuild.build({
  entryPoints: [path.join(root, 'scripts', 'bench_backends.mjs')],
  outfile: path.join(staging, 'bench.mjs'),
  bundle: true,
  tsconfig: path.join(root, 'tsconfig.json'),
  platform: 'node',
  format: 'esm',
  target: 'node20',
  legalComments: 'none',
  // CommonJS parts (tfjs-backend-wasm's Emscripten glue, Dawn's loader) need require and __dirname:
  // the wasm binaries and dawn.node are found beside bench.mjs.
  banner: {
    js: "import { createRequire as __pngCreateRequire } from 'node:module'; import { dirname as __pngDirname } from 'node:path'; import { fileURLToPath as __pngToPath } from 'node:url'; const require = __pngCreateRequire(import.meta.url); const __filename = __pngToPath(import.meta.url); const __dirname = __pngDirname(__filename);",
  },
  plugins: [bundleOptionalImports],
  logLevel: 'error',
});
if (!patched)
  throw new Error('the bundle did not take @png/core from packages/core/src (tsconfig.json paths): gpu_bundle.mjs could not bundle its optional imports');

const wasmDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')); // dist/, beside the .wasm files
for (const file of fs.readdirSync(wasmDir).filter((f) => f.endsWith('.wasm'))) fs.copyFileSync(path.join(wasmDir, file), path.join(staging, file));
const dawn = path.join(path.dirname(require.resolve('webgpu')), 'dist', 'linux-x64', 'dawn.node');
fs.writeFileSync(path.join(staging, 'dawn.node.gz'), gzipSync(fs.readFileSync(dawn), { level: 9 }));
const fixtures = path.join(root, '..', 'shared', 'fixtures', 'tiny-sd');
for (const part of ['text_encoder', 'tokenizer']) fs.cpSync(path.join(fixtures, part), path.join(staging, 'tiny-sd', part), { recursive: true });
// Without its symbols (where binutils is installed): NodeSource's Node 20.20.2 goes from 98.9 to 86.3 MB.
const stripped = path.join(staging, 'node');
try {
  execFileSync('strip', ['-o', stripped, args.node]);
} catch {
  fs.copyFileSync(args.node, stripped);
}
fs.writeFileSync(path.join(staging, 'node.gz'), gzipSync(fs.readFileSync(stripped), { level: 9 }));
fs.rmSync(stripped);
fs.writeFileSync(path.join(staging, 'run.sh'), RUN_SH, { mode: 0o755 });

const bytes = fs.readdirSync(staging, { recursive: true }).reduce((sum, file) => sum + fs.statSync(path.join(staging, file)).size, 0);
if (bytes >= LIMIT_BYTES) throw new Error(`the bundle in ${staging} holds ${(bytes / 2 ** 20).toFixed(1)} MiB, over the ${LIMIT_BYTES / 2 ** 20} MiB limit`);
fs.rmSync(args.out, { recursive: true, force: true });
fs.renameSync(staging, args.out);
console.log(
  `wrote ${args.out}: ${(bytes / 2 ** 20).toFixed(1)} MiB (node ${execFileSync(args.node, ['--version'], { encoding: 'utf8' }).trim()} from ${args.node}); copy it to the GPU machine and run ${path.join(args.out, 'run.sh')}`,
);
