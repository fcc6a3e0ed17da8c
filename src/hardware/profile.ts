/**
 * Hardware profiles and mappings as data (HARDWARE.md "Profiles are data"). Every
 * constant is `{value, unit, evidence, source}`; an unknown one is `null` and is never
 * replaced by a default: the cost model either refuses to run without it or lists the
 * term it would have costed as "not costed". A mapping (how a model is laid on the
 * chip) is a separate file.
 *
 * The built-in profiles are JSON files beside this module, read at run time; the build
 * must copy `src/hardware/profiles/*.json` next to the compiled module.
 */
import { existsSync } from 'node:fs';
import { z } from 'zod';
import { UserError } from '../errors.ts';
import type { BenchResult } from '../formats/bench.ts';
import { readJsonFile } from '../util/files.ts';

// ------------------------------------------------------------------ evidence

/** Strongest first: every estimate carries the weakest label among the constants it used. */
export const EVIDENCE = [
  'measured',
  'datasheet',
  'post-synthesis',
  'simulated',
  'derived',
  'proxy',
  'assumed',
] as const;
export type Evidence = (typeof EVIDENCE)[number];

/** The weaker of two evidence labels. */
export function weaker(a: Evidence, b: Evidence): Evidence {
  return EVIDENCE.indexOf(a) >= EVIDENCE.indexOf(b) ? a : b;
}

// ------------------------------------------------------------------ constants

interface ConstantSpec {
  /** Accepted units (time constants may be given in clock cycles or nanoseconds). */
  readonly units: readonly [string, ...string[]];
  readonly meaning: string;
  /** Zero is meaningless (a clock, a bandwidth, a lane count). */
  readonly positive?: boolean;
  readonly integer?: boolean;
}

const TIME = ['cycle', 'ns'] as const;

/** Element-wise arithmetic, used by the op table and (add, mul) by every synapse. */
const ARITHMETIC: Record<string, ConstantSpec> = {
  'add.fp32': { units: ['pJ/op'], meaning: 'one FP32 addition or subtraction' },
  'mul.fp32': { units: ['pJ/op'], meaning: 'one FP32 multiplication' },
  'add.fp16': { units: ['pJ/op'], meaning: 'one FP16 addition or subtraction' },
  'mul.fp16': { units: ['pJ/op'], meaning: 'one FP16 multiplication' },
  'add.int8': { units: ['pJ/op'], meaning: 'one INT8 addition' },
  'mul.int8': { units: ['pJ/op'], meaning: 'one INT8 multiplication' },
  cmp: { units: ['pJ/op'], meaning: 'one compare / max (thresholds, relu, WKV max)' },
  exp: { units: ['pJ/op'], meaning: 'one exponential (WKV recurrence, sigmoid)' },
  div: { units: ['pJ/op'], meaning: 'one division (WKV recurrence, sigmoid)' },
  rsqrt: { units: ['pJ/op'], meaning: 'one reciprocal square root (layer norm)' },
};

