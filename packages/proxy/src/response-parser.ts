// The parser of targets' HTTP/1.1 responses, as strict as llhttp (Node's own parser, which
// configurable-http-proxy relies on): what llhttp rejects this rejects, and what it accepts this
// frames the same way (RFC 9112 §6.3). A target is a user's notebook server, so every byte is
// hostile: a response this parser did not accept never reaches a client, and a connection that
// carried anything doubtful is never reused. Streaming: the head is parsed line by line as it
// arrives (a bare LF fails at once instead of waiting for a CRLFCRLF that never comes), bodies
// are passed on as slices of the socket's buffers.
import { TargetResponseError } from './errors.ts';

export interface ResponseHead {
  status: number;
  /** The reason phrase as sent ('' for none). */
  reason: string;
  /** Alternating names and values, as sent (values without surrounding whitespace). */
  rawHeaders: string[];
  /** Milliseconds from `Keep-Alive: timeout=N`, 0 when not announced. */
  keepAliveMs: number;
  /**
   * The bytes that came with the head already showed the target framing its answer wrongly
   * (see `ResponseParser.doubtful`): the client connection should close after this response.
   */
  doubtful: boolean;
}

export interface ResponseEvents {
  onHead(head: ResponseHead): void;
  onBody(chunk: Buffer): void;
  onComplete(): void;
}

// Node's default --max-http-header-size, counted as Node counts it: reason, names and values.
export const maxHeaderBytes = 16 * 1024;
// Node's limit on the extensions of one chunk (CVE-2024-22019).
const maxChunkExtensionBytes = 16 * 1024;

const State = {
  StatusLine: 0,
  HeaderLine: 1,
  BodyLength: 2,
  BodyUntilClose: 3,
  ChunkSize: 4,
  ChunkData: 5,
  ChunkDataCr: 6,
  ChunkDataLf: 7,
  TrailerLine: 8,
  Done: 9,
} as const;
type State = (typeof State)[keyof typeof State];

// tchar of RFC 9110 §5.6.2, indexed by byte.
const tokenChar = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") tokenChar[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) tokenChar[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) tokenChar[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) tokenChar[c] = 1;

// field-vchar, SP and HTAB (RFC 9110 §5.5), obs-text included: what llhttp lets through in values.
const valueChar = new Uint8Array(256);
valueChar[9] = 1;
for (let c = 0x20; c <= 0x7e; c++) valueChar[c] = 1;
for (let c = 0x80; c <= 0xff; c++) valueChar[c] = 1;

const statusLine = /^HTTP\/(\d)\.(\d) (\d{3})(?: ([^\r\n]*))?$/;
// What a status line cut short may look like and still become a valid one.
const statusLinePrefix =
  /^(?:H(?:T(?:T(?:P(?:\/(?:\d(?:\.(?:\d(?: (?:\d(?:\d(?:\d(?: [^\r\n]*)?)?)?)?)?)?)?)?)?)?)?)?)?$/;
// HTTP versions llhttp accepts in a status line.
const knownVersions = new Set(['0.9', '1.0', '1.1', '2.0']);
const maxLength = 2n ** 64n - 1n;

function isToken(text: string, from: number, to: number): boolean {
  if (from >= to) return false;
  for (let i = from; i < to; i++) if (tokenChar[text.charCodeAt(i)] !== 1) return false;
  return true;
}

function isWhitespace(code: number): boolean {
  return code === 32 || code === 9;
}

