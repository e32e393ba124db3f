/**
 * Resumable training checkpoints: one folder holding everything a run needs to continue exactly.
 *
 *     <dir>/trainable.safetensors   the trained variables by key, F32, in the layout they are held in
 *                                   (e.g. Linear weights as [in, out]); a resume file, not a model
 *                                   export (use Parameters.exportTorch / saveModule for that)
 *     <dir>/optimizer.safetensors   AdamW moments as `m.<key>` and `v.<key>`; metadata `iterations`
 *     <dir>/trainer_state.json      {format_version, step, extra}
 *
 * The folder is written atomically as a whole. Node only.
 */
import * as tf from '@tensorflow/tfjs-core';
import { SafetensorsFile, writeSafetensorsFile } from '@png/core';
import { killPoint, writeFileAtomic } from '@png/node-utils';
import type { AdamW } from './adamw';

export const TRAINABLE_FILE = 'trainable.safetensors';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const TRAINER_STATE_FILE = 'trainer_state.json';
export const CHECKPOINT_FORMAT_VERSION = 1;

/** What `saveTrainingCheckpoint` writes. */
export interface TrainingCheckpoint {
  readonly variables: Readonly<Record<string, tf.Variable>>;
  readonly optimizer: AdamW;
  /** The training step the checkpoint was taken after (the run's own count, e.g. optimizer updates). */
  readonly step: number;
  /** JSON-serialisable state to restore with the weights: data cursor, RNG seeds, model config… */
  readonly extra?: object;
}

/** What `loadTrainingCheckpoint` restores besides the tensors. */
export interface TrainingCheckpointState {
  readonly step: number;
  readonly extra: Record<string, unknown>;
}

type NodeModules = { fs: typeof import('node:fs'); path: typeof import('node:path') };

async function node(): Promise<NodeModules> {
  return { fs: await import('node:fs'), path: await import('node:path') };
}

/** Each tensor's data in sorted key order, one read at a time (what writeSafetensorsFile streams). */
async function* tensorData(tensors: ReadonlyMap<string, tf.Tensor>): AsyncGenerator<[string, readonly number[], Float32Array]> {
  for (const [key, t] of [...tensors].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    yield [key, t.shape, (await t.data()) as Float32Array];
  }
}

function shapesOf(tensors: ReadonlyMap<string, tf.Tensor>): Map<string, readonly number[]> {
  return new Map([...tensors].map(([k, t]) => [k, t.shape]));
}

/** The optimizer's moments under their file keys `m.<key>` and `v.<key>`. */
function momentTensors(optimizer: AdamW): Map<string, tf.Tensor> {
  const { m, v } = optimizer.state();
  return new Map([...Object.entries(m).map(([k, t]) => [`m.${k}`, t] as const), ...Object.entries(v).map(([k, t]) => [`v.${k}`, t] as const)]);
}