/** Constants of an event-driven chip (SENECA, Loihi): the formulas of HARDWARE.md. */
export const EVENT_DRIVEN_CONSTANTS: Record<string, ConstantSpec> = {
  clock: { units: ['MHz'], meaning: 'core clock', positive: true },
  lanesPerCore: {
    units: ['lane'],
    meaning: 'parallel neuron processing lanes per core (L)',
    positive: true,
    integer: true,
  },
  memoryWordBits: { units: ['bit'], meaning: 'data-memory word width', positive: true },
  weightRead: { units: ['pJ/word'], meaning: 'read one data-memory word of weights' },
  stateRead: { units: ['pJ/word'], meaning: 'read one word of neuron state' },
  stateWrite: { units: ['pJ/word'], meaning: 'write one word of neuron state' },
  synapse: {
    units: ['pJ/synapse'],
    meaning:
      'one whole synaptic operation, weight read included; when set it replaces weightRead/p + mul + add',
  },
  ...ARITHMETIC,
  eventIn: { units: ['pJ/event'], meaning: 'dispatch of one input event on one core' },
  eventOut: { units: ['pJ/event'], meaning: 'generation of one output event' },
  neuron: { units: ['pJ/neuron'], meaning: 'evaluation of one output neuron once per token' },
  networkHop: { units: ['pJ/hop'], meaning: 'one event crossing one network hop' },
  staticPowerPerCore: { units: ['mW'], meaning: 'static (leakage) power of one core' },
  externalAccess: { units: ['pJ/B'], meaning: 'one byte from external memory' },
  externalBandwidth: { units: ['GB/s'], meaning: 'external memory bandwidth', positive: true },
  timeEvent: { units: TIME, meaning: 'per input event per core (c_event)' },
  timeSynapse: { units: TIME, meaning: 'per synapse per lane (c_syn)' },
  timeState: { units: TIME, meaning: 'per state load+store per lane, once per group of G events' },
  timeNeuron: { units: TIME, meaning: 'per neuron evaluation per lane (c_neuron)' },
  timeOp: { units: TIME, meaning: 'per element-wise op per lane (op table)' },
  hopTime: { units: TIME, meaning: 'one network hop' },
  syncTime: { units: TIME, meaning: 'synchronisation barrier after each layer' },
};

/** Constants of a conventional dense engine (generic digital logic, this CPU). */
export const CONVENTIONAL_CONSTANTS: Record<string, ConstantSpec> = {
  weightBits: {
    units: ['bit'],
    meaning: 'weight width fixed by the engine (null: the mapping decides)',
    positive: true,
  },
  ...ARITHMETIC,
  weightAccess: { units: ['pJ/B'], meaning: 'one byte of weights from on-chip memory' },
  stateAccess: { units: ['pJ/B'], meaning: 'one byte of recurrent state, read or written' },
  externalAccess: { units: ['pJ/B'], meaning: 'one byte from external memory (DRAM)' },
  staticPower: { units: ['mW'], meaning: 'static power of the whole engine' },
  weightBandwidth: {
    units: ['GB/s'],
    meaning: 'effective rate at which a dense GEMV streams weights',
    positive: true,
  },
  memoryBandwidth: {
    units: ['GB/s'],
    meaning: 'memory read bandwidth (a floor: no kernel reads faster)',
    positive: true,
  },
  peakMacs: { units: ['GMAC/s'], meaning: 'peak multiply-accumulate rate', positive: true },
  sparseSpeedup0: {
    units: ['x'],
    meaning: 'zero-skipping GEMV speedup over the dense GEMV at 0% zeros',
    positive: true,
  },
  sparseSpeedup50: { units: ['x'], meaning: 'the same at 50% zeros', positive: true },
  sparseSpeedup70: { units: ['x'], meaning: 'the same at 70% zeros', positive: true },
  sparseSpeedup90: { units: ['x'], meaning: 'the same at 90% zeros', positive: true },
  opTime: { units: ['ns'], meaning: 'one element-wise op (op table)' },
};

export type CostModel = 'event-driven' | 'conventional';

export function constantSpecs(model: CostModel): Record<string, ConstantSpec> {
  return model === 'event-driven' ? EVENT_DRIVEN_CONSTANTS : CONVENTIONAL_CONSTANTS;
}

function constantSchema(spec: ConstantSpec) {
  let value = z.number();
  value = spec.positive ? value.positive() : value.min(0);
  if (spec.integer) value = value.int();
  const [first, ...rest] = spec.units;
  return z
    .strictObject({
      value: value.nullable(),
      unit: rest.length ? z.enum(spec.units as [string, ...string[]]) : z.literal(first),
      evidence: z.enum(EVIDENCE).nullable(),
      source: z.string().min(1),
    })
    .refine((c) => c.value === null || c.evidence !== null, {
      message: 'a constant with a value needs an evidence label',
      path: ['evidence'],
    });
}

export interface Constant {
  value: number | null;
  unit: string;
  evidence: Evidence | null;
  source: string;
}

