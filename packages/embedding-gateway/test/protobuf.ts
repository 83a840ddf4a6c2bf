// A protobuf encoder/decoder and gRPC framing of the tests' own, written from the wire format's
// documentation and independent of src/hasher, so the hasher is checked against a second reading.
export type Decoded = Map<number, Array<Buffer | number>>;

export function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

/** A length-delimited field (wire type 2). */
export const len = (field: number, payload: Buffer | string): Buffer => {
  const bytes = Buffer.from(payload);
  return Buffer.concat([varint(field * 8 + 2), varint(bytes.length), bytes]);
};

/** A varint field (wire type 0). */
export const num = (field: number, value: number): Buffer =>
  Buffer.concat([varint(field * 8), varint(value)]);

export function decode(buffer: Buffer): Decoded {
  const fields: Decoded = new Map();
  let at = 0;
  const read = () => {
    let value = 0;
    let shift = 1;
    for (;;) {
      const byte = buffer[at++]!;
      value += (byte & 127) * shift;
      if (byte < 128) return value;
      shift *= 128;
    }
  };
  while (at < buffer.length) {
    const key = read();
    const field = Math.floor(key / 8);
    let value: Buffer | number;
    if (key % 8 === 2) {
      const length = read();
      value = buffer.subarray(at, at + length);
      at += length;
    } else {
      value = read();
    }
    fields.set(field, [...(fields.get(field) ?? []), value]);
  }
  return fields;
}

/** gRPC's length-prefixed message: a zero compression flag and a 4-byte big-endian length. */
export function grpcFrame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}
