import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Linear, WeightScope, setBackend, type Parameters } from '@png/core';
import { expectDefined } from '@png/core/testing';
import { BatchOrder } from './batch_order';
import { warmupPoly } from './lr_schedule';
import { Trainer, trainableVariables } from './trainer';
import { latestCheckpoint, runTrainingLoop, type TrainingLoopProgress } from './training_loop';

/** A linear 4 → 2 regression on 10 seeded samples, a fresh model and trainer each call. */
function job(): { trainer: Trainer<number[]>; params: Parameters; dispose(): void } {
  const { module, params } = WeightScope.fresh({ seed: 3, trainable: true }).build((s) => ({ fc: new Linear(s.pp('fc'), 4, 2) }));
  const x = tf.randomNormal([10, 4], 0, 1, 'float32', 1) as tf.Tensor2D;
  const y = tf.randomNormal([10, 2], 0, 1, 'float32', 2) as tf.Tensor2D;
  const trainer = new Trainer<number[]>({
    variables: trainableVariables(params),
    lossFn: (indices) => {
      const at = tf.tensor1d(indices, 'int32');
      return tf.mean(tf.squaredDifference(module.fc.forward(tf.gather(x, at)), tf.gather(y, at))) as tf.Scalar;
    },
    optimizer: { lr: 0.1 },
    schedule: warmupPoly({ base_lr: 0.1, warmup_steps: 1, total_steps: 7 }),
  });
  return {
    trainer,
    params,
    dispose: () => {
      trainer.dispose();
      params.dispose();
      tf.dispose([x, y]);
    },
  };
}

const order = new BatchOrder(10, 3, 5);
const options = { steps: 7, checkpointEvery: 3, batch: (step: number) => order.batch(step) };

/** Every file under `dir` by relative path, with its bytes. */
function files(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) out.set(path.relative(dir, path.join(entry.parentPath, entry.name)), fs.readFileSync(path.join(entry.parentPath, entry.name)));
  }
  return out;
}

describe('runTrainingLoop (cpu)', () => {
  let root: string;
  beforeAll(async () => {
    await setBackend('cpu');
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'png-loop-'));
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  it('keeps the newest checkpoint, with the loss of every step, and reports the mean of the recent losses', async () => {
    const dir = path.join(root, 'whole');
    const model = job();
    const seen: TrainingLoopProgress[] = [];
    const result = await runTrainingLoop({ ...options, dir, trainer: model.trainer, onStep: (p) => seen.push(p) });
    model.dispose();
    expect(result.resumedFrom).toBe(0);
    expect(result.losses).toHaveLength(7);
    expect(result.losses[6]).toBeLessThan(result.losses[0]);
    expect(fs.readdirSync(dir)).toEqual(['checkpoint-7']);
    expect(await latestCheckpoint(dir)).toEqual({ step: 7, dir: path.join(dir, 'checkpoint-7'), losses: result.losses });
    expect(seen.map((p) => p.done)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(seen[2].loss).toBeCloseTo((result.losses[0] + result.losses[1] + result.losses[2]) / 3, 6);
    expect(seen[0].lr).toBeCloseTo(1e-4, 9); // warm-up start: 0.1 × 0.001
  });

  it('resumes after a crash and after leftovers of a kill to the files of an uninterrupted run, bit for bit', async () => {
    const whole = path.join(root, 'whole');
    const dir = path.join(root, 'resumed');
    const crash = new Error('power cut');
    let model = job();
    await expect(
      runTrainingLoop({
        ...options,
        dir,
        trainer: model.trainer,
        onStep: (p) => {
          if (p.done === 5) throw crash;
        },
      }),
    ).rejects.toBe(crash);
    model.dispose();
    expect(fs.readdirSync(dir)).toEqual(['checkpoint-3']);
    // what a kill in the middle of the next save leaves: its temporary folder and a half-removed older checkpoint
    fs.cpSync(path.join(dir, 'checkpoint-3'), path.join(dir, 'checkpoint-6.tmp-123-abc'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'checkpoint-1'));
    model = job();
    const resumed = await runTrainingLoop({ ...options, dir, trainer: model.trainer });
    model.dispose();
    expect(resumed.resumedFrom).toBe(3);
    expect(files(dir)).toEqual(files(whole));
    // a finished run trains no more and gives its losses
    model = job();
    const again = await runTrainingLoop({
      ...options,
      dir,
      trainer: model.trainer,
      onStep: () => {
        throw new Error('no step expected');
      },
    });
    model.dispose();
    expect(again).toEqual({ losses: resumed.losses, logs: [], resumedFrom: 7 });
  });

  it('keeps a per-step log beside the losses in every checkpoint and resumes it; a checkpoint without one is refused', async () => {
    const dir = path.join(root, 'logged');
    const log = (model: ReturnType<typeof job>) => () => ({
      weight: Number(model.params.get('fc.weight').dataSync()[0].toFixed(6)),
      step: model.trainer.iterations,
    });
    let model = job();
    const crash = new Error('power cut');
    await expect(
      runTrainingLoop({
        ...options,
        dir,
        trainer: model.trainer,
        log: log(model),
        onStep: (p) => {
          if (p.done === 5) throw crash;
        },
      }),
    ).rejects.toBe(crash);
    model.dispose();
    model = job();
    const resumed = await runTrainingLoop({ ...options, dir, trainer: model.trainer, log: log(model) });
    model.dispose();
    expect(resumed.logs.map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    model = job();
    const whole = await runTrainingLoop({ ...options, dir: path.join(root, 'logged-whole'), trainer: model.trainer, log: log(model) });
    model.dispose();
    expect(resumed.logs).toEqual(whole.logs);
    expect(resumed.losses).toEqual(whole.losses);
    expect(expectDefined(await latestCheckpoint(dir), 'the latest checkpoint').logs).toEqual(whole.logs);
    model = job();
    await expect(runTrainingLoop({ ...options, steps: 8, dir: path.join(root, 'whole'), trainer: model.trainer, log: log(model) })).rejects.toThrow(
      `${path.join(root, 'whole', 'checkpoint-7')}: a checkpoint without the per-step log (extra.logs) this loop keeps`,
    );
    model.dispose();
  });

  it('refuses a corrupt loss history and a folder of a longer run, naming the file', async () => {
    const dir = path.join(root, 'corrupt');
    fs.cpSync(path.join(root, 'whole'), dir, { recursive: true });
    const state = path.join(dir, 'checkpoint-7', 'trainer_state.json');
    const json = JSON.parse(fs.readFileSync(state, 'utf8'));
    fs.writeFileSync(state, JSON.stringify({ ...json, extra: { losses: json.extra.losses.slice(1) } }));
    const model = job();
    await expect(runTrainingLoop({ ...options, dir, trainer: model.trainer })).rejects.toThrow(
      `${state}: extra.losses is not the loss of each of the 7 steps; the checkpoint is corrupt, remove ${path.join(dir, 'checkpoint-7')}`,
    );
    fs.writeFileSync(state, JSON.stringify(json));
    await expect(runTrainingLoop({ ...options, steps: 6, dir, trainer: model.trainer })).rejects.toThrow(
      `${path.join(dir, 'checkpoint-7')}: a checkpoint after step 7, past the run's 6 steps; this folder belongs to a longer run`,
    );
    model.dispose();
  });
});
