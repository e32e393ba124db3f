import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

// `npm test` builds every package first; this packs them and uses them as their users do (see
// pack_check.mjs): installed alone, README programs, @png/eipa on its own in ESM and CJS, a browser
// bundle without plugins, the @tensorflow/tfjs umbrella.
it('every package packs into an installable tarball whose README programs run, @png/eipa alone too', () => {
  const out = execFileSync('node', [path.join(__dirname, 'pack_check.mjs')], { encoding: 'utf8', timeout: 400_000 });
  expect(out).toMatch(/pack check passed for \d+ packages/);
  expect(out).toContain('png --help: ok');
  expect(out).toContain('png-metrics --help: ok');
  expect(out).toContain('embedded backbone loads from the installed package: 1489028 UNet parameters');
  for (const name of ['core', 'diffusion-backbone', 'eipa', 'pipeline', 'png-data', 'png-metrics']) expect(out).toContain(`@png/${name} README program 1 runs`);
  expect(out).toContain("@png/eipa README program 2 runs with only @png/eipa's packages installed (esm and cjs)");
  expect(out).toMatch(/^step 1 loss \d/m);
  expect(out).toMatch(/browser bundle of @png\/eipa \+ @png\/diffusion-backbone \+ @png\/core: [\d.]+ MB, no Node module/);
  expect(out).toContain("@png/eipa's training program runs on the @tensorflow/tfjs umbrella with one engine (esm and cjs)");
}, 400_000);
