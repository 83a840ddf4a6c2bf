// JSON as CPython's `json` module reads and writes it. The original gateway keys its bucket on
// `json.dumps(json.loads(body), sort_keys=True)`, so the bytes must match Python's, which
// JSON.parse cannot give: it loses integers past 2^53, `1E2` vs `100.0`, duplicate keys' order.
// Values keep each number's lexeme; objects are Maps (first position, last value, as a dict).

/** A JSON number as written; formatted the way Python would write its int or float. */
export class PyNumber {
  readonly lexeme: string;
  readonly isInteger: boolean;
  constructor(lexeme: string, isInteger: boolean) {
    this.lexeme = lexeme;
    this.isInteger = isInteger;
  }
  get value(): number {
    if (this.lexeme === 'NaN') return Number.NaN;
    return Number(this.lexeme);
  }
}

export type PyValue = null | boolean | string | PyNumber | PyValue[] | PyObject;
export type PyObject = Map<string, PyValue>;

/** The input is not JSON; `position` counts code points, as Python's `JSONDecodeError.pos`. */
export class PyJsonDecodeError extends Error {
  readonly position: number;
  constructor(message: string, position: number) {
    super(message);
    this.name = 'PyJsonDecodeError';
    this.position = position;
  }
}

/** JSON Python would reject with another exception than JSONDecodeError (FastAPI answers 400). */
export class PyJsonValueError extends Error {}

/** Python 3.11's `sys.get_int_max_str_digits()` default. */
const maxIntegerDigits = 4300;
/** Below CPython's recursion limit, which turns deeper documents into a RecursionError. */
const maxDepth = 990;

const isDigit = (c: number) => c >= 48 && c <= 57;

const smallIntegers = new Map<string, PyNumber>();

class Parser {
  readonly text: string;
  index = 0;
  depth = 0;
  constructor(text: string) {
    this.text = text;
  }

