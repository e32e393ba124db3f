import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

// `npm ci` in a fresh clone links a workspace's bin only if its target exists then, before
// `npm run build` has made any dist/: every bin must point at a committed file, and after the
// build `npx <bin>` (node_modules/.bin) must run the command.
const root = path.resolve(__dirname, '..');
const tracked = new Set(execFileSync('git', ['ls-files'], { cwd: root, encoding: 'utf8' }).split('\n'));
const bins = fs
  .readdirSync(path.join(root, 'packages'))
  .map((dir) => path.join('packages', dir))
  .filter((dir) => fs.existsSync(path.join(root, dir, 'package.json')))
  .flatMap((dir) => {
    const manifest = JSON.parse(fs.readFileSync(path.join(root, dir, 'package.json'), 'utf8'));
    return Object.entries<string>(manifest.bin ?? {}).map(([name, target]) => ({ name, file: path.posix.join(dir, target) }));
  });

it('the workspace bins are png and png-metrics', () => {
  expect(bins.map((b) => b.name).sort()).toEqual(['png', 'png-metrics']);
});

it.each(bins)('$name points at a committed file ($file), so npm ci links it before the build', ({ file }) => {
  expect(tracked.has(file)).toBe(true);
});

it.each(bins)('$name runs from node_modules/.bin after the build', ({ name }) => {
  const help = execFileSync(path.join(root, 'node_modules', '.bin', name), ['--help'], { cwd: root, encoding: 'utf8' });
  expect(help.startsWith(`Usage: ${name} `)).toBe(true);
});
