export {
  PhraseAdapter,
  attachEipa,
  type EipaAttachment,
  type EipaAttachOptions,
  type EipaContextOptions,
  type EipaGateMagnitudes,
  type PhraseAdapterBlock,
} from './phrase_adapter';
export { DEFAULT_EIPA_CONFIG, resolveEipaConfig, type EipaConfig, type EipaGate, type EipaInjectPosition } from './config';
export { GatedCrossAttention } from './gated_cross_attention';
export { GatedSelfAttention } from './gated_self_attention';
export { PhraseExtractor } from './phrase_extractor';