  /** Index in code points, as Python counts (a surrogate pair is one character). */
  position(index: number): number {
    let pairs = 0;
    for (let i = 0; i < index - 1; i++) {
      const c = this.text.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff) {
        const next = this.text.charCodeAt(i + 1);
        if (next >= 0xdc00 && next <= 0xdfff) {
          pairs++;
          i++;
        }
      }
    }
    return index - pairs;
  }

  fail(message: string, index: number): never {
    throw new PyJsonDecodeError(message, this.position(index));
  }

  skipWhitespace(): void {
    const { text } = this;
    let i = this.index;
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 32 || c === 9 || c === 10 || c === 13) i++;
      else break;
    }
    this.index = i;
  }

  value(): PyValue {
    const { text } = this;
    const i = this.index;
    const c = text.charCodeAt(i);
    switch (c) {
      case 34: // "
        this.index = i + 1;
        return this.string(i);
      case 123: // {
        return this.object();
      case 91: // [
        return this.array();
      case 110: // n
        if (text.startsWith('null', i)) {
          this.index = i + 4;
          return null;
        }
        break;
      case 116: // t
        if (text.startsWith('true', i)) {
          this.index = i + 4;
          return true;
        }
        break;
      case 102: // f
        if (text.startsWith('false', i)) {
          this.index = i + 5;
          return false;
        }
        break;
      case 78: // N
        if (text.startsWith('NaN', i)) {
          this.index = i + 3;
          return new PyNumber('NaN', false);
        }
        break;
      case 73: // I
        if (text.startsWith('Infinity', i)) {
          this.index = i + 8;
          return new PyNumber('Infinity', false);
        }
        break;
      case 45: // -
        if (text.startsWith('-Infinity', i)) {
          this.index = i + 9;
          return new PyNumber('-Infinity', false);
        }
        return this.number(i);
      default:
        if (isDigit(c)) return this.number(i);
    }
    return this.fail('Expecting value', i);
  }

  number(start: number): PyNumber {
    const { text } = this;
    let i = start;
    if (text.charCodeAt(i) === 45) i++;
    const first = text.charCodeAt(i);
    if (first === 48) i++;
    else if (isDigit(first)) while (isDigit(text.charCodeAt(i))) i++;
    else return this.fail('Expecting value', start);
    let isInteger = true;
    if (text.charCodeAt(i) === 46 && isDigit(text.charCodeAt(i + 1))) {
      isInteger = false;
      i += 2;
      while (isDigit(text.charCodeAt(i))) i++;
    }
    const e = text.charCodeAt(i);
    if (e === 101 || e === 69) {
      let j = i + 1;
      const sign = text.charCodeAt(j);
      if (sign === 43 || sign === 45) j++;
      if (isDigit(text.charCodeAt(j))) {
        while (isDigit(text.charCodeAt(j))) j++;
        isInteger = false;
        i = j;
      }
    }
    this.index = i;
    const lexeme = text.slice(start, i);
    if (isInteger && lexeme.length - (lexeme.charCodeAt(0) === 45 ? 1 : 0) > maxIntegerDigits) {
      throw new PyJsonValueError(`an integer of more than ${maxIntegerDigits} digits`);
    }
    if (isInteger && lexeme.length <= 6) {
      // Token arrays are millions of small integers: one shared PyNumber per lexeme keeps a
      // large body's parse in tens of megabytes rather than hundreds (PyNumber is immutable).
      let shared = smallIntegers.get(lexeme);
      if (shared === undefined) {
        shared = new PyNumber(lexeme, true);
        if (smallIntegers.size < 200_000) smallIntegers.set(lexeme, shared);
      }
      return shared;
    }
    return new PyNumber(lexeme, isInteger);
  }

  string(quote: number): string {
    const { text } = this;
    let i = this.index;
    let out = '';
    let chunkStart = i;
    for (;;) {
      const c = text.charCodeAt(i);
      if (Number.isNaN(c)) return this.fail('Unterminated string starting at', quote);
      if (c === 34) {
        out += text.slice(chunkStart, i);
        this.index = i + 1;
        return out;
      }
      if (c < 0x20) return this.fail('Invalid control character at', i);
      if (c !== 92) {
        i++;
        continue;
      }
      out += text.slice(chunkStart, i);
      const escaped = text.charCodeAt(i + 1);
      switch (escaped) {
        case 34:
          out += '"';
          break;
        case 92:
          out += '\\';
          break;
        case 47:
          out += '/';
          break;
        case 98:
          out += '\b';
          break;
        case 102:
          out += '\f';
          break;
        case 110:
          out += '\n';
          break;
        case 114:
          out += '\r';
          break;
        case 116:
          out += '\t';
          break;
        case 117: {
          const hex = text.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) return this.fail('Invalid \\uXXXX escape', i + 1);
          out += String.fromCharCode(Number.parseInt(hex, 16));
          i += 4;
          break;
        }
        default:
          if (Number.isNaN(escaped)) return this.fail('Unterminated string starting at', quote);
          return this.fail('Invalid \\escape', i);
      }
      i += 2;
      chunkStart = i;
    }
  }

  enter(): void {
    if (++this.depth > maxDepth) throw new PyJsonValueError('JSON nested too deeply');
  }

  object(): PyObject {
    this.enter();
    const { text } = this;
    const result: PyObject = new Map();
    this.index++;
    this.skipWhitespace();
    if (text.charCodeAt(this.index) === 125) {
      this.index++;
      this.depth--;
      return result;
    }
    for (;;) {
      const quote = this.index;
      if (text.charCodeAt(quote) !== 34) {
        return this.fail('Expecting property name enclosed in double quotes', quote);
      }
      this.index = quote + 1;
      const key = this.string(quote);
      this.skipWhitespace();
      if (text.charCodeAt(this.index) !== 58) return this.fail("Expecting ':' delimiter", this.index);
      this.index++;
      this.skipWhitespace();
      result.set(key, this.value());
      this.skipWhitespace();
      const next = text.charCodeAt(this.index);
      this.index++;
      if (next === 125) break;
      if (next !== 44) return this.fail("Expecting ',' delimiter", this.index - 1);
      this.skipWhitespace();
    }
    this.depth--;
    return result;
  }

  array(): PyValue[] {
    this.enter();
    const { text } = this;
    const result: PyValue[] = [];
    this.index++;
    this.skipWhitespace();
    if (text.charCodeAt(this.index) === 93) {
      this.index++;
      this.depth--;
      return result;
    }
    for (;;) {
      result.push(this.value());
      this.skipWhitespace();
      const next = text.charCodeAt(this.index);
      this.index++;
      if (next === 93) break;
      if (next !== 44) return this.fail("Expecting ',' delimiter", this.index - 1);
      this.skipWhitespace();
    }
    this.depth--;
    return result;
  }
}