const ProfileHead = z.strictObject({
  formatVersion: z.literal(1),
  kind: z.literal('actsparse.hardware-profile'),
  name: z.string().min(1),
  title: z.string(),
  description: z.string(),
  costModel: z.enum(['event-driven', 'conventional']),
  /** The quantities this profile promises: a null constant they need is refused. */
  estimates: z.array(z.enum(['energy', 'latency'])),
  constants: z.record(z.string(), z.unknown()),
});

export type Quantity = 'energy' | 'latency';

export interface Profile {
  formatVersion: 1;
  kind: 'actsparse.hardware-profile';
  name: string;
  title: string;
  description: string;
  costModel: CostModel;
  estimates: Quantity[];
  constants: Record<string, Constant>;
  /** Where it was read from (a built-in name's file, or the user's). */
  file: string;
}

const PROFILE_HINT =
  'Every constant is {"value": number|null, "unit", "evidence", "source"}; copy a built-in profile (src/hardware/profiles/*.json) and edit it.';

function issuesText(error: z.ZodError, prefix = ''): string {
  return error.issues
    .slice(0, 3)
    .map(
      (i) =>
        `${[prefix, ...i.path.map(String)].filter(Boolean).join('.') || '(top)'}: ${i.message}`,
    )
    .join('; ');
}

/** Validates a parsed profile object; every problem names the file and the JSON path. */
export function parseProfile(raw: unknown, file: string): Profile {
  const head = ProfileHead.safeParse(raw);
  if (!head.success) {
    throw new UserError(`${file}: not a hardware profile: ${issuesText(head.error)}`, PROFILE_HINT);
  }
  const specs = constantSpecs(head.data.costModel);
  const given = head.data.constants;
  // Every constant must be listed (null when unknown), and nothing else.
  const missing = Object.keys(specs).filter((k) => !(k in given));
  if (missing.length) {
    throw new UserError(
      `${file}: constants.${missing[0]}: missing${missing.length > 1 ? ` (and ${missing.slice(1).join(', ')})` : ''}; a ${head.data.costModel} profile lists every constant, with value null when unknown`,
      PROFILE_HINT,
    );
  }
  const unknown = Object.keys(given).filter((k) => !(k in specs));
  if (unknown.length) {
    throw new UserError(
      `${file}: constants.${unknown[0]}: not a constant of a ${head.data.costModel} profile (known: ${Object.keys(specs).join(', ')})`,
      PROFILE_HINT,
    );
  }
  const constants: Record<string, Constant> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const r = constantSchema(spec).safeParse(given[name]);
    if (!r.success) {
      throw new UserError(
        `${file}: ${issuesText(r.error, `constants.${name}`)} (${spec.meaning}; unit ${spec.units.join(' or ')})`,
        PROFILE_HINT,
      );
    }
    constants[name] = r.data as Constant;
  }
  return { ...head.data, constants, file };
}

export const BUILTIN_PROFILES = ['seneca', 'loihi', 'generic45', 'cpu'] as const;

function builtinUrl(file: string): URL {
  const url = new URL(`./profiles/${file}`, import.meta.url);
  if (!existsSync(url)) {
    throw new UserError(
      `built-in hardware data ${file} is missing beside ${new URL('.', import.meta.url).pathname}`,
      'The build must copy src/hardware/profiles/*.json next to the compiled module (see tsconfig.build.json).',
    );
  }
  return url;
}

/** A built-in profile by name, or a profile JSON file. */
export function loadProfile(nameOrPath: string): Profile {
  if ((BUILTIN_PROFILES as readonly string[]).includes(nameOrPath)) {
    const url = builtinUrl(`${nameOrPath}.json`);
    return parseProfile(readJsonFile(url, `profile ${nameOrPath}`), url.pathname);
  }
  if (!existsSync(nameOrPath)) {
    throw new UserError(
      `--profile ${nameOrPath}: neither a built-in profile nor a file`,
      `Built-in profiles: ${BUILTIN_PROFILES.join(', ')}; or give a profile JSON file.`,
    );
  }
  return parseProfile(readJsonFile(nameOrPath, nameOrPath), nameOrPath);
}

