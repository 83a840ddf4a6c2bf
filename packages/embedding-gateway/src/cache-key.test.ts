// Differential test: keys, dumps and parse errors against CPython's own `json` module.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { cacheKey, canonicalRequest } from './cache-key.ts';
import {
  dumpPythonJson,
  isPyObject,
  PyJsonDecodeError,
  PyJsonValueError,
  parsePythonJsonBytes,
} from './python-json.ts';

type Outcome =
  | { kind: 'ok'; sorted: string; plain: string; key: string | null }
  | { kind: 'decode'; message: string; position: number }
  | { kind: 'value' };

const pythonProgram = `
import base64, hashlib, json, sys
for line in sys.stdin:
    raw = base64.b64decode(line)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        print(json.dumps({"kind": "decode", "message": e.msg, "position": e.pos}))
        continue
    except (ValueError, RecursionError):
        print(json.dumps({"kind": "value"}))
        continue
    sorted_ = json.dumps(value, sort_keys=True)
    key = None
    if isinstance(value, dict):
        digest = hashlib.sha256(sorted_.encode("utf-8")).hexdigest()
        key = digest[:4] + "/" + digest
    print(json.dumps({"kind": "ok", "sorted": sorted_, "plain": json.dumps(value), "key": key}))
`;

/** Runs every document through python3 in one process. */
function python(documents: Uint8Array[]): Outcome[] {
  const input = documents.map((d) => Buffer.from(d).toString('base64')).join('\n');
  const result = spawnSync('python3', ['-c', pythonProgram], {
    input: `${input}\n`,
    maxBuffer: 1 << 28,
    encoding: 'utf8',
  });
  assert.equal(result.status, 0, `python3 failed: ${result.stderr}`);
  const lines = result.stdout.trim().split('\n');
  assert.equal(lines.length, documents.length);
  return lines.map((line) => JSON.parse(line) as Outcome);
}

function ours(document: Uint8Array): Outcome {
  try {
    const value = parsePythonJsonBytes(document);
    return {
      kind: 'ok',
      sorted: canonicalRequest(value),
      plain: dumpPythonJson(value),
      key: isPyObject(value) ? cacheKey(value) : null,
    };
  } catch (error) {
    if (error instanceof PyJsonDecodeError) {
      return { kind: 'decode', message: error.message, position: error.position };
    }
    if (error instanceof PyJsonValueError) return { kind: 'value' };
    throw error;
  }
}

function compare(documents: Uint8Array[]): void {
  const expected = python(documents);
  documents.forEach((document, i) => {
    assert.deepEqual(ours(document), expected[i], `document ${i}: ${Buffer.from(document).toString('utf8')}`);
  });
}

const text = (s: string) => new TextEncoder().encode(s);

