import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TargetResponseError } from './errors.ts';
import { type ResponseHead, ResponseParser } from './response-parser.ts';

function parse(text: string, options: { head?: boolean; split?: number } = {}) {
  const seen = { head: undefined as ResponseHead | undefined, body: '', complete: false };
  const parser = new ResponseParser(
    {
      onHead: (head) => {
        seen.head = head;
      },
      onBody: (chunk) => {
        seen.body += chunk.toString('latin1');
      },
      onComplete: () => {
        seen.complete = true;
      },
    },
    options.head ?? false,
  );
  const bytes = Buffer.from(text, 'latin1');
  const step = options.split ?? bytes.length;
  for (let at = 0; at < bytes.length; at += step) parser.execute(bytes.subarray(at, at + step));
  return { ...seen, parser };
}

function refused(text: string, reason: string) {
  assert.throws(
    () => parse(text),
    (error) => error instanceof TargetResponseError && error.reason === reason && error.status === 502,
  );
}

test('a Content-Length body, also fed one byte at a time, completes and leaves the connection reusable', () => {
  for (const split of [undefined, 1]) {
    const { head, body, complete, parser } = parse(
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \t\r\n\r\nhello',
      {
        split,
      },
    );
    assert.equal(head?.status, 200);
    assert.deepEqual(head?.rawHeaders, ['Content-Length', '5', 'X-A', 'b']);
    assert.equal(body, 'hello');
    assert.ok(complete && parser.reusable);
  }
});

test('a chunk extension with an empty name and a value is accepted, as llhttp does', () => {
  const { body, complete } = parse(
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;="quoted value"\r\nhello\r\n0\r\n\r\n',
  );
  assert.equal(body, 'hello');
  assert.ok(complete);
});

test('chunked bodies are decoded; extensions checked; trailers read and not passed on', () => {
  const { body, complete, head } = parse(
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;a=b;c="x;y"\r\nabc\r\n000A\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n',
    { split: 3 },
  );
  assert.equal(body, 'abc0123456789');
  assert.ok(complete);
  assert.deepEqual(head?.rawHeaders, ['Transfer-Encoding', 'gzip, chunked']);
});

test('a Transfer-Encoding that does not end in chunked, or no framing at all, reads until close', () => {
  for (const framing of ['Transfer-Encoding: chunked, gzip\r\n', 'Transfer-Encoding: chunked;q=1\r\n', '']) {
    const { body, complete, parser } = parse(`HTTP/1.1 200 OK\r\n${framing}\r\nsome bytes`);
    assert.equal(body, 'some bytes');
    assert.equal(complete, false);
    assert.equal(parser.finish(), true);
    assert.equal(parser.reusable, false);
  }
});

test('HEAD, 204 and 304 have no body; interim 1xx answers are skipped', () => {
  assert.ok(parse('HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n', { head: true }).complete);
  assert.ok(parse('HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n').complete);
  const interim = parse(
    'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx',
  );
  assert.equal(interim.head?.status, 201);
  assert.deepEqual(interim.head?.rawHeaders, ['Content-Length', '1']);
});

test('bytes after a complete response make the connection unusable and the response doubtful', () => {
  const { complete, parser } = parse('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naEXTRA');
  assert.ok(complete);
  assert.equal(parser.reusable, false);
  assert.equal(parser.doubtful, true);
  assert.equal(parse('HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\nhi').parser.doubtful, true);
  assert.equal(parse('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi').parser.doubtful, false);
});

test('Connection: close, HTTP/1.0 without keep-alive and Keep-Alive timeouts are honoured', () => {
  assert.equal(
    parse('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n').parser.reusable,
    false,
  );
  assert.equal(parse('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n').parser.reusable, false);
  assert.equal(
    parse('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n').parser.reusable,
    true,
  );
  assert.equal(
    parse('HTTP/1.1 200 OK\r\nKeep-Alive: timeout=7\r\nContent-Length: 0\r\n\r\n').parser.keepAliveMs,
    7000,
  );
});

test("framing that RFC 9112 §6.3 and llhttp refuse is refused with llhttp's reason", () => {
  refused(
    'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n',
    'HPE_INVALID_TRANSFER_ENCODING',
  );
  refused(
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n',
    'HPE_INVALID_CONTENT_LENGTH',
  );
  refused(
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n',
    'HPE_UNEXPECTED_CONTENT_LENGTH',
  );
  for (const value of ['1,1', '+1', '-1', '0x1', '1 1', '']) {
    refused(`HTTP/1.1 200 OK\r\nContent-Length: ${value}\r\n\r\n`, 'HPE_INVALID_CONTENT_LENGTH');
  }
  refused('HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n', 'HPE_INVALID_CONTENT_LENGTH');
  refused('HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n', 'HPE_INVALID_TRANSFER_ENCODING');
  refused(
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 1\r\n\r\n',
    'HPE_INVALID_CONTENT_LENGTH',
  );
});