/** `json.loads(text)`: throws PyJsonDecodeError (422 in FastAPI) or PyJsonValueError (400). */
export function parsePythonJson(text: string): PyValue {
  const parser = new Parser(text);
  parser.skipWhitespace();
  const value = parser.value();
  parser.skipWhitespace();
  if (parser.index !== text.length) parser.fail('Extra data', parser.index);
  return value;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** `json.detect_encoding`: UTF-8 unless a BOM or the pattern of NUL bytes says UTF-16/32. */
function detectEncoding(b: Uint8Array): string {
  const starts = (...prefix: number[]) => prefix.every((byte, i) => b[i] === byte);
  if (starts(0x00, 0x00, 0xfe, 0xff) || starts(0xff, 0xfe, 0x00, 0x00)) return 'utf-32';
  if (starts(0xfe, 0xff) || starts(0xff, 0xfe)) return 'utf-16';
  if (starts(0xef, 0xbb, 0xbf)) return 'utf-8-sig';
  if (b.length >= 4) {
    if (!b[0]) return b[1] ? 'utf-16-be' : 'utf-32-be';
    if (!b[1]) return b[2] || b[3] ? 'utf-16-le' : 'utf-32-le';
  } else if (b.length === 2) {
    if (!b[0]) return 'utf-16-be';
    if (!b[1]) return 'utf-16-le';
  }
  return 'utf-8';
}

const invalid = (encoding: string) => new PyJsonValueError(`the body is not valid ${encoding}`);

/** UTF-8 with Python's `surrogatepass`: encoded surrogates (ED A0 80..ED BF BF) are kept. */
function decodeUtf8SurrogatePass(b: Uint8Array): string {
  const units: number[] = [];
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    let cp: number;
    let need: number;
    let min: number;
    if (c < 0x80) {
      units.push(c);
      i++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) [cp, need, min] = [c & 0x1f, 1, 0x80];
    else if (c >= 0xe0 && c <= 0xef) [cp, need, min] = [c & 0x0f, 2, 0x800];
    else if (c >= 0xf0 && c <= 0xf4) [cp, need, min] = [c & 0x07, 3, 0x10000];
    else throw invalid('UTF-8');
    for (let k = 1; k <= need; k++) {
      const next = b[i + k];
      if (next === undefined || (next & 0xc0) !== 0x80) throw invalid('UTF-8');
      cp = (cp << 6) | (next & 0x3f);
    }
    if (cp < min || cp > 0x10ffff) throw invalid('UTF-8');
    if (cp >= 0x10000) units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
    else units.push(cp);
    i += need + 1;
  }
  let out = '';
  for (let k = 0; k < units.length; k += 8192) out += String.fromCharCode(...units.slice(k, k + 8192));
  return out;
}

function decodeWide(b: Uint8Array, width: 2 | 4, littleEndian: boolean, encoding: string): string {
  if (b.length % width !== 0) throw invalid(encoding);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let out = '';
  for (let i = 0; i < b.length; i += width) {
    const cp = width === 2 ? view.getUint16(i, littleEndian) : view.getUint32(i, littleEndian);
    if (cp > 0x10ffff) throw invalid(encoding);
    out += String.fromCodePoint(cp);
  }
  // Surrogate pairs in UTF-16 come out as two units, which is the pair again.
  return out;
}

/** `bytes.decode(json.detect_encoding(b), 'surrogatepass')`. */
export function decodeLikePython(b: Uint8Array): string {
  const encoding = detectEncoding(b);
  switch (encoding) {
    case 'utf-8':
    case 'utf-8-sig': {
      const body = encoding === 'utf-8-sig' ? b.subarray(3) : b;
      try {
        return utf8.decode(body);
      } catch {
        return decodeUtf8SurrogatePass(body);
      }
    }
    case 'utf-16':
      return decodeWide(b.subarray(2), 2, b[0] === 0xff, 'UTF-16');
    case 'utf-32':
      return decodeWide(b.subarray(4), 4, b[0] === 0xff, 'UTF-32');
    case 'utf-16-be':
    case 'utf-16-le':
      return decodeWide(b, 2, encoding.endsWith('le'), 'UTF-16');
    default:
      return decodeWide(b, 4, encoding.endsWith('le'), 'UTF-32');
  }
}

/**
 * `json.loads(bytes)`. Undecodable bytes are a PyJsonValueError, as Python's
 * UnicodeDecodeError is not a JSONDecodeError.
 */
export function parsePythonJsonBytes(bytes: Uint8Array): PyValue {
  return parsePythonJson(decodeLikePython(bytes));
}

