/**
 * `png train` killed the hard way: SIGKILL at many points, inside every write and rename of a
 * checkpoint (the PNG_KILL_AT seam of @png/node-utils) and from outside, each kill followed by a
 * rerun of the same command. The run folder must end bit for bit as an uninterrupted run's.
 * Runs the built command (`npm test` builds first).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expectDefined } from '@png/core/testing';
import { generateSyntheticBenchmark } from '@png/png-data';

const CLI = path.join(__dirname, '..', 'dist', 'cli.js');
const TINY_MODEL = {
  eipa: { bottleneck_dim: 8, num_heads: 2 },
  mlma: { hidden_dim: 16, num_heads: 2, mask_dim: 16, norm_groups: 4 },
  decoder: { num_layers: 1, num_heads: 2, dim_feedforward: 16 },
  max_phrases: 3,
};

/**
 * The kills, in order; with 3 steps and a checkpoint after each, every rerun resumes from the newest
 * complete checkpoint. '<file> written': complete under its temporary name, before its rename.
 */
const KILL_POINTS = [
  'run.json written', // run.json's temporary, before its rename
  'run.json renamed', // the run recorded, no step yet
  'trainable.safetensors written', // checkpoint-1, inside its temporary folder
  'trainable.safetensors renamed',
  'optimizer.safetensors written',
  'optimizer.safetensors renamed',
  'trainer_state.json written',
  'trainer_state.json renamed',
  'checkpoint written', // checkpoint-1 complete, before the folder's rename
  'checkpoint renamed', // checkpoint-1 committed
  'outside: train 2/3', // SIGKILL from the parent once step 2 is reported (checkpoint-2 committed)
  'checkpoint renamed', // checkpoint-3 committed, checkpoint-2 not yet removed
  'model.safetensors written#2', // grounder/ half written (mlma's weights)
  'config.json renamed', // grounder/eipa complete
  'grounder written', // grounder/ complete, before the folder's rename
];

/** Every file under `dir` by relative path, with its bytes. */
function tree(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const file = path.join(entry.parentPath, entry.name);
    if (entry.isFile()) out.set(path.relative(dir, file), fs.readFileSync(file));
  }
  return out;
}

/** The summary line `png train` prints, without its wall-clock time. */
function summary(stdout: string): string {
  const line = stdout.split('\n').find((l) => l.startsWith('trained '));
  if (line === undefined) throw new Error(`no summary line in ${JSON.stringify(stdout)}`);
  return line.replace(/ in \d+ s;/, ';');
}

describe('png train survives SIGKILL anywhere (wasm)', () => {
  let dir: string;
  let args: (out: string) => string[];
  beforeAll(async () => {
    if (!fs.existsSync(CLI)) throw new Error(`${CLI}: missing; build first (npm run build)`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'png-kill-'));
    await generateSyntheticBenchmark(path.join(dir, 'data'), { seed: 3, train: 4, val: 0, size: [32, 32] });
    fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(TINY_MODEL));
    args = (out) => [
      CLI,
      'train',
      '--data',
      path.join(dir, 'data'),
      '--out',
      out,
      '--config',
      path.join(dir, 'model.json'),
      '--steps',
      '3',
      '--batch-size',
      '2',
      '--checkpoint-every',
      '1',
      '--image-size',
      '16',
    ];
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const env = (killAt?: string) => {
    const e: NodeJS.ProcessEnv = { ...process.env };
    delete e.PNG_KILL_AT;
    if (killAt !== undefined) e.PNG_KILL_AT = killAt;
    return e;
  };

  it(`resumes after ${KILL_POINTS.length} kills, inside every checkpoint write and rename, to the files and summary of an uninterrupted run`, async () => {
    const whole = spawnSync(process.execPath, args(path.join(dir, 'whole')), { encoding: 'utf8', env: env() });
    expect(whole.stderr).toContain('train 3/3');
    expect(whole.status).toBe(0);

    const run = path.join(dir, 'killed');
    for (const point of KILL_POINTS) {
      let signal: NodeJS.Signals | null;
      if (point.startsWith('outside: ')) {
        const child = spawn(process.execPath, args(run), { env: env() });
        let stderr = '';
        child.stderr.on('data', (chunk: Buffer) => {
          stderr += chunk.toString();
          if (stderr.includes(point.slice('outside: '.length))) child.kill('SIGKILL');
        });
        signal = await new Promise((resolve) => child.on('exit', (_code, s) => resolve(s)));
      } else {
        const killed = spawnSync(process.execPath, args(run), { encoding: 'utf8', env: env(point) });
        signal = killed.signal;
        if (signal === null) throw new Error(`PNG_KILL_AT='${point}' was never reached: exit ${killed.status}\n${killed.stderr}`);
      }
      expect({ point, signal }).toEqual({ point, signal: 'SIGKILL' });
    }
    const last = spawnSync(process.execPath, args(run), { encoding: 'utf8', env: env() });
    expect(last.status).toBe(0);

    expect(summary(last.stdout)).toBe(summary(whole.stdout));
    const [expected, actual] = [tree(path.join(dir, 'whole')), tree(run)];
    expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort()); // no temporary or older checkpoint left
    expect([...expected.keys()]).toEqual(
      expect.arrayContaining([
        'run.json',
        path.join('checkpoints', 'checkpoint-3', 'trainable.safetensors'),
        path.join('checkpoints', 'checkpoint-3', 'optimizer.safetensors'),
        path.join('checkpoints', 'checkpoint-3', 'trainer_state.json'),
        path.join('grounder', 'config.json'),
      ]),
    );
    for (const [file, bytes] of expected) expect({ file, equal: actual.get(file)?.equals(bytes) }).toEqual({ file, equal: true });
    const state = path.join('checkpoints', 'checkpoint-3', 'trainer_state.json');
    expect(JSON.parse(expectDefined(expected.get(state), state).toString()).extra.losses).toHaveLength(3);
  }, 300_000);

  it('a start that fails on its inputs leaves nothing, and the corrected command then runs', () => {
    const out = path.join(dir, 'bad');
    const base = args(out);
    const fail = (replace: Record<string, string>, message: string) => {
      const argv = base.map((a, i) => (base[i - 1] in replace ? replace[base[i - 1]] : a));
      const r = spawnSync(process.execPath, argv, { encoding: 'utf8', env: env() });
      expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 1, stderr: expect.stringContaining(message) });
      expect(fs.existsSync(out)).toBe(false);
    };
    const corrupt = path.join(dir, 'corrupt.json');
    fs.writeFileSync(corrupt, '{"mlma": ');
    const badField = path.join(dir, 'bad_field.json');
    fs.writeFileSync(badField, JSON.stringify({ ...TINY_MODEL, max_phrases: 0 }));
    fail({ '--data': path.join(dir, 'nowhere') }, 'nowhere');
    fail({ '--config': corrupt }, `--config ${corrupt}`);
    fail({ '--config': badField }, 'max_phrases');
    fail({ '--image-size': '24' }, 'image size 24 is not a multiple of 16');
  }, 300_000);
});
