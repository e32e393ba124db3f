export { PngGrounder, DEFAULT_PNG_GROUNDER_CONFIG, resolvePngGrounderConfig, type PngGrounderConfig, type PngGrounderOutput } from './png_grounder';
export { encodePhrases, validateNarratives, type Narrative } from './phrase_features';
export * from './training';