/** fsync a folder so renames inside it survive a power cut; platforms that cannot (Windows) skip it. */
function syncDir({ fs }: NodeModules, dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    /* directory fsync unsupported here */
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * Saves a training checkpoint into the folder `dir`, atomically as a whole: everything is written
 * into `<dir>.tmp-<random>`, then renamed into place. An existing checkpoint at `dir` is replaced
 * safely (renamed to `<dir>.old-<random>`, the new folder renamed in, the old one removed); on any
 * failure the previous checkpoint stays intact and no temporary folder is left behind. `dir` must
 * not be an unrelated existing folder.
 */
export async function saveTrainingCheckpoint(dir: string, checkpoint: TrainingCheckpoint): Promise<void> {
  const { variables, optimizer, step, extra = {} } = checkpoint;
  if (!Number.isInteger(step) || step < 0) throw new Error(`saveTrainingCheckpoint: step must be an integer ≥ 0, got ${step}`);
  let stateJson: string;
  try {
    stateJson = `${JSON.stringify({ format_version: CHECKPOINT_FORMAT_VERSION, step, extra }, null, 2)}\n`;
  } catch (e) {
    throw new Error(`saveTrainingCheckpoint: extra is not JSON-serialisable (${(e as Error).message}); keep it to plain data`);
  }
  const keys = Object.keys(variables).sort();
  const optimized = Object.keys(optimizer.state().m).sort();
  if (keys.join('\n') !== optimized.join('\n')) {
    throw new Error(
      `saveTrainingCheckpoint: the optimizer was built over other variables (${optimized.length} keys) than the ${keys.length} being saved; pass the optimizer of these variables`,
    );
  }
  const n = await node();
  const { fs, path } = n;
  const target = path.resolve(dir);
  if (fs.existsSync(target) && !fs.existsSync(path.join(target, TRAINER_STATE_FILE))) {
    throw new Error(
      `saveTrainingCheckpoint: ${target} exists and is not a training checkpoint (no ${TRAINER_STATE_FILE}); refusing to replace it. Choose another folder.`,
    );
  }
  const tag = `${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  const tmp = `${target}.tmp-${tag}`;
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.mkdirSync(tmp);
  try {
    const weights = new Map(Object.entries(variables));
    await writeSafetensorsFile(path.join(tmp, TRAINABLE_FILE), shapesOf(weights), tensorData(weights));
    const moments = momentTensors(optimizer);
    await writeSafetensorsFile(path.join(tmp, OPTIMIZER_FILE), shapesOf(moments), tensorData(moments), { iterations: String(optimizer.iterations) });
    writeFileAtomic(path.join(tmp, TRAINER_STATE_FILE), stateJson);
    syncDir(n, tmp);
    killPoint('checkpoint written');
    replaceDir(n, tmp, target, `${target}.old-${tag}`);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Moves the complete folder `tmp` to `target`, keeping any previous `target` until the new one is in place. */
function replaceDir(n: NodeModules, tmp: string, target: string, old: string): void {
  const { fs, path } = n;
  const hadOld = fs.existsSync(target);
  if (hadOld) fs.renameSync(target, old);
  try {
    fs.renameSync(tmp, target);
  } catch (e) {
    if (hadOld) fs.renameSync(old, target);
    throw e;
  }
  syncDir(n, path.dirname(target));
  killPoint('checkpoint renamed');
  if (hadOld) fs.rmSync(old, { recursive: true, force: true });
}

function readState({ fs }: NodeModules, file: string): TrainingCheckpointState {
  if (!fs.existsSync(file)) throw new Error(`${file}: missing; the folder is not a complete training checkpoint`);
  let raw: { format_version?: unknown; step?: unknown; extra?: unknown };
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message}); the checkpoint is corrupt`);
  }
  if (raw === null || typeof raw !== 'object') throw new Error(`${file}: not a JSON object; the checkpoint is corrupt`);
  if (raw.format_version !== CHECKPOINT_FORMAT_VERSION) {
    throw new Error(`${file}: format_version ${JSON.stringify(raw.format_version)}, this version of @png/training reads ${CHECKPOINT_FORMAT_VERSION}`);
  }
  const { step, extra } = raw;
  if (!Number.isInteger(step) || (step as number) < 0)
    throw new Error(`${file}: step ${JSON.stringify(step)} is not an integer ≥ 0; the checkpoint is corrupt`);
  if (extra === null || typeof extra !== 'object' || Array.isArray(extra)) throw new Error(`${file}: extra is not a JSON object; the checkpoint is corrupt`);
  return { step: step as number, extra: extra as Record<string, unknown> };
}

/** The step and extra of a checkpoint folder written by `saveTrainingCheckpoint`, without reading its tensors. */
export async function readTrainingCheckpointState(dir: string): Promise<TrainingCheckpointState> {
  const n = await node();
  return readState(n, n.path.join(dir, TRAINER_STATE_FILE));
}

