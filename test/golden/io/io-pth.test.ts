import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { FormatError, UserError } from '../../../src/errors.ts';
import { bf16ToFloat, floatToBf16, floatToHalf, halfToFloat } from '../../../src/io/dtype.ts';
import { FileSource } from '../../../src/io/file.ts';
import { PyDict, unpickle } from '../../../src/io/pickle.ts';
import { isPth, openPth } from '../../../src/io/pth.ts';
import { PickleWriter, type PthTensor, writePth, writeZip } from '../../../src/io/pth-writer.ts';
import { ZipArchive } from '../../../src/io/zip.ts';
import { assertClose } from '../../helpers/assert.ts';
import { needsShared, shared, tmpDir } from '../../helpers/shared.ts';

const TOY = 'models/pth/rwkv7-toy-reverse-L2.pth';
const BROWN = 'models/pth/brown-rwkv4-3m.bf16.pth';

/** Sum in float64, in order (as Python's sum over the same values). */
function sum(a: Float32Array): number {
  let s = 0;
  for (const x of a) s += x;
  return s;
}

/*
 * Reference values below were computed once with python3's standard library only:
 * zipfile to read the archive, pickle.Unpickler with find_class returning fakes for
 * collections.OrderedDict / torch._utils._rebuild_tensor_v2 / torch.*Storage and a
 * persistent_load returning (class, key, numel), then struct.unpack('<f') (f32) or
 * struct.unpack('<H') shifted left 16 bits (bf16) on <root>/data/<key>, sliced at the
 * storage offset; sums are Python's float sum in element order.
 */
describe('real checkpoint: rwkv7-toy-reverse-L2.pth (f32)', () => {
  test('names, shapes, meta and spot values', needsShared(TOY), () => {
    const ck = openPth(shared(TOY));
    try {
      assert.equal(ck.format, 'pth');
      assert.equal(ck.tensors.size, 99);
      const names = [...ck.tensors.keys()];
      assert.equal(names[0], 'e.weight');
      assert.equal(names[1], 'ln1a.weight');
      assert.equal(names[98], 'o.bias');
      // Names grouped by shape, as python listed them.
      const byShape: Record<string, string> = {
        '12x32': 'e.weight o.weight',
        '12': 'o.bias',
        '2x16': 'rwkv1.r_k rwkv2.r_k',
        '128x32': 'ffn1.key.weight ffn2.key.weight',
        '32x128': 'ffn1.value.weight ffn2.value.weight',
        '32x8': 'rwkv1.w1 rwkv1.a1 rwkv1.v1 rwkv1.g1 rwkv2.w1 rwkv2.a1 rwkv2.v1 rwkv2.g1',
        '8x32': 'rwkv1.w2 rwkv1.a2 rwkv1.v2 rwkv1.g2 rwkv2.w2 rwkv2.a2 rwkv2.v2 rwkv2.g2',
      };
      const groups = new Map<string, string[]>();
      for (const [name, e] of ck.tensors) {
        const key = e.shape.join('x');
        groups.set(key, [...(groups.get(key) ?? []), name]);
        assert.equal(e.dtype, 'f32');
        assert.equal(e.fileName, name);
        assert.equal(e.byteLength, e.shape.reduce((a, b) => a * b, 1) * 4);
      }
      for (const [shape, list] of Object.entries(byShape)) {
        assert.deepEqual(groups.get(shape), list.split(' '), `shape ${shape}`);
      }
      assert.equal(groups.get('32')?.length, 26);
      assert.equal(groups.get('1x1x32')?.length, 32);
      assert.equal(groups.get('32x32')?.length, 16);
      assert.deepEqual(ck.meta, {
        zipRoot: 'no_rosa5',
        pickleProtocol: 2,
        zip64: true,
        storages: 99,
        byteorder: 'little',
        storageAlignment: 64,
        formatVersion: '1',
      });

      const e = ck.read('e.weight');
      assert.deepEqual(e.shape, [12, 32]);
      assert.deepEqual(
        [...e.data.subarray(0, 3)],
        [-0.00894071813672781, 0.47992706298828125, -0.06490503996610641],
      );
      assert.equal(e.data[383], -3.8698651790618896);
      assertClose([sum(e.data)], [-29.3548582395], { atol: 1e-9, label: 'sum e.weight' });
      assert.equal(ck.read('rwkv1.r_k').data[21], -0.05428340286016464);
      const v = ck.read('ffn2.value.weight');
      assert.deepEqual(v.shape, [32, 128]);
      assert.equal(v.data[4095], 0.06608154624700546);
      assertClose([sum(v.data)], [-53.851801213], { atol: 1e-8, label: 'sum ffn2.value' });
      const w0 = ck.read('rwkv2.w0');
      assert.deepEqual(w0.shape, [1, 1, 32]);
      assert.equal(w0.data[31], 2.4199717044830322);
      assert.deepEqual([...ck.read('ln1c.weight').data], new Array(32).fill(1));

      // Every tensor, all together: 39564 values summing to 280.317058.
      let n = 0;
      let total = 0;
      for (const name of names) {
        const t = ck.read(name);
        n += t.data.length;
        total += sum(t.data);
      }
      assert.equal(n, 39564);
      assertClose([total], [280.317058], { atol: 1e-6, label: 'total sum' });
    } finally {
      ck.close();
    }
  });
});

