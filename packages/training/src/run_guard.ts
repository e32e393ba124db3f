/**
 * The guard of a resumable run folder: its `run.json` records what the run was started with, and
 * a rerun with anything else is refused, so that resuming never mixes two runs. Node only.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '@png/node-utils';

/** The file in a run folder that records the run. */
const RUN_FILE = 'run.json';

/** What `guardRun` found, and how to record a new run. */
export interface RunGuard {
  /** The file already records this run: it is being resumed. */
  readonly resumed: boolean;
  /**
   * Records the run in the file (atomically) if it is new. Call it once every input is validated,
   * so that a start that fails leaves nothing behind.
   */
  record(): void;
}

/**
 * Checks the run folder `folder` against `run` (plain JSON data: settings, config, data paths): a
 * `run.json` recording another run is an error naming the first field that differs. `upgrade`
 * brings a recorded run to today's form first (e.g. its configs resolved with today's defaults, so
 * that a field added since, at its default, does not stop a resume). Nothing is written (the
 * folder need not exist).
 */
export function guardRun(folder: string, run: object, upgrade: (recorded: Record<string, unknown>) => Record<string, unknown> = (r) => r): RunGuard {
  const text = `${JSON.stringify(run, null, 2)}\n`;
  const file = path.join(folder, RUN_FILE);
  const resumed = fs.existsSync(file);
  if (resumed) {
    let previous: Record<string, unknown>;
    try {
      previous = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new Error(`${file}: not valid JSON (${(e as Error).message}); remove ${folder} or choose another folder`);
    }
    try {
      previous = upgrade(previous);
    } catch {
      // a record today's code cannot read as a run: compared as written, so the error names the field
    }
    const current = JSON.parse(text) as Record<string, unknown>;
    for (const key of new Set([...Object.keys(current), ...Object.keys(previous ?? {})])) {
      const [was, now] = [JSON.stringify(previous?.[key]), JSON.stringify(current[key])];
      if (was !== now) {
        throw new Error(
          `${file}: this folder holds a run started with another ${key} (${was}, now ${now}); rerun with the same settings to resume it, or remove ${folder} or choose another folder to start over`,
        );
      }
    }
  }
  return {
    resumed,
    record() {
      if (!resumed) writeFileAtomic(file, text);
    },
  };
}