/** Checks that `file` holds exactly the `expected` F32 tensors, before anything is read. */
function expectTensors(file: SafetensorsFile, expected: ReadonlyMap<string, readonly number[]>, dir: string): void {
  const hint = `; ${dir} is a checkpoint from a different config (or model) than the one being restored`;
  for (const [key, shape] of expected) {
    const info = file.info(key);
    if (!info) throw new Error(`${file.name}: missing tensor '${key}' (expected shape [${shape}])${hint}`);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`${file.name}: tensor '${key}' has shape [${info.shape}], expected [${shape}]${hint}`);
    }
    if (info.dtype !== 'F32') throw new Error(`${file.name}: tensor '${key}' has dtype ${info.dtype}; training checkpoints are F32, the file is corrupt`);
  }
  const extra = file.keys().filter((k) => !expected.has(k));
  if (extra.length) throw new Error(`${file.name}: unexpected tensor${extra.length > 1 ? 's' : ''} ${extra.map((k) => `'${k}'`).join(', ')}${hint}`);
}

/** Reads every tensor of `expected` from `file` (the caller disposes them). */
function readAll(file: SafetensorsFile, expected: ReadonlyMap<string, readonly number[]>): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  try {
    for (const [key, shape] of expected) out[key] = tf.tensor(file.read(key), [...shape], 'float32');
  } catch (e) {
    tf.dispose(Object.values(out));
    throw e;
  }
  return out;
}

/**
 * Restores a folder written by `saveTrainingCheckpoint` into `variables` and `optimizer`, strictly:
 * a missing or extra key or a shape mismatch is an error naming the key and `dir`; a corrupt file is
 * an error naming the file. Everything is validated and read before anything is assigned, so a
 * failed load leaves the model and optimizer untouched. Returns the saved step and extra.
 */
export async function loadTrainingCheckpoint(
  dir: string,
  target: { readonly variables: Readonly<Record<string, tf.Variable>>; readonly optimizer: AdamW },
): Promise<TrainingCheckpointState> {
  const n = await node();
  const { fs, path } = n;
  const folder = path.resolve(dir);
  if (!fs.existsSync(folder)) {
    const parent = path.dirname(folder);
    const prefix = `${path.basename(folder)}.old-`;
    const old = fs.existsSync(parent) ? fs.readdirSync(parent).filter((f) => f.startsWith(prefix)) : [];
    throw new Error(
      `no training checkpoint at ${folder}` +
        (old.length ? `; a save was interrupted while replacing it: the previous checkpoint is ${path.join(parent, old[0])}, rename it to ${folder}` : ''),
    );
  }
  const state = readState(n, path.join(folder, TRAINER_STATE_FILE));
  const keys = Object.keys(target.variables).sort();
  const weightShapes = new Map(keys.map((k) => [k, target.variables[k].shape] as const));
  const momentShapes = new Map(keys.flatMap((k) => [[`m.${k}`, target.variables[k].shape] as const, [`v.${k}`, target.variables[k].shape] as const]));
  const weightsFile = await SafetensorsFile.open(path.join(folder, TRAINABLE_FILE));
  let momentsFile: SafetensorsFile | undefined;
  const loaded: tf.Tensor[] = [];
  try {
    momentsFile = await SafetensorsFile.open(path.join(folder, OPTIMIZER_FILE));
    expectTensors(weightsFile, weightShapes, folder);
    expectTensors(momentsFile, momentShapes, folder);
    const iterations = Number(momentsFile.metadata.iterations);
    if (!Number.isInteger(iterations) || iterations < 0) {
      throw new Error(
        `${momentsFile.name}: metadata 'iterations' is ${JSON.stringify(momentsFile.metadata.iterations)}, expected an integer ≥ 0; the file is corrupt`,
      );
    }
    const weights = readAll(weightsFile, weightShapes);
    loaded.push(...Object.values(weights));
    const moments = readAll(momentsFile, momentShapes);
    loaded.push(...Object.values(moments));
    const pick = (prefix: string) => Object.fromEntries(keys.map((k) => [k, moments[`${prefix}.${k}`]]));
    target.optimizer.loadState({ iterations, m: pick('m'), v: pick('v') });
    tf.tidy(() => {
      for (const k of keys) target.variables[k].assign(weights[k]);
    });
  } finally {
    tf.dispose(loaded);
    weightsFile.close();
    momentsFile?.close();
  }
  return state;
}