describe('real checkpoint: brown-rwkv4-3m.bf16.pth (BlinkDL layout, bf16)', () => {
  test('names, shapes and spot values', needsShared(BROWN), () => {
    const ck = openPth(shared(BROWN));
    try {
      const C = 192;
      const expected = new Map<string, number[]>([
        ['emb.weight', [256, C]],
        ['blocks.0.ln0.weight', [C]],
        ['blocks.0.ln0.bias', [C]],
      ]);
      for (let l = 0; l < 6; l++) {
        const b = `blocks.${l}`;
        for (const n of ['ln1', 'ln2']) {
          expected.set(`${b}.${n}.weight`, [C]);
          expected.set(`${b}.${n}.bias`, [C]);
        }
        expected.set(`${b}.att.time_decay`, [C]);
        expected.set(`${b}.att.time_first`, [C]);
        for (const m of ['k', 'v', 'r']) expected.set(`${b}.att.time_mix_${m}`, [1, 1, C]);
        for (const w of ['key', 'value', 'receptance', 'output']) {
          expected.set(`${b}.att.${w}.weight`, [C, C]);
        }
        expected.set(`${b}.ffn.time_mix_k`, [1, 1, C]);
        expected.set(`${b}.ffn.time_mix_r`, [1, 1, C]);
        expected.set(`${b}.ffn.key.weight`, [4 * C, C]);
        expected.set(`${b}.ffn.receptance.weight`, [C, C]);
        expected.set(`${b}.ffn.value.weight`, [C, 4 * C]);
      }
      expected.set('ln_out.weight', [C]);
      expected.set('ln_out.bias', [C]);
      expected.set('head.weight', [256, C]);
      assert.equal(ck.tensors.size, 114);
      assert.equal(expected.size, 114);
      for (const [name, shape] of expected) {
        const e = ck.tensors.get(name);
        assert.ok(e, `missing ${name}`);
        assert.deepEqual(e.shape, shape, name);
        assert.equal(e.dtype, 'bf16');
      }
      assert.equal(ck.meta.zipRoot, 'brown-rwkv4-3m.bf16');
      assert.equal(ck.meta.storageAlignment, undefined);

      const emb = ck.read('emb.weight');
      assert.deepEqual(
        [...emb.data.subarray(0, 3)],
        [-4.982948303222656e-5, -2.372264862060547e-5, -2.2172927856445312e-5],
      );
      assertClose([sum(emb.data)], [1.61774170847], { atol: 1e-9, label: 'sum emb' });
      assert.equal(ck.read('blocks.3.ffn.key.weight').data[100 * 192 + 17], -0.0400390625);
      const td = ck.read('blocks.5.att.time_decay');
      assert.equal(td.data[7], -5.0);
      assertClose([sum(td.data)], [-441.479125977], { atol: 1e-7, label: 'sum time_decay' });
      const head = ck.read('head.weight');
      assert.equal(head.data[255 * 192 + 191], 0.142578125);
      assertClose([sum(head.data)], [-9.46846985817], { atol: 1e-9, label: 'sum head' });
      assert.deepEqual(
        [...ck.read('blocks.0.ln0.weight').data.subarray(0, 3)],
        [0.96875, 0.95703125, 0.9765625],
      );
    } finally {
      ck.close();
    }
  });
});

