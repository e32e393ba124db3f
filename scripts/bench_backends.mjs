// Speed of the same models on each tfjs backend (cpu, wasm, webgpu): one UNet forward, one full
// PngGrounder forward (VAE encoder + CLIP + UNet read through EIPA + MLMA + decoder) and, with
// --train, one PngGrounder training step (forward + backward through the frozen UNet, Adam update of
// EIPA + MLMA + decoder); seconds and achieved GFLOP/s, FLOPs counted from the conv and matMul kernels
// that ran (kernel_flops.mjs).
//   npm run bench:backends [-- --size 64 --width 64 --runs 3 --backends cpu,wasm,webgpu --train]
// `npm run gpu:bundle` packs this script into a folder that runs on a machine without Node or npm
// (scripts/gpu_bundle.mjs); there --fixtures points at the copy of the tiny CLIP it carries.
// The models: SD v1.5's UNet layout at `width` base channels (SD: 320) and its VAE encoder at width/2
// (SD: 128), the tiny CLIP text encoder and tokenizer of ../shared/fixtures/tiny-sd (so cross-attention
// reads 32-wide text states, SD: 768), random weights;
// the PngGrounder's own parts at their default sizes. The defaults are small because the cpu backend
// and SwiftShader are slow; on a GPU, larger sizes (--size 256 --width 320: SD v1.5's UNet at 256²) show
// more of its speed-up, since small models are bound by per-kernel overheads.
// Without a GPU, webgpu runs on chromium's SwiftShader (a CPU Vulkan driver): correct, not fast. With
// a GPU and its Vulkan driver installed, the same command measures the GPU.
import { parseArgs } from 'node:util';
import * as os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import {
  AutoencoderKL,
  CLIPTextModel,
  CLIPTokenizer,
  DiffusionBackbone,
  SD15_UNET_CONFIG,
  SD15_VAE_CONFIG,
  UNet2DConditionModel,
} from '@png/diffusion-backbone';
import { PngGrounder } from '@png/pipeline';
import { Trainer } from '@png/training';
import { timeIt } from './bench_util.mjs';
import { kernelFlops } from './kernel_flops.mjs';

const { values: args } = parseArgs({
  options: {
    size: { type: 'string', default: '64' },
    width: { type: 'string', default: '64' },
    runs: { type: 'string', default: '3' },
    backends: { type: 'string', default: 'cpu,wasm,webgpu' },
    train: { type: 'boolean', default: false },
    fixtures: { type: 'string', default: new URL('../../shared/fixtures/tiny-sd/', import.meta.url).pathname },
  },
});
const size = Number(args.size);
const width = Number(args.width);
const runs = Number(args.runs);
const backends = args.backends.split(',');
if (!(size > 0 && size % 64 === 0)) throw new Error(`--size ${args.size}: expected a positive multiple of 64 (the VAE downsamples 8×, the UNet 8× more)`);
if (!(width > 0 && width % 64 === 0)) throw new Error(`--width ${args.width}: expected a positive multiple of 64 (GroupNorm's 32 groups at width/2)`);
if (!(Number.isInteger(runs) && runs > 0)) throw new Error(`--runs ${args.runs}: expected a positive integer`);
for (const b of backends) if (!['cpu', 'wasm', 'webgpu'].includes(b)) throw new Error(`--backends: unknown backend '${b}'; expected cpu, wasm, webgpu`);

const fixtures = args.fixtures.replace(/\/?$/, '/');
const narratives = [
  {
    caption: 'two dogs on the grass and a person near the water',
    phrases: [
      [0, 8],
      [12, 21],
      [26, 34],
      [40, 49],
    ],
  },
];
const latentSize = size / 8;

// Built once, on the first backend; tfjs moves each weight to another backend when that one first reads it.
await setBackend(backends[0]);
const unet = UNet2DConditionModel.create({ ...SD15_UNET_CONFIG, block_out_channels: [1, 2, 4, 4].map((m) => m * width), cross_attention_dim: 32 }, { seed: 0 });
const vae = AutoencoderKL.create({ ...SD15_VAE_CONFIG, block_out_channels: [1, 2, 2, 2].map((m) => (m * width) / 2) }, { parts: 'encoder', seed: 1 });
const textEncoder = await CLIPTextModel.fromPretrained(`${fixtures}text_encoder`);
const tokenizer = await CLIPTokenizer.fromPretrained(`${fixtures}tokenizer`);
const backbone = DiffusionBackbone.fromComponents({ unet, vae, textEncoder, tokenizer });
// EIPA attaches to the UNet: the grounder exists only while it is measured (dispose detaches it).
const createGrounder = () => PngGrounder.create(backbone, {}, { seed: 2 });
let grounder = createGrounder();
console.log(
  `UNet: SD v1.5 layout at block_out_channels ${unet.config.block_out_channels} (${unet.numParameters().toLocaleString()} parameters), latent ${latentSize}×${latentSize}; ` +
    `PngGrounder: ${size}×${size} image, ${narratives[0].phrases.length} phrases, ${grounder.numTrainableParameters().toLocaleString()} trained parameters. ` +
    `Median of ${runs} runs after a profiled warm-up; node ${process.version}, ${os.cpus().length} cores.`,
);
grounder.dispose();

