'use strict';
// Builds the addon with node-gyp against the Node headers found beside this Node (never
// downloads them). Where it cannot build (no compiler, no headers, no oneDNN) it says why in one
// line and exits 0: the package is then present but empty, and @png/core runs its wasm kernels.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const say = (line) => console.log(`@png/native-kernels: ${line}`);
const nodedir = process.env.npm_config_nodedir || path.resolve(path.dirname(process.execPath), '..');
if (!fs.existsSync(path.join(nodedir, 'include', 'node', 'node_api.h'))) {
  say(`not built: no Node headers under ${nodedir}/include/node (set npm_config_nodedir); the wasm kernels will be used`);
  process.exit(0);
}
const gyp = process.env.npm_config_node_gyp;
const [cmd, args] = gyp ? [process.execPath, [gyp]] : ['node-gyp', []];
const run = spawnSync(cmd, [...args, 'rebuild', `--nodedir=${nodedir}`], { cwd: __dirname, encoding: 'utf8' });
if (run.status === 0) {
  say('built over oneDNN (build/Release/png_native_kernels.node)');
} else {
  const output = `${run.stdout ?? ''}${run.stderr ?? ''}${run.error ? run.error.message : ''}`;
  const cause = output.split('\n').find((l) => /error|not found|No such file/i.test(l) && !/^gyp (ERR|info)/.test(l)) ?? output.trim().split('\n').pop();
  say(`not built (${cause?.trim()}); the wasm kernels will be used. To build it: apt-get install g++ make python3 libdnnl-dev, then npm rebuild @png/native-kernels`);
  fs.rmSync(path.join(__dirname, 'build'), { recursive: true, force: true });
}