/** Values that exercise rounding: random normals plus a few special cases. */
function sample(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * 10 ** ((i % 7) - 3);
  }
  return out;
}

const FIXTURE: PthTensor[] = [
  { name: 'emb.weight', shape: [5, 7], data: sample(35, 1) },
  { name: 'blocks.0.att.time_mix_k', shape: [1, 1, 7], data: sample(7, 2) },
  { name: 'four.dims', shape: [2, 3, 2, 2], data: sample(24, 3) },
  { name: 'big', shape: [70000], data: sample(70000, 4) }, // numel needs BININT
  { name: 'scalar', shape: [], data: new Float32Array([-1.5]) },
  { name: 'empty', shape: [0, 3], data: new Float32Array(0) },
  { name: 'ünïcode.名前', shape: [2], data: new Float32Array([65504, -3e-8]) },
];

describe('writePth → openPth round trip', () => {
  const dir = tmpDir();
  for (const dtype of ['f32', 'f16', 'bf16'] as const) {
    test(`${dtype}`, () => {
      const path = join(dir, `rt-${dtype}.pth`);
      writePth(path, FIXTURE, dtype);
      assert.ok(isPth(readFileSync(path).subarray(0, 16)));
      const ck = openPth(path);
      try {
        assert.deepEqual(
          [...ck.tensors.keys()],
          FIXTURE.map((t) => t.name),
        );
        assert.equal(ck.meta.storageAlignment, 64);
        assert.equal(ck.meta.zip64, false);
        for (const t of FIXTURE) {
          const e = ck.tensors.get(t.name)!;
          assert.deepEqual(e.shape, t.shape);
          assert.equal(e.dtype, dtype);
          const got = ck.read(t.name);
          assert.deepEqual(got.shape, t.shape);
          // Exactly the value rounded to the stored type, as torch would round it.
          const want = t.data.map((x) =>
            dtype === 'f32'
              ? x
              : dtype === 'f16'
                ? halfToFloat(floatToHalf(x))
                : bf16ToFloat(floatToBf16(x)),
          );
          assert.deepEqual(got.data, want, t.name);
          const rtol = dtype === 'f32' ? 0 : dtype === 'f16' ? 2 ** -11 : 2 ** -8;
          // f16 subnormals lose relative precision; allow their absolute step.
          assertClose(got.data, t.data, {
            rtol,
            atol: dtype === 'f16' ? 2 ** -25 : 0,
            label: t.name,
          });
        }
      } finally {
        ck.close();
      }
    });
  }

  test('storage data is 64-byte aligned in the file', () => {
    const path = join(dir, 'align.pth');
    writePth(path, FIXTURE, 'bf16');
    const src = new FileSource(path);
    try {
      const zip = ZipArchive.open(src);
      for (const e of zip.entries.values()) assert.equal(e.dataOffset % 64, 0, e.name);
    } finally {
      src.close();
    }
  });

  test('forced ZIP64 records and a deflated data.pkl read the same', () => {
    const path = join(dir, 'z64.pth');
    writePth(path, FIXTURE, 'f32', { forceZip64: true, root: 'my model' });
    const ck = openPth(path);
    try {
      assert.equal(ck.meta.zip64, true);
      assert.equal(ck.meta.zipRoot, 'my model');
      assert.deepEqual(ck.read('four.dims').data, FIXTURE[2].data);
    } finally {
      ck.close();
    }
    // Rewrite the same entries with data.pkl and one storage deflated.
    const src = new FileSource(path);
    const zip = ZipArchive.open(src);
    const entries = [...zip.entries.values()].map((e) => ({
      name: e.name,
      data: new Uint8Array(zip.readAll(e, e.name)),
      deflate: e.name.endsWith('data.pkl') || e.name.endsWith('data/3'),
    }));
    src.close();
    const deflated = join(dir, 'deflated.pth');
    writeZip(deflated, entries);
    const zsrc = new FileSource(deflated);
    const z = ZipArchive.open(zsrc);
    assert.equal(z.get('my model/data.pkl')?.method, 8);
    assert.ok(z.get('my model/data/3')!.compressedSize < 70000 * 4);
    zsrc.close();
    const ck2 = openPth(deflated);
    try {
      assert.deepEqual(ck2.read('big').data, FIXTURE[3].data);
      assert.deepEqual(ck2.read('emb.weight').data, FIXTURE[0].data);
    } finally {
      ck2.close();
    }
  });
});

