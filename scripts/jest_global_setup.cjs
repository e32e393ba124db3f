// Bundles tfjs-core's ES-module gradient and chained-op registrations into CommonJS for jest (see
// packages/core/src/gradients.ts and chained_ops.ts). Rebuilt when the installed tfjs-core version changes.
const fs = require('node:fs');
const path = require('node:path');

const REGISTRATIONS = ['register_all_gradients', 'public/chained_ops/register_all_chained_ops'];

module.exports = async function globalSetup() {
  const version = require('@tensorflow/tfjs-core/package.json').version;
  const esbuild = require('esbuild');
  for (const registration of REGISTRATIONS) {
    const out = path.join(__dirname, '..', 'node_modules', '.cache', 'png-jest', `${path.basename(registration)}.cjs`);
    const stamp = `${out}.version`;
    if (fs.existsSync(out) && fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === version) continue;
    await esbuild.build({
      entryPoints: [require.resolve(`@tensorflow/tfjs-core/dist/${registration}.js`)],
      bundle: true,
      format: 'cjs',
      platform: 'node',
      outfile: out,
      logLevel: 'error',
    });
    fs.writeFileSync(stamp, version);
  }
};
