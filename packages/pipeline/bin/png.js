#!/usr/bin/env node
// The `png` bin. npm links a workspace's bin only when its target exists at install time, and a
// clone's dist/ is built after `npm ci`: so the bin is this committed file, which runs the build.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(cli)) {
  console.error(`png: ${fileURLToPath(cli)} is missing: build the package first (npm run build at the repository root)`);
  process.exit(1);
}
await import(cli.href);