/** A torch-like archive around a hand-made pickle and raw storages. */
function craft(
  path: string,
  pickle: Uint8Array,
  storages: Uint8Array[],
  extra: Record<string, string> = {},
) {
  writeZip(path, [
    { name: 'root/data.pkl', data: pickle },
    ...Object.entries(extra).map(([k, v]) => ({ name: `root/${k}`, data: Buffer.from(v) })),
    ...storages.map((data, i) => ({ name: `root/data/${i}`, data })),
  ]);
}

/** Pickle of {name: tensor} for (name, storage key, offset, shape, stride) rows. */
function statePickle(
  rows: [string, number, number, number[], number[]][],
  numels: number[],
  wrap?: string,
): Uint8Array {
  const p = new PickleWriter();
  p.op(0x80, 2);
  if (wrap) {
    p.op(0x7d); // {wrap: {...}, 'epoch': 3}
    p.unicode(wrap);
  }
  p.op(0x7d, 0x28); // EMPTY_DICT, MARK
  for (const [name, key, offset, shape, stride] of rows) {
    p.unicode(name);
    p.global('torch._utils', '_rebuild_tensor_v2');
    p.op(0x28, 0x28);
    p.unicode('storage');
    p.global('torch', 'FloatStorage');
    p.unicode(String(key));
    p.unicode('cpu');
    p.int(numels[key]);
    p.op(0x74, 0x51);
    p.int(offset);
    p.tuple(shape);
    p.tuple(stride);
    p.op(0x89, 0x4e, 0x74, 0x52); // False, None (hooks), TUPLE, REDUCE
  }
  p.op(0x75); // SETITEMS
  if (wrap) {
    p.op(0x73); // SETITEM outer[wrap] = inner
    p.unicode('epoch');
    p.int(3);
    p.op(0x73);
  }
  p.op(0x2e);
  return p.bytes();
}

function f32bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

function throwsFormat(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof FormatError, `expected FormatError, got ${String(e)}`);
    assert.match(e.message, pattern);
    return true;
  });
}

/*
 * Pickles written by CPython's own pickle.Pickler (protocols 2 and 4) for an OrderedDict
 * {'layer.weight': T(s0, 0, (2, 2), (2, 1)), 'layer.bias': T(s0, 4, (2,), (1,)),
 *  'config': {'n_layer': 12, 'eps': 1e-5, 'name': 'x', 'ids': [1, 2, 300000, -5, 2**40],
 *             'flag': True, 'none': None, 'b': b'\x00\x01'}}
 * where T reduces to torch._utils._rebuild_tensor_v2 and s0 has persistent id
 * ('storage', torch.FloatStorage, '0', 'cpu', 6), faked as stand-in modules named
 * torch / torch._utils. Protocol 4 adds FRAME, SHORT_BINUNICODE, MEMOIZE and
 * STACK_GLOBAL; protocol 2 pickles bytes via _codecs.encode.
 */
