import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setBackend } from '@png/core';
import { expectDefined } from '@png/core/testing';
import { DiffusionBackbone } from '@png/diffusion-backbone';
import { decodeImage, encodePng, synthesizeScene } from '@png/png-data';
import { decodeRle } from '@png/png-metrics';
import { main } from './command_line';
import { trainOnBenchmark } from './benchmark_training';

const EMBEDDED = path.join(__dirname, '..', '..', 'diffusion-backbone', 'models', 'png-tiny-sd');
const SMALL_MODEL = {
  eipa: { bottleneck_dim: 16, num_heads: 4 },
  mlma: { hidden_dim: 32, num_heads: 4, mask_dim: 32, norm_groups: 8 },
  decoder: { num_layers: 2, num_heads: 4, dim_feedforward: 64 },
  max_phrases: 6,
};

/** Runs `png <args>` and captures what it writes. */
async function png(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t) }, embeddedModel: EMBEDDED });
  return { code, stdout, stderr };
}

describe('the png command line (embedded backbone, wasm)', () => {
  let dir: string;
  let config: string;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'png-cli-'));
    config = path.join(dir, 'model.json');
    fs.writeFileSync(config, JSON.stringify(SMALL_MODEL));
    expect((await png('synth', '--out', path.join(dir, 'data'), '--train', '6', '--val', '3', '--seed', '5')).code).toBe(0);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('prints help for every command and refuses bad usage with exit code 2', async () => {
    const help = await png('--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/synth.*\n.*train.*\n.*evaluate.*\n.*ground/);
    for (const command of ['synth', 'train', 'evaluate', 'ground', 'pretrain', 'sample']) {
      const r = await png(command, '--help');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: png ${command}`);
    }
    expect(await png('fly')).toMatchObject({ code: 2, stderr: expect.stringContaining("unknown command 'fly'") });
    expect(await png('train', '--data', dir)).toMatchObject({ code: 2, stderr: expect.stringContaining('--out is required') });
    expect(await png('train', '--data', dir, '--out', dir, '--steps', 'many')).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("--steps must be an integer ≥ 1, got 'many'"),
    });
    expect(await png('train', '--data', dir, '--out', dir, '--backend', 'tpu')).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--backend must be one of wasm, cpu, webgpu'),
    });
    expect(await png('evaluate', '--data', dir, '--run', dir, '--probe', 'zero')).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("--probe must be zero-gates or swap-phrases, got 'zero'"),
    });
    expect(await png('train', '--data', dir, '--out', dir, '--gate-lr-multiplier', '0')).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("--gate-lr-multiplier must be a number > 0, got '0'"),
    });
    expect(await png('synth', '--out', dir, '--colour', 'red')).toMatchObject({ code: 2, stderr: expect.stringContaining("Unknown option '--colour'") });
    for (const shard of ['3/3', '1', '1/x', '0/0'])
      expect(await png('evaluate', '--data', dir, '--run', dir, '--shard', shard)).toMatchObject({
        code: 2,
        stderr: expect.stringContaining(
          `--shard takes K/N with 0 <= K < N (K is 0-based, as JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID of --array=0-(N-1)), got '${shard}'`,
        ),
      });
    expect(await png('evaluate', '--merge', '--out', dir)).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--merge needs the shard-K-of-N.json files of every shard'),
    });
    expect(await png('evaluate', '--merge', 'shard-0-of-1.json')).toMatchObject({ code: 2, stderr: expect.stringContaining('--merge needs --out DIR') });
    expect(await png('evaluate', '--merge', '--out', dir, '--run', dir, 'x.json')).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("Unknown option '--run'"),
    });
    const absent = path.join(dir, 'shard-0-of-1.json');
    expect(await png('evaluate', '--merge', '--out', dir, absent)).toMatchObject({
      code: 1,
      stderr: expect.stringContaining(`${absent}: cannot read the shard file`),
    });
    expect(await png('evaluate', '--data', dir, '--run', dir, '--size-thresholds', '9')).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--size-thresholds: size thresholds are two areas in pixels'),
    });
  });

  it('trains, resumes a finished run, evaluates with figures, and grounds a free-form narrative', async () => {
    const data = path.join(dir, 'data');
    const run = path.join(dir, 'run');
    const train = ['train', '--data', data, '--out', run, '--config', config, '--steps', '6', '--batch-size', '2', '--checkpoint-every', '3'];
    const trained = await png(...train);
    expect(trained.stderr).toContain('encoding 8 training narratives');
    expect(trained.code).toBe(0);
    expect(trained.stdout).toContain('trained 6 steps');
    expect(fs.readdirSync(path.join(run, 'checkpoints'))).toEqual(['checkpoint-6']); // the newest only
    expect(JSON.parse(fs.readFileSync(path.join(run, 'checkpoints', 'checkpoint-6', 'trainer_state.json'), 'utf8')).extra.losses).toHaveLength(6);
    expect(fs.readdirSync(path.join(run, 'grounder')).sort()).toEqual(['config.json', 'decoder', 'eipa', 'mlma']);
    expect((await png(...train)).stdout).toContain('had already finished its 6 steps');
    const other = await png(...train.slice(0, -4), '--steps', '7');
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(
      /run\.json: this folder holds a run started with another training .*rerun with the same settings to resume it, or remove .*run or choose another folder/,
    );

    const evaluated = await png('evaluate', '--data', data, '--run', run, '--json', '--overlays', '2', '--attention-maps', '1');
    expect(evaluated.code).toBe(0);
    const summary = JSON.parse(evaluated.stdout);
    expect(summary.overall).toBeGreaterThanOrEqual(0);
    expect(summary.baseline_full_image.overall).toBeGreaterThan(0);
    expect(summary.average_recall_ci.overall[0]).toBeLessThanOrEqual(summary.average_recall_ci.overall[1]);
    expect(summary.by_size.small.count + summary.by_size.medium.count + summary.by_size.large.count).toBe(summary.counts.overall);
    const out = path.join(run, 'eval-val2017');
    expect(fs.readdirSync(out).sort()).toEqual(['ar_curves.svg', 'attention', 'overlays', 'predictions.json', 'report.json']);
    expect(fs.readdirSync(path.join(out, 'overlays'))).toHaveLength(2);
    expect(fs.readdirSync(path.join(out, 'attention'))).toHaveLength(1);
    const report = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(report.average_recall.overall).toBe(summary.overall);
    expect(report.dropped_narratives).toEqual({ 'empty caption': 0, 'word count mismatch': 0 });
    expect(trained.stdout).toMatch(/EIPA gates e 0\.\d{4} i 0\.\d{4} \(mean \|tanh g\| per kind: extract, inject\)/);
    const logs = JSON.parse(fs.readFileSync(path.join(run, 'checkpoints', 'checkpoint-6', 'trainer_state.json'), 'utf8')).extra.logs;
    expect(logs).toHaveLength(6);
    expect(Object.keys(logs[5]).sort()).toEqual(['extract', 'inject']);
    const probed = await png(
      'evaluate',
      '--data',
      data,
      '--run',
      run,
      '--json',
      '--overlays',
      '0',
      '--attention-maps',
      '0',
      '--limit',
      '2',
      '--bootstrap',
      '0',
      '--probe',
      'swap-phrases',
    );
    expect(probed.code).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(run, 'eval-val2017-swap-phrases', 'report.json'), 'utf8')).probe).toBe('swap_phrases');

    const scene = synthesizeScene(77);
    const image = path.join(dir, 'scene.png');
    fs.writeFileSync(image, encodePng(scene.width, scene.height, scene.image));
    const grounded = await png(
      'ground',
      '--image',
      image,
      '--caption',
      'In this picture we can see a red circle above two blue squares on the grass.',
      '--run',
      run,
      '--out',
      path.join(dir, 'ground'),
    );
    expect(grounded.code).toBe(0);
    expect(grounded.stdout).toContain('3 phrases: "a red circle", "two blue squares", "the grass"');
    const masks = JSON.parse(fs.readFileSync(path.join(dir, 'ground', 'masks.json'), 'utf8'));
    expect(masks.phrases.map((p: { span: number[] }) => p.span)).toEqual([
      [27, 39],
      [46, 62],
      [66, 75],
    ]);
    for (const p of masks.phrases) expect(decodeRle(p.rle).reduce((a: number, b: number) => a + b, 0)).toBe(p.area);
    expect(
      fs
        .readFileSync(path.join(dir, 'ground', 'overlay.png'))
        .subarray(1, 4)
        .toString(),
    ).toBe('PNG');

    // the phrases given by the user, each at its first occurrence after the previous one
    const caption = 'two blue squares and the grass, then two blue squares again';
    const given = await png(
      'ground',
      '--image',
      image,
      '--caption',
      caption,
      '--phrase',
      'the grass',
      '--phrase',
      'two blue squares',
      '--run',
      run,
      '--out',
      path.join(dir, 'given'),
    );
    expect(given.stdout).toContain('2 phrases: "the grass", "two blue squares"');
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'given', 'masks.json'), 'utf8')).phrases.map((p: { span: number[] }) => p.span)).toEqual([
      [21, 30],
      [37, 53],
    ]);
    expect(await png('ground', '--image', image, '--caption', caption, '--phrase', 'the grass', '--phrase', 'the grass', '--run', run)).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--phrase "the grass" does not occur in --caption after the previous --phrase'),
    });
    expect(await png('ground', '--image', path.join(dir, 'nope.png'), '--caption', 'a dog', '--run', run)).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('nope.png: no such file'),
    });
    expect(await png('ground', '--image', dir, '--caption', 'a dog', '--run', run)).toMatchObject({
      code: 1,
      stderr: expect.stringContaining(`${dir}: is a folder; expected an image (JPEG or PNG)`),
    });
    expect(await png('ground', '--image', image, '--caption', '  ', '--run', run)).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--caption is empty'),
    });
    expect(await png('evaluate', '--data', data, '--run', dir)).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('not a png train run folder (no run.json)'),
    });

    // a bad record is left out and reported by its index and field, not dropped silently; a record the
    // official pre-processing drops (its utterances lack the caption's last words) is counted by reason
    const broken = path.join(dir, 'broken');
    fs.cpSync(data, broken, { recursive: true });
    const records = path.join(broken, 'annotations', 'png_coco_val2017.json');
    const json = JSON.parse(fs.readFileSync(records, 'utf8'));
    fs.writeFileSync(records, JSON.stringify([...json, { ...json[0], image_id: '999999999' }, { ...json[0], caption: `${json[0].caption} And more.` }]));
    const partial = await png('evaluate', '--data', broken, '--run', run, '--json', '--overlays', '0', '--attention-maps', '0');
    expect(partial.code).toBe(0);
    expect(partial.stderr).toContain(
      `1 bad record skipped:\n  png_coco_val2017.json record ${json.length}: field image_id: image 999999999 has no entry in images in panoptic_val2017.json`,
    );
    expect(partial.stderr).toContain(
      `1 narrative dropped as the official pre-processing drops them (not evaluated): 1 word count mismatch; the first:\n  png_coco_val2017.json record ${json.length + 1}: word count mismatch: the caption has `,
    );
    expect(JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')).dropped_narratives).toEqual({ 'empty caption': 0, 'word count mismatch': 1 });
    expect(JSON.parse(partial.stdout).overall).toBe(summary.overall);
  });
});

describe('trainOnBenchmark', () => {
  let dir: string;
  let backbone: DiffusionBackbone;
  beforeAll(async () => {
    await setBackend('wasm');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'png-train-'));
    expect((await png('synth', '--out', path.join(dir, 'data'), '--train', '5', '--val', '0', '--seed', '9')).code).toBe(0);
    backbone = await DiffusionBackbone.fromPretrained(EMBEDDED);
  });
  afterAll(() => {
    backbone.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('resumes an interrupted run with the losses an uninterrupted run has, bit for bit', async () => {
    const options = {
      data: path.join(dir, 'data'),
      backbone,
      config: SMALL_MODEL,
      training: { steps: 5, batch_size: 2, warmup_steps: 1, checkpoint_every: 2 },
    };
    const whole = await trainOnBenchmark({ ...options, out: path.join(dir, 'whole') });
    const crash = new Error('power cut');
    await expect(
      trainOnBenchmark({
        ...options,
        out: path.join(dir, 'resumed'),
        onProgress: (p) => {
          if (p.phase === 'train' && p.done === 3) throw crash; // after the step-2 checkpoint, before step 4's
        },
      }),
    ).rejects.toBe(crash);
    const resumed = await trainOnBenchmark({ ...options, out: path.join(dir, 'resumed') });
    expect(resumed.resumedFrom).toBe(2);
    expect(resumed.losses).toEqual(whole.losses);
    expect(whole.losses[4]).toBeLessThan(whole.losses[0]);
    // the gates leave 0 step by step, are logged per step and resume with the run
    expect(whole.gates).toHaveLength(5);
    expect(resumed.gates).toEqual(whole.gates);
    expect(expectDefined(whole.gates[4].extract, 'whole extract gate')).toBeGreaterThan(expectDefined(whole.gates[0].extract, 'whole extract gate'));
    expect(expectDefined(whole.gates[4].inject, 'whole inject gate')).toBeGreaterThan(0);
    // a gate learning rate ten times the others' moves the gates further
    const faster = await trainOnBenchmark({ ...options, training: { ...options.training, gate_lr_multiplier: 10 }, out: path.join(dir, 'faster') });
    expect(expectDefined(faster.gates[4].extract, 'faster extract gate')).toBeGreaterThan(3 * expectDefined(whole.gates[4].extract, 'whole extract gate'));
    expect(expectDefined(faster.gates[4].inject, 'faster inject gate')).toBeGreaterThan(3 * expectDefined(whole.gates[4].inject, 'whole inject gate'));
  });

  it('refuses a benchmark split without grounded records, naming the folder', async () => {
    await expect(
      trainOnBenchmark({
        data: path.join(dir, 'data'),
        split: 'val2017',
        out: path.join(dir, 'empty'),
        backbone,
        config: SMALL_MODEL,
        training: { steps: 2, warmup_steps: 0 },
      }),
    ).rejects.toThrow(/split val2017 has no record with a grounded phrase/);
  });
});

describe('png sample and png pretrain (wasm)', () => {
  let dir: string;
  beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'png-cli-sample-'))));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('samples prompts into one PNG (side by side with their prompts), and refuses an empty prompt', async () => {
    const single = path.join(dir, 'one.png');
    const r = await png('sample', '--prompt', 'a red circle on the grass', '--out', single, '--steps', '3', '--scale', '2', '--progress');
    expect(r).toMatchObject({ code: 0, stdout: expect.stringContaining('1 image, 64×64 shown ×2') });
    // --progress: a bar per weights file of the backbone, each read to the end (sample loads the whole VAE)
    for (const file of ['unet/diffusion_pytorch_model.safetensors', 'vae/diffusion_pytorch_model.safetensors', 'text_encoder/model.safetensors'])
      expect(r.stderr).toMatch(new RegExp(`\\rload ${file.replace(/[/.]/g, '\\$&')} \\(kB\\) \\[#+\\] 100% (\\d+)/\\1 .*\\n`));
    const one = decodeImage(new Uint8Array(fs.readFileSync(single)), single);
    expect([one.width, one.height]).toEqual([128, 128]);
    const two = path.join(dir, 'two.png');
    expect(
      (await png('sample', '--prompt', 'a blue square', '--prompt', 'two yellow rings in the sky', '--out', two, '--steps', '2', '--guidance', '1')).code,
    ).toBe(0);
    expect(decodeImage(new Uint8Array(fs.readFileSync(two)), two).width).toBeGreaterThan(128);
    expect(await png('sample', '--prompt', ' ', '--out', two)).toMatchObject({ code: 2, stderr: expect.stringContaining('--prompt is empty') });
    expect(await png('sample', '--out', two)).toMatchObject({ code: 2, stderr: expect.stringContaining('--prompt is required') });
  });

  it('pretrains a backbone folder that png sample then loads with --model', async () => {
    const settings = path.join(dir, 'pretrain.json');
    fs.writeFileSync(settings, JSON.stringify({ vae_batch_size: 2, unet_batch_size: 2, warmup_steps: 0, vocab_size: 600 }));
    const model = path.join(dir, 'pretrained');
    const r = await png('pretrain', '--out', model, '--scenes', '4', '--vae-steps', '1', '--unet-steps', '1', '--settings', settings);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/wrote .*pretrained: UNet [\d,]+, VAE [\d,]+, text encoder [\d,]+ parameters/);
    expect(r.stdout).toMatch(/time on wasm: .* total \d+:\d\d/);
    expect(r.stderr).toMatch(/unet \+ text encoder 1\/1 loss/);
    const out = path.join(dir, 'sample.png');
    expect((await png('sample', '--model', model, '--prompt', 'a circle', '--out', out, '--steps', '1')).code).toBe(0);
    expect(await png('pretrain', '--out', model, '--settings', path.join(dir, 'missing.json'))).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('--settings'),
    });
  }, 120_000);
});
