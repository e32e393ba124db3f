// Tuned vs frozen parameter counts of the PNG model at the SD v1.5 configuration.
//   npm run params
import * as tf from '@tensorflow/tfjs-core';
import { WeightScope, setBackend } from '@png/core';
import { AutoencoderKL, CLIPTextModel, CLIP_VIT_L14_TEXT_CONFIG, SD15_UNET_CONFIG, SD15_VAE_CONFIG, UNet2DConditionModel } from '@png/diffusion-backbone';
import { PhraseAdapter } from '@png/eipa';
import { MultiLevelMutualAggregation, SD15_MLMA_CONFIG } from '@png/mlma';
import { PngDecoder } from '@png/png-decoder';

await setBackend('wasm');
const count = (make) => {
  const m = make();
  const n = m.numParameters();
  return { m, n };
};
const unet = count(() => UNet2DConditionModel.create(SD15_UNET_CONFIG));
const vae = count(() => AutoencoderKL.create(SD15_VAE_CONFIG, { parts: 'encoder' }));
vae.m.dispose();
const text = count(() => CLIPTextModel.fromScope(WeightScope.fresh({ trainable: false }), CLIP_VIT_L14_TEXT_CONFIG));
text.m.dispose();
const eipa = count(() => PhraseAdapter.create(unet.m));
eipa.m.dispose();
unet.m.dispose();
const mlma = count(() => MultiLevelMutualAggregation.create(SD15_MLMA_CONFIG));
const decoder = count(() => PngDecoder.create({ hidden_dim: mlma.m.config.hidden_dim, mask_dim: mlma.m.config.mask_dim }));
mlma.m.dispose();
decoder.m.dispose();

const frozen = unet.n + vae.n + text.n;
const tuned = eipa.n + mlma.n + decoder.n;
const row = (name, n) => console.log(`| ${name.padEnd(36)} | ${n.toLocaleString('en-US').padStart(13)} |`);
console.log('| part (SD v1.5 configuration)         |    parameters |');
console.log('|--------------------------------------|---------------|');
row('UNet (frozen)', unet.n);
row('VAE encoder + quant_conv (frozen)', vae.n);
row('CLIP ViT-L/14 text encoder (frozen)', text.n);
row('EIPA, 16 blocks, bottleneck 64', eipa.n);
row('MLMA, width 256', mlma.n);
row('decoder, 6 layers, width 256', decoder.n);
row('frozen total', frozen);
row('tuned total', tuned);
console.log(`tuned / frozen = ${((tuned / frozen) * 100).toFixed(2)} %; live tensors left: ${tf.memory().numTensors}`);
