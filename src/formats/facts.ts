/**
 * The model facts every result file records (thresholds.json, results.json, bench.json):
 * what the model was, enough to check a file against a model and for `hw` to rebuild its
 * shape and count its operations.
 */
import { z } from 'zod';
import type { LanguageModel } from '../models/model.ts';

const int = z.number().int();

export const SiteShape = z.object({ id: z.string(), rows: int.min(1), cols: int.min(1) });

/** The shape part: architecture, dimensions, the site layers and the architecture's config. */
export const ShapeFacts = z.object({
  architecture: z.string(),
  nLayer: int.min(1).max(100_000),
  nEmbd: int.min(1).max(1 << 24),
  nVocab: int.min(1).max(1 << 28),
  /** The linear layer each site feeds: cols inputs → rows outputs. */
  siteShapes: z.array(SiteShape).optional(),
  /** The architecture's config (its dims and options), for `hw`'s op counts. */
  config: z.record(z.string(), z.unknown()).optional(),
});
export type ShapeFacts = z.infer<typeof ShapeFacts>;

/** The whole record: the shape, the weights' fingerprint and the site list. */
export const ModelFacts = ShapeFacts.extend({
  fingerprint: z.string(),
  comparison: z.enum(['gt', 'ge']),
  sitesPerBlock: z.array(z.string()).min(1),
});
export type ModelFacts = z.infer<typeof ModelFacts>;

export function shapeFacts(model: LanguageModel): Required<ShapeFacts> {
  return {
    architecture: model.arch,
    nLayer: model.nLayer,
    nEmbd: model.nEmbd,
    nVocab: model.nVocab,
    siteShapes: model.sites.perBlock.map((s) => ({ id: s.id, rows: s.rows, cols: s.cols })),
    config: { ...model.config },
  };
}

export function modelFacts(model: LanguageModel): ModelFacts & Required<ShapeFacts> {
  return {
    ...shapeFacts(model),
    fingerprint: model.fingerprint,
    comparison: model.sites.comparison,
    sitesPerBlock: model.sites.perBlock.map((s) => s.id),
  };
}