/** `float.__repr__`: shortest round-trip digits, fixed notation for 1e-4 <= |x| < 1e16. */
export function formatPythonFloat(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Number.POSITIVE_INFINITY) return 'Infinity';
  if (x === Number.NEGATIVE_INFINITY) return '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const abs = Math.abs(x);
  if (abs >= 1e-4 && abs < 1e16) {
    // JavaScript's shortest form agrees with Python's in this range, less the exponent forms
    // (1e-7..1e21 are fixed in JS too) and the `.0` Python adds to integral floats.
    const text = String(abs);
    return sign + (text.includes('.') ? text : `${text}.0`);
  }
  const exponential = abs.toExponential();
  const e = exponential.indexOf('e');
  const mantissa = exponential.slice(0, e);
  const exponent = Number(exponential.slice(e + 1));
  const digits = String(Math.abs(exponent)).padStart(2, '0');
  return `${sign}${mantissa}e${exponent < 0 ? '-' : '+'}${digits}`;
}

/**
 * True when a float lexeme is already what `repr` would print: plain decimal notation in
 * repr's fixed range, no superfluous trailing zero, at most 15 significant digits. (Any
 * decimal of 15 digits or fewer is the shortest round-trip form of the double it parses to,
 * so repr gives those digits back.) Embedding vectors are written this way, so most floats
 * of an upstream answer skip the conversion.
 */
function isReprAlready(lexeme: string): boolean {
  let i = lexeme.charCodeAt(0) === 45 ? 1 : 0;
  const intStart = i;
  while (isDigit(lexeme.charCodeAt(i))) i++;
  const intDigits = i - intStart;
  if (lexeme.charCodeAt(i) !== 46) return false;
  const fracStart = ++i;
  while (isDigit(lexeme.charCodeAt(i))) i++;
  if (i !== lexeme.length) return false;
  const fracDigits = i - fracStart;
  const lastFrac = lexeme.charCodeAt(i - 1);
  if (lastFrac === 48 && fracDigits > 1) return false;
  const zeroInt = intDigits === 1 && lexeme.charCodeAt(intStart) === 48;
  if (!zeroInt) return intDigits <= 16 && intDigits + fracDigits <= 15 + (lastFrac === 48 ? 1 : 0);
  let leadingZeros = 0;
  while (leadingZeros < fracDigits && lexeme.charCodeAt(fracStart + leadingZeros) === 48) leadingZeros++;
  if (leadingZeros === fracDigits) return fracDigits === 1;
  return leadingZeros <= 3 && fracDigits - leadingZeros <= 15;
}

/** How Python writes a number it read from this lexeme. */
export function formatPythonNumber(number: PyNumber): string {
  const { lexeme } = number;
  if (number.isInteger) return lexeme === '-0' ? '0' : lexeme;
  if (isReprAlready(lexeme)) return lexeme;
  return formatPythonFloat(number.value);
}

export interface DumpOptions {
  sortKeys?: boolean;
  /** Python's default is true: everything outside 0x20-0x7E becomes `\uXXXX`. */
  ensureAscii?: boolean;
  /** Python's defaults are `, ` and `: `; FastAPI's responses use `,` and `:`. */
  itemSeparator?: string;
  keySeparator?: string;
}

const shortEscapes: Record<number, string> = {
  34: '\\"',
  92: '\\\\',
  8: '\\b',
  12: '\\f',
  10: '\\n',
  13: '\\r',
  9: '\\t',
};

const hex4 = (code: number) => `\\u${code.toString(16).padStart(4, '0')}`;

/** `json.dumps`'s string encoder; JS strings are UTF-16, so astral chars come out as pairs. */
export function encodePythonString(value: string, ensureAscii = true): string {
  if (value.length > 4096) return encodeLongString(value, ensureAscii);
  let out = '"';
  let chunkStart = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e && c !== 0x22 && c !== 0x5c) continue;
    if (!ensureAscii && c > 0x7e) continue;
    out += value.slice(chunkStart, i);
    out += shortEscapes[c] ?? hex4(c);
    chunkStart = i + 1;
  }
  return `${out}${value.slice(chunkStart)}"`;
}

const hexDigits = '0123456789abcdef';

/**
 * The same for a long string, written byte by byte into one buffer (two passes: its size, then
 * its bytes): a rope of a piece per escape costs seconds and hundreds of megabytes on a
 * body-sized string of non-ASCII text.
 */
function encodeLongString(value: string, ensureAscii: boolean): string {
  if (!ensureAscii) return encodeLongStringParts(value);
  let size = 2;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e) size += c === 0x22 || c === 0x5c ? 2 : 1;
    else size += shortEscapes[c] === undefined ? 6 : 2;
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  out[at++] = 0x22;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e && c !== 0x22 && c !== 0x5c) {
      out[at++] = c;
      continue;
    }
    const short = shortEscapes[c];
    if (short !== undefined) {
      out[at++] = 0x5c;
      out[at++] = short.charCodeAt(1);
      continue;
    }
    out[at++] = 0x5c;
    out[at++] = 0x75;
    out[at++] = hexDigits.charCodeAt(c >> 12);
    out[at++] = hexDigits.charCodeAt((c >> 8) & 15);
    out[at++] = hexDigits.charCodeAt((c >> 4) & 15);
    out[at++] = hexDigits.charCodeAt(c & 15);
  }
  out[at++] = 0x22;
  return out.toString('latin1', 0, at);
}

