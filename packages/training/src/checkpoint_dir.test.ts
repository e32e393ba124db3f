import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { SafetensorsFile, setBackend } from '@png/core';
import { AdamW } from './adamw';
import { loadTrainingCheckpoint, saveTrainingCheckpoint, OPTIMIZER_FILE, TRAINABLE_FILE, TRAINER_STATE_FILE } from './checkpoint_dir';

type Vars = Record<string, tf.Variable>;

/** Three variables (`a` [2,3], `b` [3], `c` [4]) filled from `seed`, and an AdamW over them after `steps` updates. */
function state(seed: number, steps = 0, shapes: Record<string, number[]> = { a: [2, 3], b: [3], c: [4] }): { vars: Vars; opt: AdamW } {
  const vars: Vars = {};
  for (const [key, shape] of Object.entries(shapes)) vars[key] = tf.variable(tf.randomNormal(shape, 0, 1, 'float32', seed + key.charCodeAt(0)));
  const opt = new AdamW(vars, { lr: 0.01 });
  for (let t = 1; t <= steps; t++) {
    const grads = tf.tidy(() => Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, tf.mul(v, t)])));
    opt.applyGradients(grads);
    tf.dispose(grads);
  }
  return { vars, opt };
}

function free({ vars, opt }: { vars: Vars; opt: AdamW }): void {
  opt.dispose();
  tf.dispose(Object.values(vars));
}

async function values(tensors: Readonly<Record<string, tf.Tensor>>): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const key of Object.keys(tensors).sort()) out[key] = Array.from(await tensors[key].data());
  return out;
}

