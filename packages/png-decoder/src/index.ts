export { PngDecoder, type PngDecoderInputs, type PngDecoderOutput } from './decoder';
export { DEFAULT_PNG_DECODER_CONFIG, resolvePngDecoderConfig, type PngDecoderConfig } from './config';
export {
  maskLoss,
  maskBoxes,
  boxLoss,
  deepSupervisionLoss,
  DEFAULT_MASK_LOSS_WEIGHTS,
  DEFAULT_BOX_LOSS_WEIGHTS,
  type MaskLossWeights,
  type BoxLossWeights,
  type PointSampling,
} from './losses';
export { MultiheadAttention, SelfAttentionLayer, CrossAttentionLayer, FFNLayer, MLP } from './layers';