// ------------------------------------------------------------------ mapping

const Precision = z.enum(['fp32', 'fp16', 'int8']);
export type Precision = z.infer<typeof Precision>;
export const PRECISION_BITS: Record<Precision, number> = { fp32: 32, fp16: 16, int8: 8 };

const MappingSchema = z.strictObject({
  formatVersion: z.literal(1),
  kind: z.literal('actsparse.hardware-mapping'),
  description: z.string(),
  /** Cores per linear layer (C): a number, or "fit" = as many as its weights need. */
  cores: z.union([z.literal('fit'), z.number().int().min(1)]),
  /** Weight bytes one core holds, for "fit". */
  coreWeightBytes: z.number().int().min(1),
  /** Cores for particular layers by site id (or "head"), overriding `cores`. */
  coresPerSite: z.record(z.string(), z.number().int().min(1)),
  /** Cores that run the element-wise ops of a block ("fit": those of its first site layer). */
  opCores: z.union([z.literal('fit'), z.number().int().min(1)]),
  /** G: input events accumulated before the neuron states are written back. */
  stateGroup: z.number().int().min(1),
  weightPrecision: Precision,
  activationPrecision: Precision,
  /** Share of weight bytes fetched from external memory each time they are used. */
  externalWeightShare: z.number().min(0).max(1),
  /** Network hops an event travels (per destination core). */
  hopsPerEvent: z.number().min(0),
  /** Why each value was chosen. */
  sources: z.record(z.string(), z.string()),
});
export type Mapping = z.infer<typeof MappingSchema> & { file: string };

export function parseMapping(raw: unknown, file: string): Mapping {
  const r = MappingSchema.safeParse(raw);
  if (!r.success) {
    throw new UserError(
      `${file}: not a hardware mapping: ${issuesText(r.error)}`,
      'Copy src/hardware/profiles/default-mapping.json and edit it.',
    );
  }
  return { ...r.data, file };
}

/** The mapping file given, or the built-in default. */
export function loadMapping(path?: string): Mapping {
  if (path) return parseMapping(readJsonFile(path, path), path);
  return parseMapping(
    readJsonFile(builtinUrl('default-mapping.json'), 'default mapping'),
    'built-in',
  );
}

// ------------------------------------------------------------------ --set

/**
 * Applies `name=value[:evidence]` overrides: a profile constant (`exp=5`, `exp=5:measured`,
 * `exp=null`) or a mapping field (`mapping.stateGroup=16`). A value set this way is
 * labelled `assumed` unless an evidence label follows it.
 */
