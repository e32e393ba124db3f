export { DEFAULT_CLIP_TEXT_CONFIG, CLIP_VIT_L14_TEXT_CONFIG, clipTextConfigFromJson, type CLIPTextConfig } from './configuration_clip';
export { CLIPTextModel, type CLIPTextModelForwardOptions, type CLIPTextModelOutput } from './modeling_clip';
export {
  CLIPTokenizer,
  bytesToUnicode,
  saveClipTokenizerFiles,
  type CLIPChunkOptions,
  type CLIPTokenizerCallOptions,
  type CLIPTokenizerFiles,
  type CLIPTokenizerOutput,
  type CLIPTokenSpans,
  type CLIPTextChunks,
  type CLIPTokenPosition,
  type PaddingStrategy,
} from './tokenization_clip';