const tricky: string[] = [
  '{"model": "text-embedding-3-small", "input": "hello"}',
  '{"input":"hello","model":"text-embedding-3-small"}',
  '{"input": ["a", "b"], "model": "m", "encoding_format": "float", "dimensions": 256}',
  '{"input": "caf\u00e9 \u65e5\u672c\u8a9e \u0627\u0644\u0639\u0631\u0628\u064a\u0629"}',
  '{"input": "emoji \ud83d\ude00 \ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67 flag \ud83c\uddef\ud83c\uddf5"}',
  '{"input": "\\ud83d\\ude00 escaped pair, \\ud83d lone high, \\ude00 lone low"}',
  '{"input": "\\u00e9 vs \u00e9", "x": "\\u0000\\u001f\\u007f\\u0080\\uffff"}',
  '{"input": "quotes \\" backslash \\\\ slash \\/ \\b\\f\\n\\r\\t"}',
  '{"a": 1E2, "b": 1e-05, "c": -0.0, "d": 0.0, "e": -0, "f": 1.0, "g": 1e16, "h": 1e15, "i": 0.0001}',
  '{"a": 123456789012345678901234567890, "b": -9007199254740993, "c": 9007199254740993}',
  '{"a": 0.1, "b": 0.30000000000000004, "c": 1.7976931348623157e308, "d": 5e-324, "e": 2.5E-5}',
  '{"a": 1e400, "b": -1e400, "c": NaN, "d": Infinity, "e": -Infinity, "f": 1e-400}',
  '{"a": 123.456e7, "b": 1.5e+300, "c": 1E+2, "d": 12345678901234567890.0, "e": 0.000123}',
  '{"a": 123456789012345.0, "b": 1234567890123456.0, "c": 0.1234567890123456, "d": 0.000123456789012345}',
  '{"a": 9999999999999999.0, "b": 0.100, "c": 12.50, "d": 0.0001000, "e": 0.00010, "f": 123456789012345.6}',
  '{"a": -0.0069292834, "b": 0.015896838, "c": 99999999999999.99, "d": 0.30000000000000004, "e": 1.00}',
  '{"z": 1, "a": {"y": [3, 2, {"c": null, "b": true, "a": false}], "x": {}}, "m": []}',
  '{"b": 1, "a": 2, "b": 3}',
  '{"\u00e9": 1, "e": 2, "\ud83d\ude00": 3, "\uffff": 4, "\ue000": 5, "Z": 6, "": 7}',
  '{"\\ud83d": 1, "\\ud83d\\ude00": 2, "\\ud83d\\ue000": 3, "\\ud83e": 4}',
  ' \t\r\n{ "input" :\n"x" , "model" : "m" } \n',
  '{"input": [[1, 2, 3], [4, 5, 6]], "model": "m"}',
  '{"nested": {"deep": {"deeper": {"deepest": [1, [2, [3, [4]]]]}}}}',
  '{}',
  '[]',
  '"just a string"',
  '42',
  'null',
  '',
  '   ',
  '{',
  '{"a"',
  '{"a":',
  '{"a": 1,}',
  '[1, 2,]',
  '{"a": 1 "b": 2}',
  '{a: 1}',
  "{'a': 1}",
  '{"a": 01}',
  '{"a": 1.}',
  '{"a": .5}',
  '{"a": -}',
  '{"a": 1e}',
  '{"a": +1}',
  '{"a": "unterminated}',
  '{"a": "bad \\x escape"}',
  '{"a": "bad \\u12 escape"}',
  '{"a": "raw\ttab"}',
  '{"a": tru}',
  '{"a": 1} extra',
  '{"\ud83d\ude00": "x"} \ud83d\ude00',
  `{"big": 1${'0'.repeat(4299)}}`,
  `{"big": 1${'0'.repeat(4300)}}`,
  `{"deep": ${'['.repeat(50)}${']'.repeat(50)}}`,
  `{"deep": ${'['.repeat(5000)}${']'.repeat(5000)}}`,
  // From the adversarial review: extreme number lexemes, surrogates in keys, odd whitespace.
  `{"a": 0.${'0'.repeat(20_000)}1, "b": 1${'0'.repeat(400)}.0, "c": ${'1'.repeat(5000)}.5}`,
  '{"a": 1e-99999999999, "b": 1e99999999999999999999, "c": -1e-400, "d": 123456789e-5, "e": 1E400}',
  `{"a": -1${'0'.repeat(4299)}}`,
  `{"a": -1${'0'.repeat(4300)}}`,
  '{"a": 1.0e+0, "b": -0.0e0, "c": 0e0, "d": 1E-7, "e": 1e22, "f": 1e16, "g": 100000000000000000000000.0}',
  '{"a": 2.2250738585072014e-308, "b": 2.4703282292062327e-324, "c": 2.4703282292062328e-324, "d": 1.7976931348623159e308}',
  '{"\\udc00": 1, "\ud800\udc00": 2, "\\ud800": 3, "\ue000": 4, "\\udbff\\udfff": 5, "\\uffff": 6}',
  '{"a": {"b": 1, "c": 2, "b": 3}, "x": [{"k": 1, "k": {"z": 1, "y": 2}}]}',
  '{"a":\u00a01}',
  '{"a":\f1}',
  '{"a": -NaN}',
  '{"a": Infinity1}',
  '{"a": nan}',
  '{"a": 1}\u0000',
];