export class ResponseParser {
  readonly #events: ResponseEvents;
  /** The request was HEAD: whatever the headers say, no body follows. */
  readonly #headRequest: boolean;
  #state: State = State.StatusLine;
  /** Bytes of the line being read (a head, chunk-size or trailer line) not yet ended by LF. */
  #line = '';
  #headerBytes = 0;
  #status = 0;
  #reason = '';
  #rawHeaders: string[] = [];
  #httpMinor = 1;
  #httpMajor = 1;
  #contentLength = -1;
  #transferEncoding: string | undefined;
  #connection: string | undefined;
  #keepAliveMs = 0;
  #remaining = 0;
  #stopped = false;
  /** The head, body and end of the packet being parsed, held back until its last byte (see #flush). */
  #pendingHead: ResponseHead | undefined;
  #pendingBody: Buffer[] = [];
  #pendingComplete = false;
  /** Whether the connection can carry another exchange once this response completed. */
  #reusable = true;
  /** Whether any byte arrived. */
  started = false;
  /**
   * Bytes came after the response ended (a body on a 204, more than Content-Length said): a
   * target that frames its answers wrongly. The response is relayed as framed; neither its
   * connection nor the client's carries another exchange.
   */
  doubtful = false;

  constructor(events: ResponseEvents, headRequest: boolean) {
    this.#events = events;
    this.#headRequest = headRequest;
  }

  /** True once the response is complete and nothing doubtful came with it. */
  get reusable(): boolean {
    return this.#state === State.Done && this.#reusable;
  }

  /** Milliseconds the target announced it keeps an idle connection (`Keep-Alive: timeout=N`). */
  get keepAliveMs(): number {
    return this.#keepAliveMs;
  }

  get complete(): boolean {
    return this.#state === State.Done;
  }

  /** Whether the head was accepted and handed on. */
  get headDone(): boolean {
    return this.#state > State.HeaderLine;
  }

  /** No more events: the exchange ended (the client left, a timer fired). */
  stop(): void {
    this.#stopped = true;
  }

