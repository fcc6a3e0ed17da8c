/**
 * A pickle interpreter for the `data.pkl` of PyTorch checkpoints. It never runs code:
 * globals resolve only through a small allow-list into inert descriptors, and the few
 * "calls" torch needs (`_rebuild_tensor_v2`, `OrderedDict()`, …) are interpreted here.
 * Work is bounded (ops, stack, memo) so a hostile pickle cannot hang or exhaust memory;
 * a pickle has no jumps, so the op count is also bounded by its length.
 */
import { FormatError } from '../errors.ts';
import type { StoredDType } from './checkpoint.ts';
import { printable } from './text.ts';

/** A dict (or OrderedDict); keys are strings, numbers, bigints, booleans, null or tuples. */
export class PyDict {
  readonly map = new Map<PickleValue, PickleValue>();
  constructor(readonly ordered: boolean) {}
}

/** A global from the allow-list; inert: only the interpreter knows what it stands for. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly kind: GlobalKind,
  ) {}
}

/** A typed torch storage named by a persistent id: bytes in `<root>/data/<key>`. */
export class StorageRef {
  constructor(
    readonly key: string,
    readonly dtype: StoredDType,
    /** Elements in the storage. */
    readonly numel: number,
    /** Device the tensor was saved from ('cpu', 'cuda:0'); data is on disk either way. */
    readonly location: string,
  ) {}
}

/** A tensor view of a storage, from `_rebuild_tensor_v2`. Offset and strides in elements. */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {}
}

/**
 * Unpickled values. Tuples are frozen arrays, lists plain arrays; sets and frozensets
 * become frozen arrays too.
 */
export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | readonly PickleValue[]
  | PyDict
  | PyGlobal
  | StorageRef
  | TensorRef;

type GlobalKind =
  | 'OrderedDict'
  | 'rebuild_tensor_v2'
  | 'rebuild_parameter'
  | 'rebuild_parameter_with_state'
  | 'rebuild_from_type_v2'
  | 'storage'
  | 'set'
  | 'frozenset'
  | 'Size'
  | 'device'
  | 'codecs_encode'
  | 'inert';

/** torch storage classes and the dtype of their elements. */
export const STORAGE_DTYPES: Readonly<Record<string, StoredDType>> = {
  FloatStorage: 'f32',
  HalfStorage: 'f16',
  BFloat16Storage: 'bf16',
  DoubleStorage: 'f64',
  LongStorage: 'i64',
  IntStorage: 'i32',
  ShortStorage: 'i16',
  CharStorage: 'i8',
  ByteStorage: 'u8',
  BoolStorage: 'bool',
};

const TORCH_DTYPES = new Set([
  'float32',
  'float',
  'float16',
  'half',
  'bfloat16',
  'float64',
  'double',
  'int64',
  'long',
  'int32',
  'int',
  'int16',
  'short',
  'int8',
  'uint8',
  'bool',
]);

/** The allow-list: module.name → what it stands for. Anything else is refused. */
const GLOBALS: Readonly<Record<string, GlobalKind>> = {
  'collections.OrderedDict': 'OrderedDict',
  'torch._utils._rebuild_tensor_v2': 'rebuild_tensor_v2',
  'torch._utils._rebuild_parameter': 'rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state': 'rebuild_parameter_with_state',
  'torch._tensor._rebuild_from_type_v2': 'rebuild_from_type_v2',
  'torch.Tensor': 'inert',
  'torch.nn.parameter.Parameter': 'inert',
  'torch.Size': 'Size',
  'torch.device': 'device',
  '__builtin__.set': 'set',
  'builtins.set': 'set',
  '__builtin__.frozenset': 'frozenset',
  'builtins.frozenset': 'frozenset',
  '_codecs.encode': 'codecs_encode',
};

function resolveGlobal(module: string, name: string, file: string): PyGlobal {
  const full = `${module}.${name}`;
  const kind = GLOBALS[full];
  if (kind) return new PyGlobal(module, name, kind);
  if (module === 'torch' && STORAGE_DTYPES[name]) return new PyGlobal(module, name, 'storage');
  if (module === 'torch' && TORCH_DTYPES.has(name)) return new PyGlobal(module, name, 'inert');
  if (module === 'torch' && /^[A-Za-z0-9]+Storage$/.test(name)) {
    throw new FormatError(
      file,
      `tensor storage type ${full} is not supported (supported: ${Object.keys(STORAGE_DTYPES).join(', ')})`,
    );
  }
  throw new FormatError(
    file,
    `refusing pickle global ${printable(full)}: not a tensor checkpoint (actsparse never runs code from files)`,
    'Load only weight files (state_dicts) from sources you trust; convert other pickles with PyTorch first.',
  );
}

