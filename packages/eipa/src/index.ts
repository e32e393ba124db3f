export { PhraseAdapter, attachEipa, phraseStateKey, attentionKey, EIPA_PHRASES, EIPA_PHRASE_MASK, type PhraseAdapterBlock } from './phrase_adapter';
export { DEFAULT_EIPA_CONFIG, resolveEipaConfig, type EipaConfig } from './config';
export { GatedCrossAttention } from './gated_cross_attention';
