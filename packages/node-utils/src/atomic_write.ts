import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { killPoint } from './kill_point';

/** The name of writeFileAtomic's temporary for `name`: `.<name>.<pid>.<random>.tmp`. */
const TEMPORARY_NAME = /^\..+\.\d+\.[0-9a-z]+\.tmp$/;

/**
 * Writes `data` to `path` atomically: a temporary file in the same folder, fsync, then rename, so a
 * reader never sees a half-written result. Creates the folder if needed.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const temporary = join(dir, `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  try {
    const fd = openSync(temporary, 'w');
    try {
      writeFileSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    killPoint(`${basename(path)} written`);
    renameSync(temporary, path);
    killPoint(`${basename(path)} renamed`);
  } catch (e) {
    rmSync(temporary, { force: true });
    throw e;
  }
}

/**
 * Removes from `dir` (not its subfolders) the temporaries of atomic writes that a killed process
 * left behind. Only for a folder no other process is writing to.
 */
export function removeStaleTemporaries(dir: string): void {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) if (TEMPORARY_NAME.test(name)) rmSync(join(dir, name), { force: true });
}