export interface PickleLimits {
  maxOps: number;
  maxStack: number;
  maxMemo: number;
  /** Values created (strings, numbers, containers, …); bounds memory. */
  maxValues: number;
}

/** Far above real checkpoints (~15 values per tensor), far below running out of memory. */
export const DEFAULT_LIMITS: PickleLimits = {
  maxOps: 1 << 25,
  maxStack: 1 << 20,
  maxMemo: 1 << 22,
  maxValues: 1 << 21,
};

export interface Unpickled {
  value: PickleValue;
  /** Protocol from the PROTO opcode (0 when absent). */
  protocol: number;
  /** Storages by key, in first-seen order. */
  storages: ReadonlyMap<string, StorageRef>;
}

/**
 * Interprets a torch `data.pkl`. `file` names the source in errors (e.g.
 * "model.pth (archive/data.pkl)").
 */
export function unpickle(
  data: Uint8Array,
  file: string,
  limits: PickleLimits = DEFAULT_LIMITS,
): Unpickled {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const stack: PickleValue[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PickleValue>();
  const storages = new Map<string, StorageRef>();
  let pos = 0;
  let protocol = 0;
  let ops = 0;
  let values = 0;

  const fail = (what: string): never => {
    throw new FormatError(file, `pickle: ${what} (at byte ${pos})`);
  };
  const need = (n: number): void => {
    if (n < 0 || pos + n > buf.length)
      fail(`needs ${n} more bytes but the pickle ends at ${buf.length}`);
  };
  const u8 = (): number => {
    need(1);
    return buf[pos++];
  };
  const u16 = (): number => {
    need(2);
    pos += 2;
    return buf.readUInt16LE(pos - 2);
  };
  const u32 = (): number => {
    need(4);
    pos += 4;
    return buf.readUInt32LE(pos - 4);
  };
  const u64 = (): number => {
    need(8);
    const v = buf.readBigUInt64LE(pos);
    pos += 8;
    if (v > BigInt(buf.length)) fail(`declared length ${v} is past the end of the pickle`);
    return Number(v);
  };
  const bytes = (n: number): Buffer => {
    need(n);
    pos += n;
    return buf.subarray(pos - n, pos);
  };
  const line = (): string => {
    // Module and class names are short; look no further than 1 KiB for the newline.
    const nl = buf.subarray(pos, pos + 1025).indexOf(0x0a);
    if (nl < 0) fail('unterminated or overlong text line');
    const end = pos + nl;
    const s = buf.toString('latin1', pos, end);
    pos = end + 1;
    return s;
  };
  // pushRef re-pushes an existing value (DUP, BINGET); push counts a new one.
  const pushRef = (v: PickleValue): void => {
    if (stack.length >= limits.maxStack) fail(`stack deeper than ${limits.maxStack}`);
    stack.push(v);
  };
  const push = (v: PickleValue): void => {
    if (++values > limits.maxValues) fail(`more than ${limits.maxValues} values`);
    pushRef(v);
  };
  const pop = (): PickleValue => {
    const base = marks.length ? marks[marks.length - 1] : 0;
    if (stack.length <= base) fail('stack underflow');
    return stack.pop() as PickleValue;
  };
  const top = (): PickleValue => {
    const base = marks.length ? marks[marks.length - 1] : 0;
    if (stack.length <= base) fail('stack underflow');
    return stack[stack.length - 1];
  };
  // Items pushed since the last MARK, which is removed.
  const popMark = (): PickleValue[] => {
    const m = marks.pop();
    if (m === undefined) fail('no MARK to pop to');
    return stack.splice(m as number);
  };
  const put = (i: number, v: PickleValue): void => {
    if (!memo.has(i) && memo.size >= limits.maxMemo) fail(`memo larger than ${limits.maxMemo}`);
    memo.set(i, v);
  };
  const get = (i: number): PickleValue => {
    const v = memo.get(i);
    if (v === undefined) fail(`memo index ${i} was never stored`);
    return v as PickleValue;
  };
  const setItems = (d: PickleValue, kv: PickleValue[]): void => {
    if (!(d instanceof PyDict)) fail(`SETITEM on a ${typeName(d)}, not a dict`);
    if (kv.length % 2) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < kv.length; i += 2) (d as PyDict).map.set(hashable(kv[i], fail), kv[i + 1]);
  };
  const appendItems = (l: PickleValue, items: PickleValue[]): void => {
    if (!Array.isArray(l) || Object.isFrozen(l)) fail(`APPEND on a ${typeName(l)}, not a list`);
    for (const it of items) (l as PickleValue[]).push(it);
  };
  const persistentLoad = (pid: PickleValue): StorageRef => {
    const sref = storageFromPid(pid, fail);
    const prev = storages.get(sref.key);
    if (!prev) {
      storages.set(sref.key, sref);
      return sref;
    }
    if (prev.dtype !== sref.dtype || prev.numel !== sref.numel) {
      fail(`storage "${sref.key}" is named twice with different types or sizes`);
    }
    return prev;
  };

  for (;;) {
    if (++ops > limits.maxOps) fail(`more than ${limits.maxOps} operations`);
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        protocol = u8();
        if (protocol > 5) fail(`unsupported pickle protocol ${protocol}`);
        break;
      case 0x95: // FRAME: an 8-byte length we do not need
        u64();
        break;
      case 0x2e: {
        // STOP
        if (marks.length) fail('STOP inside an open MARK');
        if (stack.length !== 1) fail(`STOP with ${stack.length} values on the stack, expected 1`);
        return { value: stack[0], protocol, storages };
      }
      case 0x28: // MARK
        if (marks.length >= limits.maxStack) fail(`more than ${limits.maxStack} open MARKs`);
        marks.push(stack.length);
        break;
      case 0x30: // POP
        if (stack.length === (marks.length ? marks[marks.length - 1] : 0) && marks.length) {
          marks.pop(); // CPython pops a MARK when it is on top
        } else pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        pushRef(top());
        break;
      case 0x7d: // EMPTY_DICT
        push(new PyDict(false));
        break;
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        push(Object.freeze([]));
        break;
      case 0x8f: // EMPTY_SET
        push([]);
        break;
      case 0x90: // ADDITEMS
        appendItems(stackAtMark(stack, marks, fail), popMark());
        break;
      case 0x91: // FROZENSET
        push(Object.freeze(popMark()));
        break;
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x4a: // BININT: signed 32-bit
        need(4);
        push(buf.readInt32LE(pos));
        pos += 4;
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x8a: // LONG1: little-endian two's complement of n ≤ 255 bytes
        push(readLong(bytes(u8())));
        break;
      case 0x8b: {
        // LONG4: torch never needs more than 8 bytes; refuse giant integers
        const n = u32();
        if (n > 1024) fail(`LONG4 of ${n} bytes`);
        push(readLong(bytes(n)));
        break;
      }
      case 0x47: // BINFLOAT: big-endian float64
        need(8);
        push(buf.readDoubleBE(pos));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        push(bytes(u32()).toString('utf8'));
        break;
      case 0x8d: // BINUNICODE8
        push(bytes(u64()).toString('utf8'));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(bytes(u8()).toString('utf8'));
        break;
      case 0x54: // BINSTRING (Python 2 str)
        push(bytes(u32()).toString('latin1'));
        break;
      case 0x55: // SHORT_BINSTRING
        push(bytes(u8()).toString('latin1'));
        break;
      case 0x42: // BINBYTES
        push(new Uint8Array(bytes(u32())));
        break;
      case 0x43: // SHORT_BINBYTES
        push(new Uint8Array(bytes(u8())));
        break;
      case 0x8e: // BINBYTES8
        push(new Uint8Array(bytes(u64())));
        break;
      case 0x74: // TUPLE
        push(Object.freeze(popMark()));
        break;
      case 0x85: // TUPLE1
        push(Object.freeze([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        push(Object.freeze([pop(), b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        push(Object.freeze([pop(), b, c]));
        break;
      }
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x64: {
        // DICT
        const d = new PyDict(false);
        setItems(d, popMark());
        push(d);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: // SETITEMS
        setItems(stackAtMark(stack, marks, fail), popMark());
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: // APPENDS
        appendItems(stackAtMark(stack, marks, fail), popMark());
        break;
      case 0x71: // BINPUT
        put(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        put(u32(), top());
        break;
      case 0x94: // MEMOIZE
        put(memo.size, top());
        break;
      case 0x68: // BINGET
        pushRef(get(u8()));
        break;
      case 0x6a: // LONG_BINGET
        pushRef(get(u32()));
        break;
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        push(resolveGlobal(module, line(), file));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string')
          fail('STACK_GLOBAL needs two strings');
        push(resolveGlobal(module as string, name as string, file));
        break;
      }
      case 0x52: // REDUCE: callable(*args)
      case 0x81: {
        // NEWOBJ: cls.__new__(cls, *args); the allowed classes behave alike
        const args = pop();
        const fn = pop();
        if (!Array.isArray(args))
          fail(
            `${op === 0x52 ? 'REDUCE' : 'NEWOBJ'} arguments are a ${typeName(args)}, not a tuple`,
          );
        push(call(fn, args as readonly PickleValue[], fail));
        break;
      }
      case 0x62: {
        // BUILD: sets state on the object below; tensors and dicts carry only metadata
        pop();
        const obj = top();
        if (!(obj instanceof PyDict || obj instanceof TensorRef))
          fail(`BUILD on a ${typeName(obj)}`);
        break;
      }
      case 0x51: // BINPERSID
        push(persistentLoad(pop()));
        break;
      default:
        pos--;
        fail(`unsupported or invalid opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}

/** The object just below the innermost MARK (the target of SETITEMS/APPENDS). */
function stackAtMark(
  stack: PickleValue[],
  marks: number[],
  fail: (w: string) => never,
): PickleValue {
  const m = marks.length ? marks[marks.length - 1] : -1;
  const below = marks.length > 1 ? marks[marks.length - 2] : 0;
  if (m < 1 || m - 1 < below) fail('SETITEMS/APPENDS without a target below the MARK');
  return stack[m - 1];
}

/** Interprets a call of an allowed global; anything not callable is an error. */
function call(
  fn: PickleValue,
  args: readonly PickleValue[],
  fail: (w: string) => never,
): PickleValue {
  if (!(fn instanceof PyGlobal)) return fail(`call of a ${typeName(fn)}`);
  const name = `${fn.module}.${fn.name}`;
  switch (fn.kind) {
    case 'OrderedDict': {
      const d = new PyDict(true);
      // OrderedDict() or OrderedDict([(k, v), …]) from protocol 0/1 pickles.
      if (args.length > 1) fail(`${name} with ${args.length} arguments`);
      if (args.length === 1) {
        const items = args[0];
        if (!Array.isArray(items)) fail(`${name} argument is a ${typeName(items)}`);
        for (const kv of items as PickleValue[]) {
          if (!Array.isArray(kv) || kv.length !== 2)
            fail(`${name} item is not a (key, value) pair`);
          const pair = kv as PickleValue[];
          d.map.set(hashable(pair[0], fail), pair[1]);
        }
      }
      return d;
    }
    case 'rebuild_tensor_v2':
      return rebuildTensor(args, fail);
    case 'rebuild_parameter':
    case 'rebuild_parameter_with_state':
      // (data, requires_grad, backward_hooks[, state]) → the tensor itself
      if (args.length < 3 || !(args[0] instanceof TensorRef))
        fail(`${name} needs a tensor argument`);
      return args[0];
    case 'rebuild_from_type_v2': {
      // (func, new_type, args, state) → func(*args); the subclass is dropped
      if (args.length !== 4 || !Array.isArray(args[2]))
        fail(`${name} needs (func, type, args, state)`);
      const t = call(args[0], args[2] as readonly PickleValue[], fail);
      if (!(t instanceof TensorRef)) fail(`${name} did not rebuild a tensor`);
      return t;
    }
    case 'set':
    case 'frozenset': {
      if (args.length === 0) return Object.freeze([]);
      if (args.length !== 1 || !Array.isArray(args[0])) fail(`${name} needs one list`);
      return Object.freeze([...(args[0] as PickleValue[])]);
    }
    case 'Size':
      if (args.length !== 1 || !Array.isArray(args[0])) fail(`${name} needs one tuple`);
      return Object.freeze([...(args[0] as PickleValue[])]);
    case 'device':
      if (args.length < 1 || typeof args[0] !== 'string') fail(`${name} needs a device name`);
      return args.length > 1 ? `${args[0]}:${String(args[1])}` : (args[0] as string);
    case 'codecs_encode': {
      // How protocol 2 pickles bytes: _codecs.encode(str, 'latin1').
      if (args.length !== 2 || typeof args[0] !== 'string' || args[1] !== 'latin1') {
        fail(`${name} is only read as encode(str, 'latin1')`);
      }
      return new Uint8Array(Buffer.from(args[0] as string, 'latin1'));
    }
    default:
      return fail(`${name} cannot be called`);
  }
}

/** A persistent id ('storage', StorageClass, key, location, numel) → StorageRef. */
function storageFromPid(pid: PickleValue, fail: (w: string) => never): StorageRef {
  if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage') {
    return fail(`persistent id is not ('storage', type, key, location, numel)`);
  }
  const [, cls, key, location, numel] = pid as PickleValue[];
  if (!(cls instanceof PyGlobal) || cls.kind !== 'storage')
    fail('persistent id without a storage type');
  if (typeof key !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(key)) {
    fail(`storage key ${printable(String(key))} is not a plain name`);
  }
  if (typeof location !== 'string') fail('storage location is not a string');
  if (typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) {
    fail(`storage "${String(key)}" size ${String(numel)} is not a non-negative integer`);
  }
  return new StorageRef(
    key as string,
    STORAGE_DTYPES[(cls as PyGlobal).name],
    numel as number,
    location as string,
  );
}

/** _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]). */
function rebuildTensor(args: readonly PickleValue[], fail: (w: string) => never): TensorRef {
  if (args.length < 4 || args.length > 7) fail(`_rebuild_tensor_v2 with ${args.length} arguments`);
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof StorageRef)) return fail('_rebuild_tensor_v2 without a storage');
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
    return fail(`tensor storage offset ${String(offset)} is not a non-negative integer`);
  }
  const shape = intTuple(size, 'size', fail);
  const strides = intTuple(stride, 'stride', fail);
  if (shape.length !== strides.length) {
    fail(`tensor size has ${shape.length} dimensions but stride has ${strides.length}`);
  }
  // The last element addressed must lie inside the storage.
  let n = 1;
  let last = offset;
  for (let i = 0; i < shape.length; i++) {
    n *= shape[i];
    last += (shape[i] - 1) * strides[i];
  }
  // More elements than the storage holds means an expanded (overlapping) view, which
  // torch does not write for weights; refusing it bounds memory by the file size.
  if (!Number.isSafeInteger(n) || n > storage.numel) {
    fail(
      `tensor of shape [${shape.join(', ')}] has more elements than its storage "${storage.key}" (${storage.numel})`,
    );
  }
  if (n > 0 && (!Number.isSafeInteger(last) || last >= storage.numel)) {
    fail(
      `tensor [${shape.join(', ')}] at offset ${offset} with strides [${strides.join(', ')}] reaches past storage "${storage.key}" of ${storage.numel} elements`,
    );
  }
  return new TensorRef(storage, offset, shape, strides);
}

function intTuple(v: PickleValue, what: string, fail: (w: string) => never): number[] {
  if (!Array.isArray(v) || v.length > 64) return fail(`tensor ${what} is not a tuple of integers`);
  const out: number[] = [];
  for (const x of v as PickleValue[]) {
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0 || x > 2 ** 48) {
      fail(`tensor ${what} entry ${String(x)} is not a plausible integer`);
    }
    out.push(x as number);
  }
  return out;
}

/** Little-endian two's complement integer; a number when exact, else a bigint. */
function readLong(b: Buffer): number | bigint {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : v;
}

/** Dict keys must be immutable, as in Python. */
function hashable(k: PickleValue, fail: (w: string) => never): PickleValue {
  if (k instanceof PyDict || (Array.isArray(k) && !Object.isFrozen(k)) || k instanceof Uint8Array) {
    return fail(`unhashable dict key (a ${typeName(k)})`);
  }
  return k;
}

/** Python-ish type name of a value, for messages (never recursive). */
export function typeName(v: PickleValue): string {
  if (v === null) return 'None';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return Object.isFrozen(v) ? 'tuple' : 'list';
  if (v instanceof PyDict) return v.ordered ? 'OrderedDict' : 'dict';
  if (v instanceof PyGlobal) return `${v.module}.${v.name}`;
  if (v instanceof StorageRef) return 'storage';
  return 'tensor';
}

export { printable };
