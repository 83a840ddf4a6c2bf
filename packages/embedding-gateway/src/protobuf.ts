// The protocol-buffers wire format (varints, length-delimited and fixed fields), as much as the
// hasher's ext_proc messages and the OTLP trace export need: a reader that skips what it does not
// know, and a writer.
// https://protobuf.dev/programming-guides/encoding/

export class ProtobufError extends Error {}

export const wireType = { varint: 0, fixed64: 1, bytes: 2, fixed32: 5 } as const;

export interface Field {
  number: number;
  wireType: number;
  /** Varints (as a number: the fields read here are small or booleans). */
  varint: number;
  /** Length-delimited payload; empty for other wire types. */
  bytes: Buffer;
}

/** Reads a varint at `at`; returns the value (exact below 2^53) and the next offset. */
function readVarint(buffer: Buffer, at: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (at >= buffer.length) throw new ProtobufError('truncated varint');
    const byte = buffer[at++]!;
    value += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) return [value, at];
    scale *= 128;
  }
  throw new ProtobufError('varint longer than 10 bytes');
}

/** Every field of one message, in order; unknown fields are returned too, for the caller to skip. */
export function* readFields(buffer: Buffer): Generator<Field> {
  let at = 0;
  while (at < buffer.length) {
    const [key, afterKey] = readVarint(buffer, at);
    at = afterKey;
    const number = Math.floor(key / 8);
    const type = key % 8;
    if (number < 1) throw new ProtobufError('field number 0');
    if (type === wireType.varint) {
      const [value, next] = readVarint(buffer, at);
      at = next;
      yield { number, wireType: type, varint: value, bytes: Buffer.alloc(0) };
    } else if (type === wireType.bytes) {
      const [length, next] = readVarint(buffer, at);
      if (next + length > buffer.length) throw new ProtobufError('length-delimited field past the end');
      at = next + length;
      yield { number, wireType: type, varint: 0, bytes: buffer.subarray(next, at) };
    } else if (type === wireType.fixed64 || type === wireType.fixed32) {
      at += type === wireType.fixed64 ? 8 : 4;
      if (at > buffer.length) throw new ProtobufError('fixed field past the end');
      yield { number, wireType: type, varint: 0, bytes: Buffer.alloc(0) };
    } else {
      throw new ProtobufError(`unsupported wire type ${type}`);
    }
  }
}

function varint(value: number): number[] {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return bytes;
}

/** Builds one message; fields are written in call order. */
export class MessageWriter {
  readonly #parts: Buffer[] = [];

  varint(number: number, value: number): this {
    this.#parts.push(Buffer.from([...varint(number * 8 + wireType.varint), ...varint(value)]));
    return this;
  }

  /** A signed 64-bit integer (int64): negatives as their two's complement, in 10 bytes. */
  int64(number: number, value: number): this {
    let rest = BigInt.asUintN(64, BigInt(value));
    const bytes = varint(number * 8 + wireType.varint);
    while (rest >= 0x80n) {
      bytes.push(Number(rest & 0x7fn) | 0x80);
      rest >>= 7n;
    }
    bytes.push(Number(rest));
    this.#parts.push(Buffer.from(bytes));
    return this;
  }

  /** A fixed64 (e.g. a time in nanoseconds since the epoch). */
  fixed64(number: number, value: bigint): this {
    const payload = Buffer.alloc(8);
    payload.writeBigUInt64LE(BigInt.asUintN(64, value));
    this.#parts.push(Buffer.from(varint(number * 8 + wireType.fixed64)), payload);
    return this;
  }

  double(number: number, value: number): this {
    const payload = Buffer.alloc(8);
    payload.writeDoubleLE(value);
    this.#parts.push(Buffer.from(varint(number * 8 + wireType.fixed64)), payload);
    return this;
  }

  bool(number: number, value: boolean): this {
    return value ? this.varint(number, 1) : this;
  }

  bytes(number: number, value: Buffer | string): this {
    const payload = typeof value === 'string' ? Buffer.from(value) : value;
    this.#parts.push(
      Buffer.from([...varint(number * 8 + wireType.bytes), ...varint(payload.length)]),
      payload,
    );
    return this;
  }

  message(number: number, value: MessageWriter): this {
    return this.bytes(number, value.finish());
  }

  finish(): Buffer {
    return Buffer.concat(this.#parts);
  }
}