describe('cache key against python3 json.dumps(sort_keys=True)', () => {
  it('matches Python on a corpus of tricky requests (unicode, emoji, floats, big integers, key order, errors)', () => {
    compare(tricky.map(text));
  });

  it('matches Python on bytes that are not plain UTF-8 (BOM, UTF-16, encoded surrogates, invalid)', () => {
    const utf16le = Buffer.from('{"input": "\u00e9\ud83d\ude00"}', 'utf16le');
    const utf16be = Buffer.from(utf16le).swap16();
    compare([
      Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), text('{"input": "bom"}')]),
      utf16le,
      utf16be,
      Buffer.concat([Buffer.from([0xff, 0xfe]), utf16le]),
      text('{"input": "x"}\ufeff'),
      Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xed, 0xa0, 0xbd, 0x22, 0x7d]),
      Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]),
      Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc0, 0xaf, 0x22, 0x7d]),
      Buffer.from([0x7b, 0x00, 0x7d]),
    ]);
  });

  it('matches Python on random requests and random corruptions of them (seeded, bounded)', () => {
    const random = seeded(Number(process.env.FUZZ_SEED ?? 0x5ea4_0e5e));
    const documents: Uint8Array[] = [];
    for (let i = 0; i < Number(process.env.FUZZ_COUNT ?? 400); i++) {
      const doc = randomObject(random, 0);
      documents.push(text(doc));
      if (i % 2 === 0) documents.push(corrupt(random, text(doc)));
    }
    compare(documents);
  });

  it('matches Python on body-sized strings and arrays (the long-value writers)', () => {
    const mixed = 'caf\u00e9 "q" \\ \n\t\u0001 \ud83d\ude00 \ud800 \u2028 ascii ';
    compare([
      text(`{"input": "${mixed.repeat(400)}", "model": "m"}`),
      text(`{"input": "${'plain ascii '.repeat(1000)}"}`),
      text(`{"input": [${Array.from({ length: 3000 }, (_, i) => (i * 7919) % 100_256).join(', ')}]}`),
      text(`{"input": [${Array.from({ length: 2500 }, (_, i) => `"t${i}\u00e9", ${i}.50, -0`).join(', ')}]}`),
    ]);
  });

  it('parses and keys a 10 MB body of token arrays in bounded memory and time', () => {
    const rows = Array.from(
      { length: 400 },
      (_, i) => `[${Array.from({ length: 4000 }, (_, j) => (i * 7919 + j * 104_729) % 100_256).join(', ')}]`,
    );
    const body = text(`{"input": [${rows.join(', ')}], "model": "m"}`);
    const heapBefore = process.memoryUsage().heapUsed;
    const value = parsePythonJsonBytes(body);
    const heapAfterParse = process.memoryUsage().heapUsed;
    assert.ok(isPyObject(value));
    assert.match(cacheKey(value), /^[0-9a-f]{4}\/[0-9a-f]{64}$/);
    // One PyNumber per distinct small integer, not per token: some 13 MB of pointers, where
    // an object per token took over 100 MB.
    assert.ok(heapAfterParse - heapBefore < 60 << 20, `${(heapAfterParse - heapBefore) >> 20} MB`);
  });

  it('gives the key the original computes for a known request', () => {
    const body = '{"model": "text-embedding-3-small", "input": "The food was delicious"}';
    const expected = createHash('sha256')
      .update('{"input": "The food was delicious", "model": "text-embedding-3-small"}')
      .digest('hex');
    const value = parsePythonJsonBytes(text(body));
    assert.ok(isPyObject(value));
    assert.equal(cacheKey(value), `${expected.slice(0, 4)}/${expected}`);
  });
});