const CPYTHON_PICKLES: Record<string, string> = {
  protocol2:
    '800263636f6c6c656374696f6e730a4f726465726564446963740a71002952710128580c0000006c61796572' +
    '2e776569676874710263746f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76320a7103' +
    '2828580700000073746f72616765710463746f7263680a466c6f617453746f726167650a7105580100000030' +
    '7106580300000063707571074b06747108514b004b024b028671094b024b0186710a8968002952710b74710c' +
    '52710d580a0000006c617965722e62696173710e6803282868046805680668074b0674710f514b044b028571' +
    '104b01857111896800295271127471135271145806000000636f6e66696771157d71162858070000006e5f6c' +
    '6179657271174b0c58030000006570737118473ee4f8b588e368f158040000006e616d657119580100000078' +
    '711a5803000000696473711b5d711c284b014b024ae09304004afbffffff8a06000000000001655804000000' +
    '666c6167711d8858040000006e6f6e65711e4e580100000062711f635f636f646563730a656e636f64650a71' +
    '2058020000000001712158060000006c6174696e31712286712352712475752e',
  protocol4:
    '80049543010000000000008c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294' +
    '288c0c6c617965722e776569676874948c0c746f7263682e5f7574696c73948c125f72656275696c645f7465' +
    '6e736f725f763294939428288c0773746f72616765948c05746f726368948c0c466c6f617453746f72616765' +
    '9493948c0130948c03637075944b067494514b004b024b0286944b024b018694896802295294749452948c0a' +
    '6c617965722e6269617394680728286808680b680c680d4b067494514b044b0285944b018594896802295294' +
    '749452948c06636f6e666967947d94288c076e5f6c61796572944b0c8c0365707394473ee4f8b588e368f18c' +
    '046e616d65948c0178948c03696473945d94284b014b024ae09304004afbffffff8a06000000000001658c04' +
    '666c616794888c046e6f6e65944e8c016294430200019475752e',
};

describe('pickles from CPython', () => {
  const dir = tmpDir();
  for (const [label, hex] of Object.entries(CPYTHON_PICKLES)) {
    test(label, () => {
      const pkl = new Uint8Array(Buffer.from(hex, 'hex'));
      const { value, protocol, storages } = unpickle(pkl, label);
      assert.equal(protocol, label === 'protocol2' ? 2 : 4);
      assert.deepEqual([...storages.keys()], ['0']);
      assert.ok(value instanceof PyDict && value.ordered);
      const config = value.map.get('config');
      assert.ok(config instanceof PyDict);
      assert.deepEqual(Object.fromEntries(config.map as Map<string, unknown>), {
        n_layer: 12,
        eps: 1e-5,
        name: 'x',
        ids: [1, 2, 300000, -5, 2 ** 40],
        flag: true,
        none: null,
        b: new Uint8Array([0, 1]),
      });
      const path = join(dir, `${label}.pth`);
      craft(path, pkl, [f32bytes([1, 2, 3, 4, 5, 6])]);
      const ck = openPth(path);
      try {
        assert.equal(ck.meta.pickleProtocol, protocol);
        assert.deepEqual(ck.meta.skipped, ['config (dict)']);
        assert.deepEqual([...ck.tensors.keys()], ['layer.weight', 'layer.bias']);
        assert.deepEqual(ck.read('layer.weight'), {
          shape: [2, 2],
          data: new Float32Array([1, 2, 3, 4]),
        });
        assert.deepEqual(ck.read('layer.bias'), { shape: [2], data: new Float32Array([5, 6]) });
      } finally {
        ck.close();
      }
    });
  }
});