/** Without ensure_ascii (FastAPI's own answers): parts and one join. */
function encodeLongStringParts(value: string): string {
  const parts: string[] = ['"'];
  let chunkStart = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e && c !== 0x22 && c !== 0x5c) continue;
    if (c > 0x7e) continue;
    parts.push(value.slice(chunkStart, i), shortEscapes[c] ?? hex4(c));
    chunkStart = i + 1;
  }
  parts.push(value.slice(chunkStart), '"');
  return parts.join('');
}

/** Python compares strings by code point; JS's `<` compares UTF-16 code units. */
export function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if ((x >= 0xd800 && x <= 0xdfff) || (y >= 0xd800 && y <= 0xdfff)) {
      // Compare whole code points; the difference may sit in the second half of a pair.
      const previous = i > 0 ? a.charCodeAt(i - 1) : 0;
      const at = previous >= 0xd800 && previous <= 0xdbff ? i - 1 : i;
      return a.codePointAt(at)! - b.codePointAt(at)!;
    }
    return x - y;
  }
  return a.length - b.length;
}

/** `json.dumps(value, ...)` with Python's defaults unless told otherwise. */
export function dumpPythonJson(value: PyValue, options: DumpOptions = {}): string {
  const sortKeys = options.sortKeys ?? false;
  const ensureAscii = options.ensureAscii ?? true;
  const itemSeparator = options.itemSeparator ?? ', ';
  const keySeparator = options.keySeparator ?? ': ';
  // Concatenation (V8 builds ropes) is faster here than collecting parts and joining them.
  const write = (v: PyValue): string => {
    if (v === null) return 'null';
    if (v === true) return 'true';
    if (v === false) return 'false';
    if (typeof v === 'string') return encodePythonString(v, ensureAscii);
    if (v instanceof PyNumber) return formatPythonNumber(v);
    if (Array.isArray(v)) {
      if (v.length > 2048) {
        // A long array (a token array, a big request) as one flat string: a rope of millions
        // of pieces costs far more memory, and time to flatten, than the parts and one join.
        const parts = new Array<string>(v.length);
        for (let i = 0; i < v.length; i++) {
          const item = v[i]!;
          parts[i] = item instanceof PyNumber ? formatPythonNumber(item) : write(item);
        }
        return `[${parts.join(itemSeparator)}]`;
      }
      let out = '[';
      for (let i = 0; i < v.length; i++) {
        if (i > 0) out += itemSeparator;
        const item = v[i]!;
        out += item instanceof PyNumber ? formatPythonNumber(item) : write(item);
      }
      return `${out}]`;
    }
    let out = '{';
    const keys = [...v.keys()];
    if (sortKeys) keys.sort(compareCodePoints);
    for (let i = 0; i < keys.length; i++) {
      if (i > 0) out += itemSeparator;
      out += encodePythonString(keys[i]!, ensureAscii) + keySeparator + write(v.get(keys[i]!)!);
    }
    return `${out}}`;
  };
  return write(value);
}

/** The value as plain JavaScript (numbers as doubles), for reading fields. */
export function toPlain(value: PyValue): unknown {
  if (value instanceof PyNumber) return value.value;
  if (Array.isArray(value)) return value.map(toPlain);
  if (value instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of value) out[key] = toPlain(item);
    return out;
  }
  return value;
}

/** Plain JavaScript into a value (for answers we assemble ourselves). */
export function fromPlain(value: unknown): PyValue {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return value;
  if (typeof value === 'number') {
    return Number.isInteger(value) && !Object.is(value, -0) && Math.abs(value) < 2 ** 53
      ? new PyNumber(String(value), true)
      : new PyNumber(formatPythonFloat(value), false);
  }
  if (value instanceof PyNumber) return value;
  if (Array.isArray(value)) return value.map(fromPlain);
  if (value instanceof Map) return value as PyObject;
  if (typeof value === 'object') {
    const out: PyObject = new Map();
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) out.set(key, fromPlain(item));
    return out;
  }
  throw new TypeError(`cannot write ${typeof value} as JSON`);
}

export function isPyObject(value: PyValue | undefined): value is PyObject {
  return value instanceof Map;
}