// Inputs from host arrays, so that no backend-specific data layout travels between backends.
const random = (n, seed) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 1e4 + i * 12.9898) % 1);
const latents = tf.tensor4d(random(latentSize * latentSize * 4, 1), [1, latentSize, latentSize, 4]);
const context = tf.tensor3d(random(77 * 32, 2), [1, 77, 32]);
const images = tf.tensor4d(random(size * size * 3, 3), [1, size, size, 3]);
const targets = tf.tensor4d(
  random(size * size * narratives[0].phrases.length, 4).map((x) => (x > 0 ? 1 : 0)),
  [1, size, size, narratives[0].phrases.length],
);

/** FLOPs of one call (counted from the kernels it ran; this call is also the warm-up) and its median time. */
async function measure(forward) {
  const profile = await tf.profile(() => forward());
  tf.dispose(profile.result);
  const flops = kernelFlops(profile);
  const seconds = await timeIt(
    async () => {
      const out = forward();
      await Promise.all([out].flat().map((t) => t.data()));
      tf.dispose(out);
    },
    { runs, warmup: 0 },
  );
  return { flops, seconds };
}

/** FLOPs of one forward + backward (counted from the kernels it ran; also the warm-up) and the median time of a training step. */
async function measureTrainingStep() {
  const trainee = createGrounder();
  const latents = backbone.encodeImages(images); // a trainer encodes each image and narrative once
  const phrases = trainee.encodePhrases(narratives);
  const lossFn = () => trainee.loss(latents, phrases, targets);
  const trainer = new Trainer({ variables: trainee.namedVariables(), lossFn, optimizer: { lr: 1e-4 } });
  const profile = await tf.profile(() => {
    const { value, grads } = tf.variableGrads(lossFn, Object.values(trainee.namedVariables()));
    return [value, ...Object.values(grads)];
  });
  tf.dispose(profile.result);
  const flops = kernelFlops(profile);
  const seconds = await timeIt(() => trainer.step(undefined), { runs, warmup: 1 });
  trainer.dispose();
  tf.dispose([latents, phrases]);
  trainee.dispose();
  return { flops, seconds };
}

const rows = [];
for (const backend of backends) {
  try {
    await setBackend(backend);
  } catch (e) {
    rows.push({ backend, error: e.message });
    continue;
  }
  const info = tf.backend().adapterInfo;
  const device =
    backend === 'webgpu'
      ? [info?.vendor || '?', info?.architecture, info?.device, info?.description].filter(Boolean).join(' ')
      : backend === 'wasm'
        ? `SIMD, ${tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT') ? 'threads' : '1 thread'}`
        : 'JS';
  const u = await measure(() => unet.forward(latents, 1, context).sample);
  grounder = createGrounder();
  const g = await measure(() => {
    const out = grounder.forward(images, narratives);
    const last = out.predictions.pop();
    tf.dispose(out);
    return last;
  });
  grounder.dispose();
  const t = args.train ? await measureTrainingStep() : undefined;
  rows.push({ backend, device, unet: u, grounder: g, train: t });
  console.log(
    `${backend} (${device}): UNet ${u.seconds.toFixed(3)} s, PngGrounder ${g.seconds.toFixed(3)} s${t ? `, training step ${t.seconds.toFixed(3)} s` : ''}`,
  );
}

// --- the table
const wasm = rows.find((r) => r.backend === 'wasm' && !r.error);
const fmt = (m, ref) => [
  m.seconds.toFixed(3),
  (m.flops / 1e9).toFixed(2),
  (m.flops / 1e9 / m.seconds).toFixed(2),
  ref ? `${(ref.seconds / m.seconds).toFixed(2)}×` : '–',
];
const header = ['backend', 'device', 'UNet s', 'GFLOP', 'GFLOP/s', 'vs wasm', 'PngGrounder s', 'GFLOP', 'GFLOP/s', 'vs wasm'];
if (args.train) header.push('train step s', 'GFLOP', 'GFLOP/s', 'vs wasm');
const table = rows.map((r) =>
  r.error
    ? [r.backend, `unavailable: ${r.error}`]
    : [r.backend, r.device, ...fmt(r.unet, wasm?.unet), ...fmt(r.grounder, wasm?.grounder), ...(r.train ? fmt(r.train, wasm?.train) : [])],
);
const widths = header.map((h, i) => Math.max(h.length, ...table.filter((t) => t.length > 2).map((t) => String(t[i]).length)));
const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(widths[i] ?? 0)).join(' | ')} |`;
console.log(`\n${line(header)}\n${line(widths.map((w) => '-'.repeat(w)))}`);
for (const t of table) console.log(t.length > 2 ? line(t) : `| ${t[0]} | ${t[1]}`);

tf.dispose([latents, context, images, targets]);
backbone.dispose();