export function applySets(
  profile: Profile,
  mapping: Mapping,
  sets: readonly string[],
): { profile: Profile; mapping: Mapping } {
  const constants = { ...profile.constants };
  const m: Record<string, unknown> = { ...mapping };
  const specs = constantSpecs(profile.costModel);
  for (const s of sets) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new UserError(`--set ${s}: expected NAME=VALUE (e.g. --set exp=5)`);
    const name = s
      .slice(0, eq)
      .trim()
      .replace(/^constants\./, '')
      .replace(/\.value$/, '');
    const rhs = s.slice(eq + 1).trim();
    if (name.startsWith('mapping.')) {
      const field = name.slice('mapping.'.length);
      if (!(field in MappingSchema.shape) || field === 'formatVersion' || field === 'kind') {
        throw new UserError(
          `--set ${s}: the mapping has no field ${field}`,
          `Mapping fields: ${Object.keys(MappingSchema.shape)
            .filter((k) => k !== 'formatVersion' && k !== 'kind')
            .join(', ')}.`,
        );
      }
      m[field] = rhs !== '' && Number.isFinite(Number(rhs)) ? Number(rhs) : rhs;
      continue;
    }
    const spec = specs[name];
    if (!spec) {
      throw new UserError(
        `--set ${s}: ${profile.name} (${profile.costModel}) has no constant ${name}`,
        `Constants: ${Object.keys(specs).join(', ')}; mapping fields as mapping.<field>.`,
      );
    }
    const colon = rhs.lastIndexOf(':');
    const valueText = colon > 0 ? rhs.slice(0, colon) : rhs;
    const evidence = colon > 0 ? rhs.slice(colon + 1) : 'assumed';
    if (!(EVIDENCE as readonly string[]).includes(evidence)) {
      throw new UserError(`--set ${s}: evidence must be one of ${EVIDENCE.join(', ')}`);
    }
    const value = valueText === 'null' ? null : Number(valueText);
    if (
      value !== null &&
      (valueText === '' ||
        !Number.isFinite(value) ||
        value < 0 ||
        (spec.positive && value === 0) ||
        (spec.integer && !Number.isInteger(value)))
    ) {
      throw new UserError(
        `--set ${s}: ${name} must be ${spec.integer ? 'an integer' : 'a number'} ${spec.positive ? '> 0' : '≥ 0'} in ${constants[name].unit} (or null)`,
      );
    }
    constants[name] = {
      ...constants[name],
      value,
      evidence: value === null ? null : (evidence as Evidence),
      source: `set on the command line (--set ${s}); the profile had ${constants[name].value ?? 'null'}: ${constants[name].source}`,
    };
  }
  const { file, ...rest } = m as Mapping;
  const mappingSets = sets.filter((x) => x.trim().startsWith('mapping.'));
  return {
    profile: { ...profile, constants },
    mapping: mappingSets.length
      ? parseMapping(rest, `${file} with --set ${mappingSets.join(' ')}`)
      : mapping,
  };
}

// ------------------------------------------------------------------ bench

/**
 * Fills a conventional profile from bench measurements: the dense GEMV rate, memory
 * bandwidth, GEMM peak and the zero-skipping speedups of the backend the bench timed
 * the model with (its first), at its largest thread count.
 */
export function profileWithBench(profile: Profile, bench: BenchResult, file: string): Profile {
  if (profile.costModel !== 'conventional') {
    throw new UserError(
      `--bench fills a conventional profile (cpu); ${profile.name} is ${profile.costModel}`,
    );
  }
  const backend = bench.gemv[0]?.backend;
  if (!backend) throw new UserError(`${file}: no GEMV measurement`);
  const threads = Math.max(
    ...bench.gemv.filter((g) => g.backend === backend).map((g) => g.threads),
  );
  const at = <T extends { backend: string; threads: number }>(xs: T[]) =>
    xs.find((x) => x.backend === backend && x.threads === threads);
  const where = `${backend}, ${threads} thread${threads > 1 ? 's' : ''}, on ${bench.machine.cpu}`;
  const constants = { ...profile.constants };
  const put = (name: string, value: number | undefined, what: string) => {
    if (value === undefined || !(name in constants)) return;
    constants[name] = {
      ...constants[name],
      value,
      evidence: 'measured',
      source: `actsparse bench (${file}): ${what}, ${where}; median`,
    };
  };
  const gemv = at(bench.gemv)!;
  put('weightBandwidth', gemv.gbps.median, `dense GEMV ${gemv.shape} fp32, caches evicted`);
  put(
    'memoryBandwidth',
    bench.bandwidth.find((b) => b.threads === threads)?.gbps.median,
    'memory read bandwidth',
  );
  const gemm = at(bench.gemm);
  put('peakMacs', gemm ? gemm.gflops.median / 2 : undefined, 'GEMM GFLOPS ÷ 2');
  for (const z0 of [0, 50, 70, 90]) {
    const s = bench.sparse.find(
      (x) => x.backend === backend && x.threads === threads && Math.abs(x.zeros * 100 - z0) < 1e-6,
    );
    put(`sparseSpeedup${z0}`, s?.speedup.median, `zero-skipping GEMV at ${z0}% zeros`);
  }
  return { ...profile, constants };
}
