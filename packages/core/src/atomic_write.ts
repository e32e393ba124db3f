/** Writes `data` to `path` atomically: a temporary file in the same folder, fsync, then rename. Node only. */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const fs = await import('node:fs');
  const { dirname, basename, join } = await import('node:path');
  const dir = dirname(path);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  try {
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, path);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}
