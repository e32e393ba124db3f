/**
 * Reading the files a user points at (weights, images, configs). A missing path or a folder where a
 * file is expected is an error naming the path and what was expected, never a bare ENOENT or
 * EISDIR. Node only.
 */
import { nodeOnly } from './node_only';

/**
 * Checks that `path` is a file that can be read as `what` (e.g. "a safetensors weights file").
 * @returns its size in bytes.
 * @throws `<path>: no such file; expected <what>`, `<path>: is a folder; expected <what>`, or
 *   `<path>: cannot read <what> (<reason>)`.
 */
export async function checkInputFile(path: string, what: string): Promise<number> {
  const { fs } = await nodeOnly(`reading ${what}`);
  let stats: import('node:fs').Stats;
  try {
    stats = fs.statSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${path}: no such file; expected ${what}`);
    throw new Error(`${path}: cannot read ${what} (${(e as Error).message})`);
  }
  if (stats.isDirectory()) throw new Error(`${path}: is a folder; expected ${what}`);
  return stats.size;
}

/** The bytes of the file `path`, after {@link checkInputFile}; errors name the path and `what`. */
export async function readInputFile(path: string, what: string): Promise<Buffer> {
  await checkInputFile(path, what);
  const { fs } = await nodeOnly(`reading ${what}`);
  try {
    return fs.readFileSync(path);
  } catch (e) {
    throw new Error(`${path}: cannot read ${what} (${(e as Error).message})`);
  }
}
