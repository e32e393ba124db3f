// Bundles tfjs-core's ES-module gradient registrations into CommonJS for jest (see
// packages/core/src/gradients.ts). Rebuilt when the installed tfjs-core version changes.
const fs = require('node:fs');
const path = require('node:path');

module.exports = async function globalSetup() {
  const out = path.join(__dirname, '..', 'node_modules', '.cache', 'png-jest', 'register_all_gradients.cjs');
  const version = require('@tensorflow/tfjs-core/package.json').version;
  const stamp = `${out}.version`;
  if (fs.existsSync(out) && fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === version) return;
  const esbuild = require('esbuild');
  await esbuild.build({
    entryPoints: [require.resolve('@tensorflow/tfjs-core/dist/register_all_gradients.js')],
    bundle: true,
    format: 'cjs',
    platform: 'node',
    outfile: out,
    logLevel: 'error',
  });
  fs.writeFileSync(stamp, version);
};