test('bad chunk sizes, extensions and missing CRLFs after data are refused', () => {
  const chunked = (rest: string) => `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${rest}`;
  for (const size of ['0x3', '3 ', ' 3', '', 'g', '3\t;a'])
    refused(chunked(`${size}\r\nabc\r\n0\r\n\r\n`), 'HPE_INVALID_CHUNK_SIZE');
  refused(chunked('FFFFFFFFFFFFFFFFF\r\n'), 'HPE_INVALID_CHUNK_SIZE');
  for (const extension of [';', '; a', ';a@=b', ';a="\x01"', ';a="open']) {
    refused(chunked(`3${extension}\r\nabc\r\n0\r\n\r\n`), 'HPE_STRICT');
  }
  refused(chunked('3\r\nabcX'), 'HPE_STRICT');
  refused(chunked('3\nabc\r\n0\r\n\r\n'), 'HPE_CR_EXPECTED');
});

test('bad status lines, header names, values, bare LF and obs-fold are refused', () => {
  refused('http/1.1 200 OK\r\n\r\n', 'HPE_INVALID_CONSTANT');
  refused('\x16\x03\x01', 'HPE_INVALID_CONSTANT');
  for (const line of ['HTTP/1.1  200 OK', 'HTTP/1.1 2000 OK', 'HTTP/1.1 2x0 OK', 'HTTP/1.1 099 Low']) {
    refused(`${line}\r\nContent-Length: 0\r\n\r\n`, 'HPE_INVALID_STATUS');
  }
  refused('HTTP/1.2 200 OK\r\n\r\n', 'HPE_INVALID_VERSION');
  refused('HTTP/1.1 101 Switching Protocols\r\n\r\n', 'HPE_INVALID_STATUS');
  for (const header of [
    'Bad Name: x',
    'X : y',
    ': y',
    'NoColon',
    'X\xe9: y',
    'X: a\x00b',
    'X: a\x7fb',
    'X: a\rb',
    ' X: y',
  ]) {
    refused(`HTTP/1.1 200 OK\r\n${header}\r\n\r\n`, 'HPE_INVALID_HEADER_TOKEN');
  }
  refused('HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN');
  refused('HTTP/1.1 200 OK\nX: y\r\n\r\n', 'HPE_CR_EXPECTED');
  refused('HTTP/1.1 200 OK\r\nX: y\n\r\n', 'HPE_CR_EXPECTED');
});

test('obs-text in values and control characters in the reason are accepted, as llhttp does', () => {
  const { head } = parse('HTTP/1.1 200 O\x01K\r\nX: caf\xe9\r\nContent-Length: 0\r\n\r\n');
  assert.equal(head?.reason, 'O\x01K');
  assert.deepEqual(head?.rawHeaders, ['X', 'caf\xe9', 'Content-Length', '0']);
});

test('a head of 16 KiB or more is refused at once, without waiting for its end', () => {
  const parser = new ResponseParser({ onHead() {}, onBody() {}, onComplete() {} }, false);
  parser.execute(Buffer.from('HTTP/1.1 200 OK\r\n'));
  assert.throws(
    () => parser.execute(Buffer.from(`X: ${'a'.repeat(17 * 1024)}`)),
    (error) => error instanceof TargetResponseError && error.reason === 'HPE_HEADER_OVERFLOW',
  );
  assert.doesNotThrow(() => parse(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(16000)}\r\nContent-Length: 0\r\n\r\n`));
});

test('a wrong byte is refused when it arrives, before its line ends', () => {
  for (const [partial, reason] of [
    ['HTTX', 'HPE_INVALID_CONSTANT'],
    ['HTTP/1.2', 'HPE_INVALID_VERSION'],
    ['HTTP/1.1 2x', 'HPE_INVALID_STATUS'],
    ['HTTP/1.1 200 OK\r\nBad Na', 'HPE_INVALID_HEADER_TOKEN'],
    ['HTTP/1.1 200 OK\r\nX: a\x01', 'HPE_INVALID_HEADER_TOKEN'],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3 ', 'HPE_INVALID_CHUNK_SIZE'],
  ] as const) {
    assert.throws(
      () => parse(partial),
      (error) => error instanceof TargetResponseError && error.reason === reason,
      partial,
    );
  }
  // A valid beginning waits for more.
  assert.doesNotThrow(() => parse('HTTP/1.1 200 O'));
  assert.doesNotThrow(() => parse('HTTP/1.1 200 OK\r\nX-Fine: va'));
});

test('framing headers cut short are refused as soon as they cannot become valid', () => {
  for (const [partial, reason] of [
    ['HTTP/1.1 200 OK\r\nContent-Length: x', 'HPE_INVALID_CONTENT_LENGTH'],
    ['HTTP/1.1 200 OK\r\nContent-Length: 1 2', 'HPE_INVALID_CONTENT_LENGTH'],
    [`HTTP/1.1 200 OK\r\nContent-Length: ${'9'.repeat(21)}`, 'HPE_INVALID_CONTENT_LENGTH'],
    ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5', 'HPE_UNEXPECTED_CONTENT_LENGTH'],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length:', 'HPE_INVALID_CONTENT_LENGTH'],
    ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: ch', 'HPE_INVALID_TRANSFER_ENCODING'],
  ] as const) {
    assert.throws(
      () => parse(partial),
      (error) => error instanceof TargetResponseError && error.reason === reason,
      partial,
    );
  }
  assert.doesNotThrow(() => parse('HTTP/1.1 200 OK\r\nContent-Length: 12 '));
});
