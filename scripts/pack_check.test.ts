import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

// `npm test` builds every package first; this packs them, installs the tarballs into a fresh
// project and imports each (ESM and CJS), as a user of the published packages would.
it('every package packs into an installable, importable tarball', () => {
  const out = execFileSync('node', [path.join(__dirname, 'pack_check.mjs')], { encoding: 'utf8', timeout: 300_000 });
  expect(out).toMatch(/pack check passed for \d+ packages/);
  expect(out).toContain('png --help: ok');
  expect(out).toContain('embedded backbone loads from the installed package: 1489028 UNet parameters');
}, 300_000);