  /** Feeds bytes from the target; throws TargetResponseError on the first byte that is wrong. */
  execute(data: Buffer): void {
    if (data.length > 0) this.started = true;
    let at = 0;
    while (at < data.length && !this.#stopped) {
      switch (this.#state) {
        case State.StatusLine:
        case State.HeaderLine:
        case State.ChunkSize:
        case State.TrailerLine:
          at = this.#readLine(data, at);
          break;
        case State.BodyLength: {
          const take = Math.min(this.#remaining, data.length - at);
          this.#remaining -= take;
          const chunk = take === data.length ? data : data.subarray(at, at + take);
          at += take;
          if (this.#remaining === 0) this.#state = State.Done;
          this.#deliver(chunk);
          if (this.#state === State.Done) this.#finished(data, at);
          break;
        }
        case State.BodyUntilClose:
          this.#deliver(at === 0 ? data : data.subarray(at));
          at = data.length;
          break;
        case State.ChunkData: {
          const take = Math.min(this.#remaining, data.length - at);
          this.#remaining -= take;
          const chunk = data.subarray(at, at + take);
          at += take;
          if (this.#remaining === 0) this.#state = State.ChunkDataCr;
          this.#deliver(chunk);
          break;
        }
        case State.ChunkDataCr:
          if (data[at] !== 13) {
            throw new TargetResponseError('HPE_STRICT', 'chunk data not followed by CRLF');
          }
          at++;
          this.#state = State.ChunkDataLf;
          break;
        case State.ChunkDataLf:
          if (data[at] !== 10) {
            throw new TargetResponseError('HPE_STRICT', 'chunk data not followed by CRLF');
          }
          at++;
          this.#state = State.ChunkSize;
          break;
        case State.Done:
          // Bytes after a complete response: nobody asked for them.
          this.#reusable = false;
          this.doubtful = true;
          at = data.length;
          break;
      }
    }
    if (this.#pendingHead) this.#flush();
  }

  /**
   * Hands on the head held back while the rest of its packet was parsed, then that packet's
   * body. Holding it costs no time (same tick) and buys two things: a framing error in the same
   * packet refuses the response before anything of it went out, and doubtful bytes are known
   * while the head can still say `Connection: close`.
   */
  #flush(): void {
    const head = this.#pendingHead!;
    const body = this.#pendingBody;
    const complete = this.#pendingComplete;
    this.#pendingHead = undefined;
    this.#pendingBody = [];
    this.#pendingComplete = false;
    head.doubtful = this.doubtful;
    this.#events.onHead(head);
    for (const chunk of body) {
      if (this.#stopped) return;
      this.#events.onBody(chunk);
    }
    if (complete && !this.#stopped) this.#events.onComplete();
  }

  #deliver(chunk: Buffer): void {
    if (this.#pendingHead) this.#pendingBody.push(chunk);
    else this.#events.onBody(chunk);
  }

  /** The target closed the connection: the end of a body read until close, else an error. */
  finish(): boolean {
    if (this.#state === State.BodyUntilClose) {
      this.#state = State.Done;
      this.#reusable = false;
      if (!this.#stopped) this.#events.onComplete();
      return true;
    }
    return this.#state === State.Done;
  }

  #readLine(data: Buffer, at: number): number {
    const lf = data.indexOf(10, at);
    const end = lf === -1 ? data.length : lf;
    this.#line += data.toString('latin1', at, end);
    if (lf === -1) {
      const limit = this.#state === State.ChunkSize ? maxChunkExtensionBytes + 32 : maxHeaderBytes + 32;
      if (this.#line.length > limit) this.#overflow();
      this.#checkPartialLine();
      return data.length;
    }
    let line = this.#line;
    this.#line = '';
    if (line.charCodeAt(line.length - 1) !== 13) {
      throw new TargetResponseError('HPE_CR_EXPECTED', 'a line ended by LF without CR');
    }
    line = line.slice(0, -1);
    switch (this.#state) {
      case State.StatusLine:
        this.#statusLine(line);
        break;
      case State.HeaderLine:
        if (line === '') this.#headersEnd(data, lf + 1);
        else this.#headerLine(line, false);
        break;
      case State.ChunkSize:
        this.#chunkSize(line);
        break;
      case State.TrailerLine:
        if (line === '') {
          this.#state = State.Done;
          this.#finished(data, lf + 1);
        } else this.#headerLine(line, true);
        break;
    }
    return lf + 1;
  }

  /**
   * A line cut by a packet boundary is checked as far as it goes: llhttp refuses a wrong byte
   * when it arrives, so a target that sends one and then closes is refused (502), not taken for
   * one that closed early (503).
   */
  #checkPartialLine(): void {
    const line = this.#line.charCodeAt(this.#line.length - 1) === 13 ? this.#line.slice(0, -1) : this.#line;
    switch (this.#state) {
      case State.StatusLine:
        if (!statusLinePrefix.test(line)) this.#statusLine(line);
        else if (line.length >= 8 && !knownVersions.has(line.slice(5, 8))) this.#statusLine(line);
        break;
      case State.HeaderLine:
      case State.TrailerLine: {
        if (line === '') break;
        if (isWhitespace(line.charCodeAt(0))) this.#headerLine(line, true);
        const colon = line.indexOf(':');
        const nameEnd = colon === -1 ? line.length : colon;
        if ((colon === 0 || nameEnd > 0) && !isToken(line, 0, nameEnd)) this.#headerLine(line, true);
        for (let i = colon + 1; colon !== -1 && i < line.length; i++) {
          if (valueChar[line.charCodeAt(i)] !== 1) this.#headerLine(line, true);
        }
        if (colon !== -1) this.#checkPartialFraming(line, colon);
        break;
      }
      case State.ChunkSize: {
        let end = 0;
        while (end < line.length && isHex(line.charCodeAt(end))) end++;
        if (end < line.length && (end === 0 || line.charCodeAt(end) !== 59)) this.#chunkSize(line);
        break;
      }
    }
  }

  /** The framing headers of a line cut short, checked as far as they go (llhttp does). */
  #checkPartialFraming(line: string, colon: number): void {
    const name = line.slice(0, colon).toLowerCase();
    const trailer = this.#state === State.TrailerLine;
    if (name === 'transfer-encoding') {
      if (!trailer && this.#contentLength !== -1) this.#transferEncodingHeader('chunked');
    } else if (name === 'content-length') {
      if (trailer || this.#transferEncoding !== undefined || this.#contentLength !== -1) {
        this.#contentLengthHeader('0', trailer);
      }
      const value = line.slice(colon + 1).replace(/^[ \t]+/, '');
      const digits = /^\d*/.exec(value)![0];
      // Digits, then only whitespace: anything else can never become a valid length.
      if (!/^[ \t]*$/.test(value.slice(digits.length))) parseContentLength(value);
      if (digits.length > 0) parseContentLength(digits);
    }
  }

  #overflow(): never {
    throw new TargetResponseError('HPE_HEADER_OVERFLOW', `a response head over ${maxHeaderBytes} bytes`);
  }

  #count(bytes: number): void {
    this.#headerBytes += bytes;
    if (this.#headerBytes >= maxHeaderBytes) this.#overflow();
  }

  #statusLine(line: string): void {
    const length = Math.min(line.length, 5);
    if (line.slice(0, length) !== 'HTTP/'.slice(0, length) || line.length < 5) {
      throw new TargetResponseError(
        'HPE_INVALID_CONSTANT',
        `not an HTTP/1.1 status line: ${JSON.stringify(line.slice(0, 80))}`,
      );
    }
    if (line.length >= 8 && /^\d\.\d$/.test(line.slice(5, 8)) && !knownVersions.has(line.slice(5, 8))) {
      throw new TargetResponseError('HPE_INVALID_VERSION', `an unknown HTTP version: ${line.slice(0, 8)}`);
    }
    const match = statusLine.exec(line);
    if (!match) {
      throw new TargetResponseError(
        'HPE_INVALID_STATUS',
        `not an HTTP/1.1 status line: ${JSON.stringify(line.slice(0, 80))}`,
      );
    }
    const status = Number(match[3]);
    // llhttp accepts any three digits; Node cannot relay a status below 100 (nor can anyone
    // act on one), so it ends the exchange as a bad response.
    if (status < 100)
      throw new TargetResponseError('HPE_INVALID_STATUS', `an invalid status code ${match[3]}`);
    this.#httpMajor = Number(match[1]);
    this.#httpMinor = Number(match[2]);
    this.#status = status;
    this.#reason = match[4] ?? '';
    this.#count(this.#reason.length);
    this.#state = State.HeaderLine;
  }

  #headerLine(line: string, trailer: boolean): void {
    const first = line.charCodeAt(0);
    if (isWhitespace(first)) {
      // obs-fold, or whitespace before the first header: llhttp rejects both.
      throw new TargetResponseError('HPE_INVALID_HEADER_TOKEN', 'a folded or indented header line');
    }
    const colon = line.indexOf(':');
    if (colon === -1 || !isToken(line, 0, colon)) {
      throw new TargetResponseError(
        'HPE_INVALID_HEADER_TOKEN',
        `a header name that is not a token: ${JSON.stringify(line.slice(0, 80))}`,
      );
    }
    let start = colon + 1;
    let end = line.length;
    while (start < end && isWhitespace(line.charCodeAt(start))) start++;
    while (end > start && isWhitespace(line.charCodeAt(end - 1))) end--;
    for (let i = start; i < end; i++) {
      if (valueChar[line.charCodeAt(i)] !== 1) {
        throw new TargetResponseError(
          'HPE_INVALID_HEADER_TOKEN',
          `a control character in the value of ${JSON.stringify(line.slice(0, colon))}`,
        );
      }
    }
    const name = line.slice(0, colon);
    const value = line.slice(start, end);
    this.#count(name.length + value.length);
    // Framing headers are checked in trailers too: a Content-Length there contradicts chunked.
    switch (name.length) {
      case 10:
        if (trailer) break;
        if (name.toLowerCase() === 'connection') {
          this.#connection = this.#connection === undefined ? value : `${this.#connection}, ${value}`;
        } else if (name.toLowerCase() === 'keep-alive') {
          const timeout = /(?:^|[,;\s])timeout=(\d{1,6})\b/i.exec(value);
          if (timeout) this.#keepAliveMs = Number(timeout[1]) * 1000;
        }
        break;
      case 14:
        if (name.toLowerCase() === 'content-length') this.#contentLengthHeader(value, trailer);
        break;
      case 17:
        if (!trailer && name.toLowerCase() === 'transfer-encoding') this.#transferEncodingHeader(value);
        break;
    }
    if (!trailer) this.#rawHeaders.push(name, value);
  }

  #contentLengthHeader(value: string, trailer: boolean): void {
    if (trailer || this.#transferEncoding !== undefined) {
      throw new TargetResponseError(
        'HPE_INVALID_CONTENT_LENGTH',
        'both Content-Length and Transfer-Encoding',
      );
    }
    if (this.#contentLength !== -1) {
      throw new TargetResponseError('HPE_UNEXPECTED_CONTENT_LENGTH', 'more than one Content-Length');
    }
    this.#contentLength = parseContentLength(value);
  }

  #transferEncodingHeader(value: string): void {
    if (this.#contentLength !== -1) {
      throw new TargetResponseError(
        'HPE_INVALID_TRANSFER_ENCODING',
        'both Transfer-Encoding and Content-Length',
      );
    }
    if (value === '')
      throw new TargetResponseError('HPE_INVALID_TRANSFER_ENCODING', 'an empty Transfer-Encoding');
    this.#transferEncoding =
      this.#transferEncoding === undefined ? value : `${this.#transferEncoding}, ${value}`;
  }

  #headersEnd(data: Buffer, at: number): void {
    const status = this.#status;
    if (status === 101) {
      throw new TargetResponseError(
        'HPE_INVALID_STATUS',
        '101 Switching Protocols to a request without Upgrade',
      );
    }
    if (status < 200) {
      // Interim answers (100, 102, 103) are not relayed: the final response follows.
      this.#reset();
      return;
    }
    this.#reusable = this.#keepAlive();
    let chunked = false;
    if (this.#transferEncoding !== undefined) {
      const codings = this.#transferEncoding.split(',');
      chunked = trimWhitespace(codings[codings.length - 1]!).toLowerCase() === 'chunked';
    }
    if (this.#headRequest || status === 204 || status === 304) this.#state = State.Done;
    else if (chunked) this.#state = State.ChunkSize;
    else if (this.#transferEncoding !== undefined || this.#contentLength === -1) {
      this.#state = State.BodyUntilClose;
      this.#reusable = false;
    } else if (this.#contentLength === 0) this.#state = State.Done;
    else {
      this.#state = State.BodyLength;
      this.#remaining = this.#contentLength;
    }
    this.#headerBytes = 0;
    this.#pendingHead = {
      status,
      reason: this.#reason,
      rawHeaders: this.#rawHeaders,
      keepAliveMs: this.#keepAliveMs,
      doubtful: false,
    };
    if (this.#state === State.Done) this.#finished(data, at);
  }

  #keepAlive(): boolean {
    const connection = this.#connection?.toLowerCase();
    if (connection !== undefined) {
      for (const token of connection.split(',')) {
        const trimmed = trimWhitespace(token);
        if (trimmed === 'close') return false;
        if (trimmed === 'keep-alive' && this.#httpMinor === 0) return true;
      }
    }
    return this.#httpMajor === 1 && this.#httpMinor === 1;
  }

  #chunkSize(line: string): void {
    let end = 0;
    while (end < line.length && isHex(line.charCodeAt(end))) end++;
    if (end === 0) {
      throw new TargetResponseError(
        'HPE_INVALID_CHUNK_SIZE',
        `a bad chunk size: ${JSON.stringify(line.slice(0, 40))}`,
      );
    }
    let significant = 0;
    while (significant < end - 1 && line.charCodeAt(significant) === 48) significant++;
    if (end - significant > 16)
      throw new TargetResponseError('HPE_INVALID_CHUNK_SIZE', 'a chunk size over 2^64 - 1');
    if (end < line.length) this.#chunkExtensions(line, end);
    const size = Number.parseInt(line.slice(significant, end), 16);
    if (size === 0) {
      this.#state = State.TrailerLine;
    } else {
      this.#remaining = size;
      this.#state = State.ChunkData;
    }
  }

  /** `*( ";" token [ "=" ( token / quoted-string ) ] )` with no whitespace, as llhttp wants. */
  #chunkExtensions(line: string, from: number): void {
    if (line.length - from > maxChunkExtensionBytes) {
      throw new TargetResponseError('HPE_CHUNK_EXTENSIONS_OVERFLOW', 'chunk extensions over 16 KiB');
    }
    let at = from;
    const bad = () =>
      new TargetResponseError(
        'HPE_STRICT',
        `invalid chunk extensions: ${JSON.stringify(line.slice(from, 80))}`,
      );
    if (line.charCodeAt(at) !== 59) {
      throw new TargetResponseError(
        'HPE_INVALID_CHUNK_SIZE',
        `a bad chunk size: ${JSON.stringify(line.slice(0, 40))}`,
      );
    }
    while (at < line.length) {
      if (line.charCodeAt(at) !== 59) throw bad();
      at++;
      const nameStart = at;
      while (at < line.length && tokenChar[line.charCodeAt(at)] === 1) at++;
      // llhttp lets an empty name through when a value follows (`;=v`), not a bare `;`.
      if (at === nameStart && line.charCodeAt(at) !== 61) throw bad();
      if (at === line.length || line.charCodeAt(at) === 59) continue;
      if (line.charCodeAt(at) !== 61) throw bad();
      at++;
      if (line.charCodeAt(at) === 34) {
        at++;
        for (;;) {
          if (at >= line.length) throw bad();
          const code = line.charCodeAt(at);
          if (code === 34) {
            at++;
            break;
          }
          if (code === 92) {
            const next = line.charCodeAt(at + 1);
            if (!(next === 9 || (next >= 0x20 && next !== 0x7f))) throw bad();
            at += 2;
            continue;
          }
          if (!(code === 9 || (code >= 0x20 && code !== 0x7f))) throw bad();
          at++;
        }
      } else {
        while (at < line.length && tokenChar[line.charCodeAt(at)] === 1) at++;
      }
    }
  }

  #finished(data: Buffer, at: number): void {
    if (at < data.length) {
      this.#reusable = false;
      this.doubtful = true;
    }
    if (this.#pendingHead) this.#pendingComplete = true;
    else if (!this.#stopped) this.#events.onComplete();
  }

  #reset(): void {
    this.#state = State.StatusLine;
    this.#headerBytes = 0;
    this.#rawHeaders = [];
    this.#contentLength = -1;
    this.#transferEncoding = undefined;
    this.#connection = undefined;
    this.#keepAliveMs = 0;
  }
}

/** A Content-Length value: digits only, at most 2^64 - 1 (llhttp's limit). */
function parseContentLength(value: string): number {
  if (value === '' || !/^\d+$/.test(value)) {
    throw new TargetResponseError(
      'HPE_INVALID_CONTENT_LENGTH',
      `an invalid Content-Length: ${JSON.stringify(value.slice(0, 40))}`,
    );
  }
  const digits = value.replace(/^0+(?=\d)/, '');
  if (digits.length > 20 || BigInt(digits) > maxLength) {
    throw new TargetResponseError('HPE_INVALID_CONTENT_LENGTH', 'a Content-Length over 2^64 - 1');
  }
  return Number(digits);
}

/** Strips only SP and HTAB (OWS), as llhttp does: String#trim would take 0xA0 too. */
function trimWhitespace(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isWhitespace(text.charCodeAt(start))) start++;
  while (end > start && isWhitespace(text.charCodeAt(end - 1))) end--;
  return text.slice(start, end);
}

function isHex(code: number): boolean {
  return (code >= 48 && code <= 57) || (code >= 65 && code <= 70) || (code >= 97 && code <= 102);
}
