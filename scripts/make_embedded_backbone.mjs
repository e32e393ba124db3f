// Writes the embedded default backbone, packages/pipeline/models/png-tiny-sd: a diffusers-layout
// pipeline folder (unet/, vae/, text_encoder/, tokenizer/) of a tiny SD-architecture model whose
// CLIP BPE vocabulary is learnt from synthetic-benchmark narratives. Weights are random
// (seeded): the frozen backbone the demo trains EIPA + MLMA + decoder on until the project ships
// a pretrained one. Deterministic: the same files every run.
//   node scripts/make_embedded_backbone.mjs [--out <dir>]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { WeightScope, setBackend, writeFileAtomic } from '@png/core';
import { AutoencoderKL, CLIPTextModel, CLIPTokenizer, UNet2DConditionModel, saveClipTokenizerFiles, trainClipBpe } from '@png/diffusion-backbone';
import { synthesizeScene } from '@png/png-data';

const root = path.join(path.dirname(new URL(import.meta.url).pathname), '..');
const { values: args } = parseArgs({ options: { out: { type: 'string', default: path.join(root, 'packages', 'pipeline', 'models', 'png-tiny-sd') } } });
await setBackend('cpu'); // initialisation only; cpu and wasm give the same seeded weights

const WIDTH = 64; // text width = cross-attention width
const captions = [];
for (let seed = 1_000_000; seed < 1_002_000; seed++) for (const n of synthesizeScene(seed).narratives) captions.push(n.caption);
const tokenizerFiles = trainClipBpe(captions, { vocabSize: 1024 });
const tokenizer = CLIPTokenizer.fromFiles(tokenizerFiles);

const unet = UNet2DConditionModel.create(
  {
    sample_size: 16,
    block_out_channels: [32, 64, 64],
    down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
    up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
    layers_per_block: 1,
    attention_head_dim: 4,
    cross_attention_dim: WIDTH,
    norm_num_groups: 16,
  },
  { seed: 1 },
);
const vae = AutoencoderKL.create(
  {
    sample_size: 64,
    block_out_channels: [32, 64, 64],
    down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
    up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
    latent_channels: 4,
    norm_num_groups: 16,
  },
  { seed: 2 },
);
const textEncoder = CLIPTextModel.fromScope(WeightScope.fresh({ seed: 3 }), {
  vocab_size: tokenizer.vocabSize,
  hidden_size: WIDTH,
  intermediate_size: 4 * WIDTH,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  max_position_embeddings: 77,
  projection_dim: WIDTH,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  bos_token_id: tokenizer.bosTokenId,
  eos_token_id: tokenizer.eosTokenId,
  pad_token_id: tokenizer.padTokenId,
});

const out = args.out;
fs.rmSync(out, { recursive: true, force: true });
await unet.save(path.join(out, 'unet'));
await vae.save(path.join(out, 'vae'));
await textEncoder.save(path.join(out, 'text_encoder'));
await saveClipTokenizerFiles(path.join(out, 'tokenizer'), tokenizerFiles);
await writeFileAtomic(
  path.join(out, 'model_index.json'),
  JSON.stringify({ _class_name: 'StableDiffusionPipeline', unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'], text_encoder: ['transformers', 'CLIPTextModel'], tokenizer: ['transformers', 'CLIPTokenizer'] }, null, 2) + '\n',
);
const params = { unet: unet.numParameters(), vae: vae.numParameters(), text_encoder: textEncoder.numParameters() };
console.log(`wrote ${out}: ${Object.entries(params).map(([k, n]) => `${k} ${n.toLocaleString()}`).join(', ')} parameters; vocabulary ${tokenizer.vocabSize} tokens from ${captions.length} synthetic narratives`);
for (const m of [unet, vae, textEncoder]) m.dispose();