describe('training checkpoint folders (wasm)', () => {
  let root: string;
  beforeAll(async () => {
    await setBackend('wasm');
  });
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'png-ckpt-'));
  });
  afterEach(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });
  const leftovers = () => fs.readdirSync(root).filter((f) => /\.(tmp|old)-/.test(f));

  it('round-trips variables, moments, step and extra exactly; replaces an older checkpoint', async () => {
    const dir = path.join(root, 'run', 'ckpt');
    const older = state(1, 1);
    await saveTrainingCheckpoint(dir, { variables: older.vars, optimizer: older.opt, step: 1 });
    const saved = state(2, 3);
    await saveTrainingCheckpoint(dir, { variables: saved.vars, optimizer: saved.opt, step: 3, extra: { cursor: 12, seeds: [1, 2] } });
    expect(fs.readdirSync(dir).sort()).toEqual([OPTIMIZER_FILE, TRAINABLE_FILE, TRAINER_STATE_FILE]);
    expect(fs.readdirSync(path.dirname(dir))).toEqual(['ckpt']);
    expect(JSON.parse(fs.readFileSync(path.join(dir, TRAINER_STATE_FILE), 'utf8'))).toEqual({
      format_version: 1,
      step: 3,
      extra: { cursor: 12, seeds: [1, 2] },
    });
    const moments = await SafetensorsFile.open(path.join(dir, OPTIMIZER_FILE));
    expect(moments.keys().sort()).toEqual(['m.a', 'm.b', 'm.c', 'v.a', 'v.b', 'v.c']);
    moments.close();

    const loaded = state(9);
    expect(await loadTrainingCheckpoint(dir, { variables: loaded.vars, optimizer: loaded.opt })).toEqual({ step: 3, extra: { cursor: 12, seeds: [1, 2] } });
    expect(loaded.opt.iterations).toBe(3);
    expect(await values(loaded.vars)).toEqual(await values(saved.vars));
    expect(await values(loaded.opt.state().m)).toEqual(await values(saved.opt.state().m));
    expect(await values(loaded.opt.state().v)).toEqual(await values(saved.opt.state().v));
    [older, saved, loaded].forEach(free);
  });

  it('an interrupted save (a tensor fails mid-stream) leaves the previous checkpoint intact and nothing behind', async () => {
    const dir = path.join(root, 'ckpt');
    const first = state(1, 2);
    await saveTrainingCheckpoint(dir, { variables: first.vars, optimizer: first.opt, step: 2, extra: { cursor: 2 } });
    const expected = await values(first.vars);
    first.vars.b.dispose(); // 'a' is written, then reading 'b' throws
    await expect(saveTrainingCheckpoint(dir, { variables: first.vars, optimizer: first.opt, step: 3 })).rejects.toThrow(/disposed/);
    expect(leftovers()).toEqual([]);
    const check = state(5);
    expect((await loadTrainingCheckpoint(dir, { variables: check.vars, optimizer: check.opt })).extra).toEqual({ cursor: 2 });
    expect(await values(check.vars)).toEqual(expected);
    [first, check].forEach(free);
  });

  it('a save that fails while swapping folders puts the previous checkpoint back', async () => {
    const dir = path.join(root, 'ckpt');
    const first = state(1, 1);
    await saveTrainingCheckpoint(dir, { variables: first.vars, optimizer: first.opt, step: 1 });
    const nodeFs: typeof fs = require('node:fs'); // the module object itself (the `import *` namespace is frozen)
    const rename = nodeFs.renameSync;
    const spy = jest.spyOn(nodeFs, 'renameSync').mockImplementation((from, to) => {
      if (String(from).includes('.tmp-') && to === dir) throw new Error('EIO: simulated failure');
      rename(from, to);
    });
    try {
      await expect(saveTrainingCheckpoint(dir, { variables: first.vars, optimizer: first.opt, step: 2 })).rejects.toThrow('simulated failure');
      expect(spy).toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
    expect(leftovers()).toEqual([]);
    const check = state(5);
    expect((await loadTrainingCheckpoint(dir, { variables: check.vars, optimizer: check.opt })).step).toBe(1);
    [first, check].forEach(free);
  });

  it('a checkpoint from a different config is an error naming the key and the folder, and changes nothing', async () => {
    const dir = path.join(root, 'ckpt');
    const saved = state(1, 1);
    await saveTrainingCheckpoint(dir, { variables: saved.vars, optimizer: saved.opt, step: 1 });
    const cases: Array<[Record<string, number[]>, RegExp]> = [
      [{ a: [2, 3], b: [5], c: [4] }, /trainable\.safetensors: tensor 'b' has shape \[3\], expected \[5\]; .*ckpt is a checkpoint from a different config/],
      [{ a: [2, 3], b: [3], c: [4], d: [1] }, /missing tensor 'd' \(expected shape \[1\]\); .*ckpt is a checkpoint from a different config/],
      [{ a: [2, 3], c: [4] }, /unexpected tensor 'b'; .*ckpt is a checkpoint from a different config/],
    ];
    for (const [shapes, message] of cases) {
      const other = state(7, 0, shapes);
      const before = await values(other.vars);
      await expect(loadTrainingCheckpoint(dir, { variables: other.vars, optimizer: other.opt })).rejects.toThrow(message);
      expect(await values(other.vars)).toEqual(before);
      expect(other.opt.iterations).toBe(0);
      free(other);
    }
    free(saved);
  });

  it('a corrupt file is an error naming the file', async () => {
    const dir = path.join(root, 'ckpt');
    const saved = state(1, 1);
    await saveTrainingCheckpoint(dir, { variables: saved.vars, optimizer: saved.opt, step: 1 });
    const target = state(2);
    const optimizerFile = path.join(dir, OPTIMIZER_FILE);
    fs.truncateSync(optimizerFile, fs.statSync(optimizerFile).size - 8);
    await expect(loadTrainingCheckpoint(dir, { variables: target.vars, optimizer: target.opt })).rejects.toThrow(`${optimizerFile}: tensor`);
    fs.writeFileSync(path.join(dir, TRAINER_STATE_FILE), '{"step": 1,');
    await expect(loadTrainingCheckpoint(dir, { variables: target.vars, optimizer: target.opt })).rejects.toThrow(
      `${path.join(dir, TRAINER_STATE_FILE)}: not valid JSON`,
    );
    [saved, target].forEach(free);
  });

  it('refuses to replace a folder that is not a checkpoint, and points at a stranded previous checkpoint', async () => {
    const saved = state(1, 1);
    const notCkpt = path.join(root, 'data');
    fs.mkdirSync(notCkpt);
    await expect(saveTrainingCheckpoint(notCkpt, { variables: saved.vars, optimizer: saved.opt, step: 1 })).rejects.toThrow(
      'is not a training checkpoint (no trainer_state.json); refusing to replace it',
    );
    const dir = path.join(root, 'ckpt');
    await saveTrainingCheckpoint(dir, { variables: saved.vars, optimizer: saved.opt, step: 1 });
    fs.renameSync(dir, `${dir}.old-123-abc`); // as if the process died between the two renames
    await expect(loadTrainingCheckpoint(dir, { variables: saved.vars, optimizer: saved.opt })).rejects.toThrow(
      `the previous checkpoint is ${dir}.old-123-abc, rename it to ${dir}`,
    );
    free(saved);
  });
});