describe('tensor views and nesting', () => {
  const dir = tmpDir();
  const base = Array.from({ length: 12 }, (_, i) => i + 0.5);

  test('shared storage at offsets, a transposed view and a broadcast stride', () => {
    const path = join(dir, 'views.pth');
    const pkl = statePickle(
      [
        ['a', 0, 0, [2, 3], [3, 1]],
        ['b', 0, 6, [6], [1]],
        ['t', 0, 0, [3, 2], [1, 3]], // the transpose of a
        ['x', 0, 2, [2, 2], [0, 1]], // each row is base[2..3]
      ],
      [12],
    );
    craft(path, pkl, [f32bytes(base)]);
    const ck = openPth(path);
    try {
      assert.deepEqual([...ck.read('a').data], [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]);
      assert.deepEqual([...ck.read('b').data], [6.5, 7.5, 8.5, 9.5, 10.5, 11.5]);
      assert.deepEqual([...ck.read('t').data], [0.5, 3.5, 1.5, 4.5, 2.5, 5.5]);
      assert.deepEqual([...ck.read('x').data], [2.5, 3.5, 2.5, 3.5]);
      assert.equal(ck.meta.storages, 1);
    } finally {
      ck.close();
    }
  });

  test('weights nested under state_dict are found', () => {
    const path = join(dir, 'nested.pth');
    craft(path, statePickle([['w', 0, 0, [4], [1]]], [4], 'state_dict'), [f32bytes([1, 2, 3, 4])]);
    const ck = openPth(path);
    try {
      assert.equal(ck.meta.stateDictKey, 'state_dict');
      assert.deepEqual([...ck.read('w').data], [1, 2, 3, 4]);
      assert.throws(
        () => ck.read('nope'),
        (e: unknown) => e instanceof UserError && /no tensor named "nope"/.test(e.message),
      );
    } finally {
      ck.close();
    }
  });

  test('a dict without tensors lists what it found', () => {
    const path = join(dir, 'notensors.pth');
    const p = new PickleWriter();
    p.op(0x80, 2, 0x7d);
    p.unicode('epoch');
    p.int(7);
    p.op(0x73, 0x2e);
    craft(path, p.bytes(), []);
    throwsFormat(() => openPth(path), /no tensors found .*epoch: int/);
  });

  test('a storage shorter than its declared size is refused', () => {
    const path = join(dir, 'short.pth');
    craft(path, statePickle([['w', 0, 0, [4], [1]]], [4]), [f32bytes([1, 2, 3])]);
    throwsFormat(() => openPth(path), /storage "0" declares 4 f32 elements \(16 bytes\).*12 bytes/);
  });

  test('a view reaching past its storage is refused', () => {
    const path = join(dir, 'past.pth');
    craft(path, statePickle([['w', 0, 2, [2, 2], [2, 1]]], [4]), [f32bytes([1, 2, 3, 4])]);
    throwsFormat(() => openPth(path), /reaches past storage "0" of 4 elements/);
  });

  test('big-endian byteorder is refused', () => {
    const path = join(dir, 'be.pth');
    craft(path, statePickle([['w', 0, 0, [1], [1]]], [1]), [f32bytes([1])], { byteorder: 'big' });
    throwsFormat(() => openPth(path), /big-endian/);
  });
});

describe('refusals', () => {
  const dir = tmpDir();

  test('os.system in the pickle is refused without running anything', () => {
    const path = join(dir, 'evil.pth');
    const p = new PickleWriter();
    p.op(0x80, 2);
    p.global('os', 'system');
    p.unicode('touch /tmp/actsparse-pwned');
    p.op(0x85, 0x52, 0x2e); // TUPLE1, REDUCE, STOP
    craft(path, p.bytes(), []);
    throwsFormat(() => openPth(path), /refusing pickle global os\.system: not a tensor checkpoint/);
  });

  test('a legacy (pre-1.6) torch file gets a re-save hint', () => {
    const path = join(dir, 'legacy.pt');
    // How legacy torch.save began: PROTO 2, LONG1 magic number 0x1950a86a20f9469cfc6c.
    writeFileSync(path, Buffer.from('80028a0a6cfc9c46f9206aa850197a', 'hex'));
    assert.ok(isPth(readFileSync(path)));
    assert.throws(
      () => openPth(path),
      (e: unknown) =>
        e instanceof FormatError &&
        /legacy \(pre-1\.6/.test(e.message) &&
        /Re-save/.test(e.hint ?? ''),
    );
  });

  test('other files are not taken for checkpoints', () => {
    const text = join(dir, 'notes.txt');
    writeFileSync(text, 'hello world, not a checkpoint');
    assert.equal(isPth(readFileSync(text)), false);
    throwsFormat(() => openPth(text), /not a PyTorch checkpoint/);
    const zipPath = join(dir, 'other.zip');
    writeZip(zipPath, [{ name: 'readme.txt', data: Buffer.from('hi') }]);
    throwsFormat(() => openPth(zipPath), /without a <dir>\/data\.pkl entry.*readme\.txt/);
    assert.throws(() => openPth(join(dir, 'missing.pth')), UserError);
  });
});
