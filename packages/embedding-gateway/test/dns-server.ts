// A DNS server on loopback whose answers the test sets: A records per name, NXDOMAIN for
// names it does not know, SERVFAIL on demand. Enough of RFC 1035 for c-ares (node:dns).
import { createSocket, type Socket } from 'node:dgram';

export class TestDnsServer {
  readonly records = new Map<string, string[]>();
  /** Names answered with SERVFAIL. */
  readonly failing = new Set<string>();
  /** Names never answered. */
  readonly silent = new Set<string>();
  queries = 0;
  #socket: Socket | undefined;
  port = 0;

  async start(): Promise<this> {
    const socket = createSocket('udp4');
    this.#socket = socket;
    socket.on('message', (message, remote) => {
      const answer = this.#answer(message);
      if (answer) socket.send(answer, remote.port, remote.address);
    });
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    this.port = socket.address().port;
    return this;
  }

  get server(): string {
    return `127.0.0.1:${this.port}`;
  }

  #answer(message: Buffer): Buffer | undefined {
    if (message.length < 12) return undefined;
    this.queries++;
    let at = 12;
    const labels: string[] = [];
    while (at < message.length && message[at] !== 0) {
      const length = message[at]!;
      labels.push(message.toString('ascii', at + 1, at + 1 + length));
      at += 1 + length;
    }
    at += 1;
    const qtype = message.readUInt16BE(at);
    const question = message.subarray(12, at + 4);
    const name = labels.join('.').toLowerCase();
    if (this.silent.has(name)) return undefined;
    const known = this.records.get(name);
    const rcode = this.failing.has(name) ? 2 : known ? 0 : 3;
    const addresses = rcode === 0 && qtype === 1 ? known! : [];
    const header = Buffer.alloc(12);
    header.writeUInt16BE(message.readUInt16BE(0), 0);
    header.writeUInt16BE(0x8180 | rcode, 2); // response, recursion desired and available
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(addresses.length, 6);
    const answers = addresses.map((address) => {
      const record = Buffer.alloc(16);
      record.writeUInt16BE(0xc00c, 0); // the name, as a pointer to the question's
      record.writeUInt16BE(1, 2);
      record.writeUInt16BE(1, 4);
      record.writeUInt32BE(5, 6);
      record.writeUInt16BE(4, 10);
      for (const [i, octet] of address.split('.').entries()) record.writeUInt8(Number(octet), 12 + i);
      return record;
    });
    return Buffer.concat([header, question, ...answers]);
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.#socket ? this.#socket.close(() => resolve()) : resolve()));
  }
}
