export { trainClipBpe, type ClipBpeTrainingOptions } from './bpe_trainer';
export { autoencoderKLLoss, type AutoencoderKLLossOptions } from './train_autoencoder_kl';
export { textToImageLoss, type TextToImageBatch } from './train_text_to_image';
export {
  pretrainBackbone,
  resolvePretrainSettings,
  DEFAULT_PRETRAIN_SETTINGS,
  TINY_SD_ARCHITECTURE,
  type BackboneArchitecture,
  type PretrainSettings,
  type PretrainProgress,
  type PretrainOptions,
  type PretrainResult,
} from './pretrain_backbone';
