export { PhraseAdapter, attachEipa, type EipaAttachment, type EipaAttachOptions, type PhraseAdapterBlock } from './phrase_adapter';
export { DEFAULT_EIPA_CONFIG, resolveEipaConfig, type EipaConfig } from './config';
export { GatedCrossAttention } from './gated_cross_attention';