function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const pick = <T>(random: () => number, items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

function randomWhitespace(random: () => number): string {
  return random() < 0.7 ? pick(random, ['', ' ']) : pick(random, ['\n', '\t', '\r\n  ', '   ']);
}

function randomChar(random: () => number): string {
  const r = random();
  if (r < 0.4) return String.fromCharCode(0x20 + Math.floor(random() * 95)).replace(/["\\]/, 'q');
  if (r < 0.5) return pick(random, ['\\n', '\\t', '\\"', '\\\\', '\\/', '\\b', '\\f', '\\r']);
  if (r < 0.6) {
    const code = Math.floor(random() * 0x10000);
    return `\\u${code
      .toString(16)
      .padStart(4, random() < 0.5 ? '0' : '0')
      .toUpperCase()}`;
  }
  if (r < 0.75) return String.fromCodePoint(0xa0 + Math.floor(random() * 0xd700));
  if (r < 0.85) return String.fromCodePoint(0x10000 + Math.floor(random() * 0xfffff));
  if (r < 0.9) return String.fromCodePoint(0xe000 + Math.floor(random() * 0x1ffe));
  return pick(random, ['\u00e9', '\ud83d\ude00', '\u65e5', '\u0000'.replace('\u0000', '\\u0000'), '\u007f']);
}

function randomString(random: () => number): string {
  const length = Math.floor(random() * 8);
  let s = '';
  for (let i = 0; i < length; i++) s += randomChar(random);
  return `"${s}"`;
}

function randomNumber(random: () => number): string {
  const sign = random() < 0.3 ? '-' : '';
  const digits = (n: number) => {
    let s = String(1 + Math.floor(random() * 9));
    for (let i = 1; i < n; i++) s += String(Math.floor(random() * 10));
    return s;
  };
  const r = random();
  if (r < 0.2) return `${sign}${random() < 0.1 ? '0' : digits(1 + Math.floor(random() * 30))}`;
  const intPart = random() < 0.4 ? '0' : digits(1 + Math.floor(random() * 6));
  const frac = random() < 0.7 ? `.${digits(1 + Math.floor(random() * 18))}` : '';
  const exp =
    random() < 0.5
      ? `${pick(random, ['e', 'E'])}${pick(random, ['', '+', '-'])}${Math.floor(random() * (random() < 0.1 ? 400 : 30))}`
      : '';
  return `${sign}${intPart}${frac || exp ? frac : '.0'}${exp}`;
}

function randomValue(random: () => number, depth: number): string {
  const r = random();
  if (depth < 3 && r < 0.15) return randomObject(random, depth + 1);
  if (depth < 3 && r < 0.3) {
    const n = Math.floor(random() * 5);
    const items = Array.from({ length: n }, () => randomWhitespace(random) + randomValue(random, depth + 1));
    return `[${items.join(',')}${randomWhitespace(random)}]`;
  }
  if (r < 0.55) return randomString(random);
  if (r < 0.9) return randomNumber(random);
  return pick(random, ['true', 'false', 'null', 'NaN', 'Infinity', '-Infinity']);
}

function randomObject(random: () => number, depth: number): string {
  const n = Math.floor(random() * 6);
  const keys = [
    'input',
    'model',
    'dimensions',
    'encoding_format',
    'user',
    'a',
    'b',
    'B',
    '\u00e9',
    '\ud83d\ude00',
  ];
  const members = Array.from({ length: n }, () => {
    const key = random() < 0.6 ? `"${pick(random, keys)}"` : randomString(random);
    return `${randomWhitespace(random)}${key}${randomWhitespace(random)}:${randomWhitespace(random)}${randomValue(random, depth)}`;
  });
  return `{${members.join(',')}${randomWhitespace(random)}}`;
}

function corrupt(random: () => number, document: Uint8Array): Uint8Array {
  const bytes = Array.from(document);
  const at = Math.floor(random() * (bytes.length + 1));
  const r = random();
  if (r < 0.4) bytes.splice(at, 1);
  else if (r < 0.8)
    bytes.splice(
      at,
      0,
      pick(random, [0x22, 0x2c, 0x7b, 0x7d, 0x5b, 0x5d, 0x3a, 0x5c, 0x30, 0x2d, 0x65, 0x09, 0x01]),
    );
  else bytes.splice(at, 0, 0x20, 0x78);
  return Uint8Array.from(bytes);
}
