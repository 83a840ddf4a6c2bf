// Raw target responses, valid and invalid, as a target would write them on a connection: the
// corpus the differential test feeds to node:http's client (llhttp) and to the proxy, and the
// fuzz test mutates. Written for Seahorse from RFC 9112 (§2-§7: message format, status line,
// field syntax, §6.3 message body length, §7.1 chunked coding) and from the kinds of cases that
// llhttp's test/response/*.md and Node's test/parallel/test-http-* exercise; no expectation is
// stored here: what llhttp does with each entry is measured when the test runs.
//
// Also here, because both tests use them: a raw TCP target that answers each request with an
// entry's bytes, and one observation of a response through node:http (the same code observes
// the target directly and through the proxy).
import { once } from 'node:events';
import { type Agent, type IncomingMessage, request } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';

export interface CorpusEntry {
  /** Unique, short; printed on every mismatch. */
  name: string;
  /** The bytes the target writes, in one write (the fuzz test splits them). */
  bytes: Buffer;
  /** What the target does after writing: end the connection, or keep it open for more requests. */
  after: 'close' | 'keep';
  /** Request methods to try. */
  methods: readonly Method[];
  /**
   * Why the proxy may answer 502 although llhttp accepts the response: a construct RFC 9112 lets a
   * recipient reject. When the proxy does relay it, it must relay exactly what llhttp parsed. (The
   * status lines of that kind are recognised by leeway(), for mutated responses too.)
   */
  stricter?: string;
  /** Why the target connection must not be reused after this response although llhttp accepts it. */
  doubtful?: string;
}

export type Method = 'GET' | 'HEAD';

const CRLF = '\r\n';

/** Bytes from a latin1 string (every char one byte, so 0x80-0xff and NUL are written as such). */
export function bytes(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

/** A response: status line, header lines, an empty line, then the body, all joined by CRLF. */
function http(statusLine: string, headers: readonly string[], body = ''): string {
  return statusLine + CRLF + headers.map((line) => line + CRLF).join('') + CRLF + body;
}

const entries: CorpusEntry[] = [];

function add(
  name: string,
  text: string | Buffer,
  options: {
    after?: 'close' | 'keep';
    methods?: readonly Method[];
    stricter?: string;
    doubtful?: string;
  } = {},
): void {
  if (entries.some((entry) => entry.name === name)) throw new Error(`duplicate corpus entry ${name}`);
  entries.push({
    name,
    bytes: typeof text === 'string' ? bytes(text) : text,
    after: options.after ?? 'close',
    methods: options.methods ?? ['GET'],
    ...(options.stricter ? { stricter: options.stricter } : {}),
    ...(options.doubtful ? { doubtful: options.doubtful } : {}),
  });
}

const ok = 'HTTP/1.1 200 OK';
const getHead = ['GET', 'HEAD'] as const;
const extraAfterBody = 'bytes after the end of a framed response';

// ---------------------------------------------------------------------------------------------
// Well-formed responses, in every framing; kept open so the framing alone must end them.
add('valid/content-length', http(ok, ['Content-Type: text/plain', 'Content-Length: 5'], 'hello'), {
  after: 'keep',
  methods: getHead,
});
add('valid/content-length-0', http(ok, ['Content-Length: 0']), { after: 'keep', methods: getHead });
add('valid/chunked', http(ok, ['Transfer-Encoding: chunked'], '5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n'), {
  after: 'keep',
  methods: getHead,
});
add('valid/chunked-empty', http(ok, ['Transfer-Encoding: chunked'], '0\r\n\r\n'), { after: 'keep' });
add('valid/until-close', http(ok, ['Content-Type: text/plain'], 'all of it until the end'), {
  methods: getHead,
});
add('valid/until-close-empty', http(ok, []));
add('valid/no-headers-content-length-body-binary', http(ok, ['Content-Length: 4'], '\x00\xff\r\n'), {
  after: 'keep',
});
add(
  'valid/many-common-headers',
  http(
    ok,
    [
      'Date: Tue, 04 Aug 2009 07:59:32 GMT',
      'Server: Apache',
      'X-Powered-By: Servlet/2.5 JSP/2.1',
      'Content-Type: text/xml; charset=utf-8',
      'Cache-Control: no-cache, no-store',
      'ETag: "abc"',
      'Vary: Accept-Encoding',
      'Content-Length: 2',
    ],
    'ok',
  ),
  { after: 'keep', methods: getHead },
);
add(
  'valid/set-cookie-repeated',
  http(ok, ['Set-Cookie: a=1; Path=/', 'Set-Cookie: b=2; HttpOnly', 'Content-Length: 0']),
  { after: 'keep' },
);
add('valid/duplicate-custom-headers', http(ok, ['X-A: 1', 'X-A: 2', 'x-a: 3', 'Content-Length: 0']), {
  after: 'keep',
});
add('valid/header-case-mixed', http(ok, ['cOnTeNt-LeNgTh: 3', 'X-MiXeD: Yes'], 'abc'), { after: 'keep' });
add('valid/content-length-lowercase-name', http(ok, ['content-length: 3'], 'abc'), { after: 'keep' });
add(
  'valid/transfer-encoding-uppercase-value',
  http(ok, ['Transfer-Encoding: CHUNKED'], '3\r\nabc\r\n0\r\n\r\n'),
  {
    after: 'keep',
  },
);
add('valid/status-404', http('HTTP/1.1 404 Not Found', ['Content-Length: 9'], 'not found'), {
  after: 'keep',
});
add('valid/status-500', http('HTTP/1.1 500 Internal Server Error', ['Content-Length: 4'], 'oops'), {
  after: 'keep',
});
add('valid/status-201', http('HTTP/1.1 201 Created', ['Location: /x', 'Content-Length: 0']), {
  after: 'keep',
});
add(
  'valid/status-302-location',
  http('HTTP/1.1 302 Found', ['Location: http://elsewhere.example/', 'Content-Length: 0']),
  {
    after: 'keep',
  },
);
add('valid/status-418', http("HTTP/1.1 418 I'm a teapot", ['Content-Length: 0']), { after: 'keep' });
add('valid/status-599', http('HTTP/1.1 599 Whatever', ['Content-Length: 0']), { after: 'keep' });
add('valid/status-200-custom-reason', http('HTTP/1.1 200 Fine Thanks', ['Content-Length: 0']), {
  after: 'keep',
});
add(
  'valid/event-stream-chunked',
  http(ok, ['Content-Type: text/event-stream', 'Transfer-Encoding: chunked'], '7\r\ndata: 1\r\n0\r\n\r\n'),
  {
    after: 'keep',
  },
);
add('valid/large-body-content-length', http(ok, ['Content-Length: 200000'], 'x'.repeat(200_000)), {
  after: 'keep',
});
add(
  'valid/large-body-chunked',
  http(
    ok,
    ['Transfer-Encoding: chunked'],
    `${(100_000).toString(16)}\r\n${'y'.repeat(100_000)}\r\n0\r\n\r\n`,
  ),
  { after: 'keep' },
);
add('valid/large-body-until-close', http(ok, [], 'z'.repeat(150_000)));
add('valid/content-length-and-close', http(ok, ['Content-Length: 5', 'Connection: close'], 'hello'));
add(
  'valid/chunked-and-close',
  http(ok, ['Transfer-Encoding: chunked', 'Connection: close'], '2\r\nhi\r\n0\r\n\r\n'),
);
add('valid/whitespace-around-value', http(ok, ['X-Pad:    padded   ', 'Content-Length: 0']), {
  after: 'keep',
});
add('valid/tab-around-value', http(ok, ['X-Tab:\tvalue\t', 'Content-Length: 0']), { after: 'keep' });
add('valid/tab-inside-value', http(ok, ['X-Tab: a\tb', 'Content-Length: 0']), { after: 'keep' });
add('valid/no-space-after-colon', http(ok, ['X-Tight:value', 'Content-Length: 0']), { after: 'keep' });
add('valid/empty-value', http(ok, ['X-Empty:', 'Content-Length: 0']), { after: 'keep' });
add('valid/empty-value-spaces', http(ok, ['X-Empty:   ', 'Content-Length: 0']), { after: 'keep' });
add('valid/value-with-colons', http(ok, ['X-Time: 12:34:56', 'Content-Length: 0']), { after: 'keep' });
add('valid/value-with-quotes-and-commas', http(ok, ['X-List: "a, b", c', 'Content-Length: 0']), {
  after: 'keep',
});
add('valid/token-chars-in-name', http(ok, ["X-!#$%&'*+-.^_`|~09az: tokens", 'Content-Length: 0']), {
  after: 'keep',
});
add('valid/proxy-connection-header', http(ok, ['Proxy-Connection: close', 'Content-Length: 2'], 'ok'), {
  after: 'keep',
});
add(
  'valid/keep-alive-timeout-header',
  http(ok, ['Connection: keep-alive', 'Keep-Alive: timeout=5', 'Content-Length: 2'], 'ok'),
  {
    after: 'keep',
  },
);
add(
  'valid/trailer-header-announced',
  http(ok, ['Trailer: X-Sum', 'Transfer-Encoding: chunked'], '2\r\nok\r\n0\r\nX-Sum: 1\r\n\r\n'),
  {
    after: 'keep',
  },
);
add(
  'valid/upgrade-header-on-200-with-length',
  http(ok, ['Connection: upgrade', 'Upgrade: h2c', 'Content-Length: 4'], 'body'),
  {
    after: 'keep',
  },
);
add(
  'valid/upgrade-header-on-200-chunked',
  http(ok, ['Connection: upgrade', 'Upgrade: h2c', 'Transfer-Encoding: chunked'], '2\r\nbo\r\n0\r\n\r\n'),
  {
    after: 'keep',
  },
);
add('valid/upgrade-header-on-200-until-close', http(ok, ['Connection: upgrade', 'Upgrade: h2c'], 'body'));
add(
  'valid/content-length-x-is-not-content-length',
  http(ok, ['Content-Length-X: 0', 'Transfer-Encoding: chunked'], '2\r\nOK\r\n0\r\n\r\n'),
  {
    after: 'keep',
  },
);
add(
  'valid/transfer-encoding-x-is-not-te',
  http(ok, ['Transfer-Encoding-X: chunked', 'Content-Length: 3'], 'abc'),
  {
    after: 'keep',
  },
);
add(
  'valid/many-headers-1000',
  http(ok, [...Array.from({ length: 1000 }, (_, i) => `X-H${i}: ${i}`), 'Content-Length: 0']),
  {
    after: 'keep',
  },
);

// ---------------------------------------------------------------------------------------------
// Status lines.
const statusLines: Array<[string, string]> = [
  ['status/http-1.0', 'HTTP/1.0 200 OK'],
  ['status/http-2.0', 'HTTP/2.0 200 OK'],
  ['status/http-0.9', 'HTTP/0.9 200 OK'],
  ['status/http-1.2', 'HTTP/1.2 200 OK'],
  ['status/http-5.6', 'HTTP/5.6 200 OK'],
  ['status/http-01.1', 'HTTP/01.1 200 OK'],
  ['status/http-11.1', 'HTTP/11.1 200 OK'],
  ['status/http-1.01', 'HTTP/1.01 200 OK'],
  ['status/lowercase-http', 'http/1.1 200 OK'],
  ['status/htp', 'HTP/1.1 200 OK'],
  ['status/no-version', '200 OK'],
  ['status/icy', 'ICY 200 OK'],
  ['status/rtsp', 'RTSP/1.0 200 OK'],
  ['status/no-reason', 'HTTP/1.1 200'],
  ['status/no-reason-trailing-space', 'HTTP/1.1 200 '],
  ['status/reason-with-spaces', 'HTTP/1.1 200 Very Much OK'],
  ['status/reason-leading-space', 'HTTP/1.1 200  OK'],
  ['status/reason-obs-text', 'HTTP/1.1 200 \xe9t\xe9 \xff'],
  ['status/reason-tab', 'HTTP/1.1 200 O\tK'],
  ['status/reason-nul', 'HTTP/1.1 200 O\x00K'],
  ['status/reason-ctl', 'HTTP/1.1 200 O\x01K'],
  ['status/reason-del', 'HTTP/1.1 200 O\x7fK'],
  ['status/reason-bare-cr', 'HTTP/1.1 200 O\rK'],
  ['status/two-spaces-before-code', 'HTTP/1.1  200 OK'],
  ['status/tab-after-version', 'HTTP/1.1\t200 OK'],
  ['status/missing-space-after-version', 'HTTP/1.1200 OK'],
  ['status/missing-space-after-code', 'HTTP/1.1 200OK'],
  ['status/code-one-digit', 'HTTP/1.1 2 OK'],
  ['status/code-two-digits', 'HTTP/1.1 20 OK'],
  ['status/code-four-digits', 'HTTP/1.1 2000 OK'],
  ['status/code-099', 'HTTP/1.1 099 Low'],
  ['status/code-000', 'HTTP/1.1 000 Zero'],
  ['status/code-600', 'HTTP/1.1 600 High'],
  ['status/code-999', 'HTTP/1.1 999 High'],
  ['status/code-letters', 'HTTP/1.1 2OO OK'],
  ['status/code-negative', 'HTTP/1.1 -200 OK'],
  ['status/code-plus', 'HTTP/1.1 +20 OK'],
  ['status/trailing-space-version', 'HTTP/1.1 '],
  ['status/only-version', 'HTTP/1.1'],
  ['status/leading-space', ' HTTP/1.1 200 OK'],
  ['status/leading-crlf', '\r\nHTTP/1.1 200 OK'],
  ['status/leading-cr', '\rHTTP/1.1 200 OK'],
  ['status/leading-lf', '\nHTTP/1.1 200 OK'],
  ['status/leading-nul', '\x00HTTP/1.1 200 OK'],
];
// Those llhttp accepts but RFC 9112 §4 / RFC 9110 §15 do not, the proxy may refuse: see leeway().
for (const [name, line] of statusLines) add(name, http(line, ['Content-Length: 2'], 'ok'));
add('status/bare-lf-after-status-line', `HTTP/1.1 200 OK\nContent-Length: 2${CRLF}${CRLF}ok`);
add('status/only-lfs', 'HTTP/1.1 200 OK\nContent-Length: 2\n\nok');
add('status/empty-response', '');
add('status/garbage', 'this is not http at all\r\n\r\n');
add('status/binary-garbage', Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1]));
add(
  'status/http-1.0-keep-alive-length',
  http('HTTP/1.0 200 OK', ['Connection: keep-alive', 'Content-Length: 2'], 'ok'),
  {
    after: 'keep',
  },
);
add('status/http-1.0-until-close', http('HTTP/1.0 200 OK', [], 'bye'));
add(
  'status/http-1.0-keep-alive-until-close',
  http('HTTP/1.0 200 OK', ['Connection: keep-alive'], 'HTTP/1.0 200 OK'),
);
add(
  'status/http-1.0-chunked',
  http('HTTP/1.0 200 OK', ['Transfer-Encoding: chunked'], '2\r\nok\r\n0\r\n\r\n'),
);

// ---------------------------------------------------------------------------------------------
// Content-Length (RFC 9112 §6.3 items 5 and 6; RFC 9110 §8.6).
const lengths: Array<[string, string, string]> = [
  ['content-length/plus', '+5', 'hello'],
  ['content-length/minus-one', '-1', 'hello'],
  ['content-length/leading-space', ' 5', 'hello'],
  ['content-length/trailing-space', '5 ', 'hello'],
  ['content-length/leading-tab', '\t5', 'hello'],
  ['content-length/surrounding-tabs', '\t5\t', 'hello'],
  ['content-length/hex', '0x5', 'hello'],
  ['content-length/hex-letters', 'a', '0123456789'],
  ['content-length/leading-zeros', '005', 'hello'],
  ['content-length/zero-zero', '00', ''],
  ['content-length/comma-same', '5,5', 'hello'],
  ['content-length/comma-one-one', '1,1', 'h'],
  ['content-length/comma-space-same', '5, 5', 'hello'],
  ['content-length/comma-differing', '5,6', 'hello!'],
  ['content-length/comma-trailing', '5,', 'hello'],
  ['content-length/comma-leading', ',5', 'hello'],
  ['content-length/inner-space', '5 5', 'hello'],
  ['content-length/decimal-point', '5.0', 'hello'],
  ['content-length/exponent', '5e0', 'hello'],
  ['content-length/empty', '', ''],
  ['content-length/letters', 'five', 'hello'],
  ['content-length/nul', '5\x00', 'hello'],
  ['content-length/huge-2^53', '9007199254740993', 'hello'],
  ['content-length/huge-2^64', '18446744073709551616', 'hello'],
  ['content-length/huge-many-digits', '9'.repeat(40), 'hello'],
  ['content-length/max-safe-short-body', '9007199254740991', 'hello'],
  ['content-length/unicode-digit', '\xb2', 'hello'],
];
for (const [name, value, body] of lengths) add(name, http(ok, [`Content-Length: ${value}`], body));
add('content-length/repeated-same', http(ok, ['Content-Length: 5', 'Content-Length: 5'], 'hello'));
add('content-length/repeated-differing', http(ok, ['Content-Length: 5', 'Content-Length: 6'], 'hello!'));
add('content-length/repeated-differing-zero', http(ok, ['Content-Length: 0', 'Content-Length: 5'], 'hello'));
add('content-length/repeated-case', http(ok, ['Content-Length: 5', 'content-length: 5'], 'hello'));
add('content-length/shorter-than-body', http(ok, ['Content-Length: 3'], 'hello'), {
  doubtful: extraAfterBody,
});
add(
  'content-length/shorter-than-body-keep',
  http(ok, ['Content-Length: 3'], 'helloHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'),
  {
    after: 'keep',
    doubtful: extraAfterBody,
  },
);
add('content-length/longer-than-body', http(ok, ['Content-Length: 10'], 'hello'));
add('content-length/body-missing', http(ok, ['Content-Length: 5']));
add(
  'content-length/zero-then-pipelined-response',
  http(ok, ['Content-Length: 0'], 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!'),
  {
    after: 'keep',
    doubtful: extraAfterBody,
  },
);
add('content-length/space-before-colon', http(ok, ['Content-Length : 5'], 'hello'));
add('content-length/tab-before-colon', http(ok, ['Content-Length\t: 5'], 'hello'));
add('content-length/head-with-length', http(ok, ['Content-Length: 1000']), {
  after: 'keep',
  methods: ['HEAD'],
});

// ---------------------------------------------------------------------------------------------
// Transfer-Encoding (RFC 9112 §6.1, §6.3 items 3 and 4).
const chunkedBody = '5\r\nhello\r\n0\r\n\r\n';
add('te/cl-and-te', http(ok, ['Content-Length: 5', 'Transfer-Encoding: chunked'], chunkedBody));
add('te/te-and-cl', http(ok, ['Transfer-Encoding: chunked', 'Content-Length: 5'], chunkedBody));
add(
  'te/cl-zero-and-te-smuggling',
  http(ok, ['Content-Length: 0', 'Transfer-Encoding: chunked'], chunkedBody),
  {
    after: 'keep',
  },
);
add(
  'te/cl-and-te-smuggled-response',
  http(
    ok,
    ['Transfer-Encoding: chunked', 'Content-Length: 47'],
    `0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!`,
  ),
  { after: 'keep' },
);
add('te/cl-and-te-identity', http(ok, ['Content-Length: 5', 'Transfer-Encoding: identity'], 'hello'));
add('te/chunked-identity', http(ok, ['Transfer-Encoding: chunked, identity'], 'hello'));
add('te/identity-chunked', http(ok, ['Transfer-Encoding: identity, chunked'], chunkedBody));
add('te/gzip-chunked', http(ok, ['Transfer-Encoding: gzip, chunked'], chunkedBody));
add('te/chunked-gzip', http(ok, ['Transfer-Encoding: chunked, gzip'], 'hello'));
add('te/chunked-deflate', http(ok, ['Transfer-Encoding: chunked, deflate'], 'World'));
add('te/gzip-only', http(ok, ['Transfer-Encoding: gzip'], 'compressed?'));
add('te/identity-only', http(ok, ['Transfer-Encoding: identity'], 'as is'));
add('te/chunked-chunked', http(ok, ['Transfer-Encoding: chunked, chunked'], chunkedBody));
add('te/chunkedchunked', http(ok, ['Transfer-Encoding: chunkedchunked'], '2\r\nOK\r\n0\r\n\r\n'));
add('te/chunked-x', http(ok, ['Transfer-Encoding: chunked-x'], chunkedBody));
add('te/xchunked', http(ok, ['Transfer-Encoding: xchunked'], chunkedBody));
add(
  'te/two-lines-chunked-last',
  http(ok, ['Transfer-Encoding: gzip', 'Transfer-Encoding: chunked'], chunkedBody),
);
add(
  'te/two-lines-chunked-first',
  http(ok, ['Transfer-Encoding: chunked', 'Transfer-Encoding: identity'], 'World'),
);
add(
  'te/two-lines-chunked-twice',
  http(ok, ['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], chunkedBody),
);
add('te/empty', http(ok, ['Transfer-Encoding:', 'Content-Length: 5'], 'hello'));
add('te/empty-alone', http(ok, ['Transfer-Encoding:'], 'hello'));
add('te/space-before-chunked', http(ok, ['Transfer-Encoding:    chunked'], chunkedBody), { after: 'keep' });
add('te/trailing-space-chunked', http(ok, ['Transfer-Encoding: chunked   '], chunkedBody), { after: 'keep' });
add('te/tab-chunked', http(ok, ['Transfer-Encoding:\tchunked'], chunkedBody), { after: 'keep' });
add('te/comma-space-list', http(ok, ['Transfer-Encoding: gzip ,  chunked'], chunkedBody));
add('te/leading-comma', http(ok, ['Transfer-Encoding: , chunked'], chunkedBody));
add('te/trailing-comma', http(ok, ['Transfer-Encoding: chunked,'], chunkedBody));
add('te/chunked-with-parameter', http(ok, ['Transfer-Encoding: chunked;q=1'], chunkedBody));
add('te/vertical-tab', http(ok, ['Transfer-Encoding: \x0bchunked'], chunkedBody));
add('te/space-before-colon', http(ok, ['Transfer-Encoding : chunked'], chunkedBody));
add(
  'te/http-1.0-cl-and-te',
  http('HTTP/1.0 200 OK', ['Content-Length: 5', 'Transfer-Encoding: chunked'], chunkedBody),
);
add(
  'te/obs-fold-after-chunked',
  http(ok, ['Transfer-Encoding: chunked', '  abc'], '5\r\nWorld\r\n0\r\n\r\n'),
);
add('te/head-with-te', http(ok, ['Transfer-Encoding: chunked']), { after: 'keep', methods: ['HEAD'] });

// ---------------------------------------------------------------------------------------------
// Chunked bodies (RFC 9112 §7.1).
function chunked(body: string, extraHeaders: readonly string[] = []): string {
  return http(ok, ['Transfer-Encoding: chunked', ...extraHeaders], body);
}
const chunks: Array<[string, string, 'close' | 'keep']> = [
  ['chunk/size-uppercase-hex', 'A\r\n0123456789\r\n0\r\n\r\n', 'keep'],
  ['chunk/size-lowercase-hex', 'a\r\n0123456789\r\n0\r\n\r\n', 'keep'],
  ['chunk/size-leading-zeros', '0005\r\nhello\r\n0\r\n\r\n', 'keep'],
  ['chunk/size-many-leading-zeros', `${'0'.repeat(30)}5\r\nhello\r\n0\r\n\r\n`, 'keep'],
  ['chunk/last-chunk-leading-zeros', '5\r\nhello\r\n000\r\n\r\n', 'keep'],
  ['chunk/size-0x-prefix', '0x5\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/size-plus', '+5\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/size-minus', '-5\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/size-empty', '\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/size-letters', 'g\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/size-overflow-64bit', '10000000000000000\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/size-overflow-long', `${'f'.repeat(20)}\r\nhello\r\n0\r\n\r\n`, 'close'],
  ['chunk/size-just-under-2^53-short', '1fffffffffffff\r\nhello', 'close'],
  ['chunk/size-leading-space', ' 5\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/size-trailing-space', '5 \r\nhello\r\n0\r\n\r\n', 'close'],
  [
    'chunk/size-trailing-spaces-llhttp-case',
    '25  \r\nThis is the data in the first chunk\r\n0\r\n\r\n',
    'close',
  ],
  ['chunk/size-trailing-tab', '5\t\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/space-before-semicolon', '5 ;ext\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/tab-before-semicolon', '5\t;ext\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/no-semicolon-before-extension', '2 erfrferferf\r\naa\r\n0 rrrr\r\n\r\n', 'close'],
  ['chunk/extension-name', '5;name\r\nhello\r\n0\r\n\r\n', 'keep'],
  ['chunk/extension-name-value', '5;name=value\r\nhello\r\n0\r\n\r\n', 'keep'],
  ['chunk/extensions-several', '5;a=1;b=2;c\r\nhello\r\n6;blahblah;blah\r\n world\r\n0\r\n\r\n', 'keep'],
  ['chunk/extension-quoted', '5;name="quoted value"\r\nhello\r\n0\r\n\r\n', 'keep'],
  ['chunk/extension-quoted-semicolon', '5;a="I love; extensions";b="x";c;d=e\r\nhello\r\n0\r\n\r\n', 'keep'],
  ['chunk/extension-quoted-escape', '5;a="x\\"y"\r\nhello\r\n0\r\n\r\n', 'keep'],
  ['chunk/extension-quoted-unbalanced', '5;a="abc";b="def; ghi\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/extension-empty-after-semicolon', '2;\r\naa\r\n0\r\n\r\n', 'close'],
  ['chunk/extension-space-after-semicolon', '5; name=value\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/extension-space-around-equals', '5;name = value\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/extension-empty-value', '5;name=\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/extension-nul', '5;na\x00me\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/extension-ctl-in-value', '5;name=va\x01lue\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/extension-bare-cr', '5;name\rx\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/extension-obs-text-in-quotes', '5;name="\xe9"\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/extension-on-last-chunk', '5\r\nhello\r\n0;last=yes\r\n\r\n', 'keep'],
  ['chunk/extension-long', `5;${'n'.repeat(3000)}=${'v'.repeat(3000)}\r\nhello\r\n0\r\n\r\n`, 'close'],
  ['chunk/bare-lf-after-size', '5\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/bare-cr-after-size', '5\rhello\r\n0\r\n\r\n', 'close'],
  ['chunk/bare-lf-after-data', '5\r\nhello\n0\r\n\r\n', 'close'],
  ['chunk/missing-crlf-after-data', '5\r\nhello0\r\n\r\n', 'close'],
  ['chunk/data-longer-than-size', '3\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/data-shorter-than-size', '7\r\nhello\r\n0\r\n\r\n', 'close'],
  ['chunk/cr-only-after-data', '5\r\nhello\r0\r\n\r\n', 'close'],
  ['chunk/garbage-after-data', '5\r\nhelloXY\r\n0\r\n\r\n', 'close'],
  ['chunk/bare-lf-after-last-chunk', '5\r\nhello\r\n0\n\r\n', 'close'],
  ['chunk/bare-lf-final', '5\r\nhello\r\n0\r\n\n', 'close'],
  ['chunk/all-bare-lf', '5\nhello\n0\n\n', 'close'],
  ['chunk/no-last-chunk-then-close', '5\r\nhello\r\n', 'close'],
  ['chunk/last-chunk-without-final-crlf', '5\r\nhello\r\n0\r\n', 'close'],
  ['chunk/cut-in-size', '5\r\nhello\r\n1', 'close'],
  ['chunk/cut-in-data', '5\r\nhel', 'close'],
  ['chunk/cut-in-trailers', '5\r\nhello\r\n0\r\nX-T: 1\r\n', 'close'],
  ['chunk/trailer-valid', '5\r\nhello\r\n0\r\nX-Trailer: yes\r\n\r\n', 'keep'],
  ['chunk/trailers-several', '5\r\nhello\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n', 'keep'],
  ['chunk/trailer-content-length', '5\r\nhello\r\n0\r\nContent-Length: 100\r\n\r\n', 'keep'],
  ['chunk/trailer-no-colon', '5\r\nhello\r\n0\r\nnot a header\r\n\r\n', 'close'],
  ['chunk/trailer-space-in-name', '5\r\nhello\r\n0\r\nX Trailer: 1\r\n\r\n', 'close'],
  ['chunk/trailer-space-before-colon', '5\r\nhello\r\n0\r\nX-Trailer : 1\r\n\r\n', 'close'],
  ['chunk/trailer-nul-in-value', '5\r\nhello\r\n0\r\nX-Trailer: a\x00b\r\n\r\n', 'close'],
  ['chunk/trailer-obs-fold', '5\r\nhello\r\n0\r\nX-Trailer: a\r\n b\r\n\r\n', 'close'],
  ['chunk/trailer-bare-lf', '5\r\nhello\r\n0\r\nX-Trailer: a\n\r\n', 'close'],
  ['chunk/trailer-empty-name', '5\r\nhello\r\n0\r\n: x\r\n\r\n', 'close'],
  ['chunk/many-small-chunks', `${'1\r\nx\r\n'.repeat(500)}0\r\n\r\n`, 'keep'],
  ['chunk/zero-size-middle-then-more', '5\r\nhello\r\n0\r\n\r\n5\r\nworld\r\n0\r\n\r\n', 'keep'],
];
for (const [name, body, after] of chunks) {
  const extra = /then-more/.test(name) ? { doubtful: extraAfterBody } : {};
  add(name, chunked(body), { after, ...extra });
}

// ---------------------------------------------------------------------------------------------
// Header names (RFC 9110 §5.1: a token; RFC 9112 §5.1: no whitespace before the colon).
const names: Array<[string, string]> = [
  ['name/space-inside', 'X Bad: 1'],
  ['name/space-before-colon', 'X-Bad : 1'],
  ['name/tab-before-colon', 'X-Bad\t: 1'],
  ['name/leading-space-first-line', ' X-Bad: 1'],
  ['name/empty', ': value'],
  ['name/no-colon', 'X-No-Colon'],
  ['name/no-colon-with-space', 'X No Colon'],
  ['name/nul', 'X-B\x00ad: 1'],
  ['name/ctl', 'X-B\x01ad: 1'],
  ['name/del', 'X-B\x7fad: 1'],
  ['name/obs-text', 'X-B\xe9d: 1'],
  ['name/quote', 'X-"Bad": 1'],
  ['name/parenthesis', 'X-(Bad): 1'],
  ['name/slash', 'X/Bad: 1'],
  ['name/at', 'X@Bad: 1'],
  ['name/brackets', 'X[Bad]: 1'],
  ['name/braces', 'X{Bad}: 1'],
  ['name/equals', 'X=Bad: 1'],
  ['name/comma', 'X,Bad: 1'],
  ['name/semicolon', 'X;Bad: 1'],
  ['name/question', 'X?Bad: 1'],
  ['name/backslash', 'X\\Bad: 1'],
  ['name/less-greater', 'X<Bad>: 1'],
  ['name/bare-cr', 'X-B\rad: 1'],
  ['name/vertical-tab', 'X-B\x0bad: 1'],
  ['name/form-feed', 'X-B\x0cad: 1'],
  ['name/long-4k', `X-${'n'.repeat(4096)}: 1`],
];
for (const [name, line] of names) add(name, http(ok, ['Content-Length: 2', line], 'ok'));
add('name/space-inside-content-length', http(ok, ['Content Length: 5'], 'hello'));
add('name/colon-first-then-value', http(ok, [':Content-Length: 5'], 'hello'));

// ---------------------------------------------------------------------------------------------
// Header values (RFC 9110 §5.5: VCHAR, obs-text, SP and HTAB inside; no CTLs).
const values: Array<[string, string]> = [
  ['value/nul', 'a\x00b'],
  ['value/nul-at-end', 'ab\x00'],
  ['value/soh', 'a\x01b'],
  ['value/backspace', 'a\x08b'],
  ['value/vertical-tab', 'a\x0bb'],
  ['value/form-feed', 'a\x0cb'],
  ['value/escape', 'a\x1bb'],
  ['value/unit-separator', 'a\x1fb'],
  ['value/del', 'a\x7fb'],
  ['value/obs-text-0x80', 'a\x80b'],
  ['value/obs-text-0xe9', 'caf\xe9'],
  ['value/obs-text-0xff', 'a\xffb'],
  ['value/obs-text-utf8', Buffer.from('naïve ✓', 'utf8').toString('latin1')],
  ['value/bare-cr-inside', 'a\rb'],
  ['value/bare-cr-at-end', 'ab\r'],
  [
    'value/all-visible-ascii',
    '!"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~',
  ],
  ['value/long-8k', 'v'.repeat(8192)],
];
for (const [name, value] of values)
  add(name, http(ok, ['Content-Length: 2', `X-Value: ${value}`], 'ok'), { after: 'keep' });
add('value/bare-lf-inside', `HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Value: a\nb\r\n\r\nok`);
add('value/bare-lf-ends-line', `HTTP/1.1 200 OK\r\nX-Value: a\nContent-Length: 2\r\n\r\nok`);
add('value/bare-lf-ends-last-line', `HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok`);
add('value/bare-lf-empty-line', `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\nok`);
add('value/headers-separated-by-cr', `HTTP/1.1 200 OK\r\nFoo: 1\rBar: 2\r\nContent-Length: 2\r\n\r\nok`);
add('value/cr-cr-lf', `HTTP/1.1 200 OK\r\nContent-Length: 2\r\r\n\r\nok`);
add('value/lf-cr', `HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\r\nok`);
add('value/nul-in-content-type', http(ok, ['Content-Type: text/html\x00', 'Content-Length: 2'], 'ok'));
add(
  'value/crlf-injection-attempt-encoded',
  http(ok, ['Location: /a%0d%0aSet-Cookie:x=1', 'Content-Length: 0']),
  {
    after: 'keep',
  },
);

// ---------------------------------------------------------------------------------------------
// obs-fold (RFC 9112 §5.2: a recipient either rejects it or replaces it by spaces).
// llhttp (Node 24) rejects obs-fold in responses, so the proxy must reject it too.
add('fold/space', http(ok, ['X-Folded: first', ' second', 'Content-Length: 2'], 'ok'));
add('fold/tab', http(ok, ['X-Folded: first', '\tsecond', 'Content-Length: 2'], 'ok'));
add('fold/several-lines', http(ok, ['X-Folded: a', ' b', '  c', 'Content-Length: 2'], 'ok'));
add('fold/empty-first-value', http(ok, ['X-Folded:', ' later', 'Content-Length: 2'], 'ok'));
add('fold/content-length', http(ok, ['Content-Length:', ' 2'], 'ok'));
add('fold/content-length-continued', http(ok, ['Content-Length: 2', ' 3'], 'ok'));
add('fold/transfer-encoding', http(ok, ['Transfer-Encoding:', ' chunked'], chunkedBody));
add('fold/first-header-line', http(ok, [' X-Folded: first', 'Content-Length: 2'], 'ok'));
add('fold/whitespace-only-line', http(ok, ['X-A: 1', '   ', 'Content-Length: 2'], 'ok'));

// ---------------------------------------------------------------------------------------------
// Size of the head: Node's default --max-http-header-size is 16 KiB for the whole head.
function headOfSize(total: number): string {
  const start = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n';
  const filler = total - start.length - 'X-Fill: '.length - 2 - 2;
  return `${start}X-Fill: ${'f'.repeat(filler)}\r\n\r\nok`;
}
add('limits/head-8k', headOfSize(8 * 1024), { after: 'keep' });
add('limits/head-16k-minus-256', headOfSize(16 * 1024 - 256), { after: 'keep' });
add('limits/head-16k-plus-256', headOfSize(16 * 1024 + 256));
add('limits/head-20k', headOfSize(20 * 1024));
add('limits/head-64k', headOfSize(64 * 1024));
add('limits/head-100k', headOfSize(100 * 1024));
add(
  'limits/many-headers-16k-minus',
  http(ok, [...Array.from({ length: 1500 }, (_, i) => `H${i}: v`), 'Content-Length: 2'], 'ok'),
  { after: 'keep' },
);
add('limits/status-line-8k-reason', http(`HTTP/1.1 200 ${'R'.repeat(8000)}`, ['Content-Length: 2'], 'ok'), {
  after: 'keep',
});
add('limits/status-line-20k-reason', http(`HTTP/1.1 200 ${'R'.repeat(20_000)}`, ['Content-Length: 2'], 'ok'));
add('limits/head-never-ends', `HTTP/1.1 200 OK\r\n${'X-Endless: 1\r\n'.repeat(3000)}`);

// ---------------------------------------------------------------------------------------------
// Interim (1xx) responses, RFC 9110 §15.2.
add('interim/100-then-200', `HTTP/1.1 100 Continue\r\n\r\n${http(ok, ['Content-Length: 2'], 'ok')}`, {
  after: 'keep',
});
add(
  'interim/100-twice-then-200',
  `HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n${http(ok, ['Content-Length: 2'], 'ok')}`,
  {
    after: 'keep',
  },
);
add(
  'interim/103-with-links-then-200',
  `HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\nLink: </app.js>; rel=preload\r\n\r\n${http(ok, ['Content-Length: 2'], 'ok')}`,
  { after: 'keep' },
);
add('interim/102-then-200', `HTTP/1.1 102 Processing\r\n\r\n${http(ok, ['Content-Length: 2'], 'ok')}`, {
  after: 'keep',
});
add('interim/199-then-200', `HTTP/1.1 199 Odd\r\n\r\n${http(ok, ['Content-Length: 2'], 'ok')}`, {
  after: 'keep',
});
add(
  'interim/100-then-chunked',
  `HTTP/1.1 100 Continue\r\n\r\n${http(ok, ['Transfer-Encoding: chunked'], chunkedBody)}`,
  {
    after: 'keep',
  },
);
add('interim/100-then-close', 'HTTP/1.1 100 Continue\r\n\r\n');
add('interim/100-then-invalid', 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2OO OK\r\n\r\n');
add(
  'interim/100-with-content-length',
  `HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n${http(ok, ['Content-Length: 2'], 'ok')}`,
);
add(
  'interim/100-with-body-bytes',
  `HTTP/1.1 100 Continue\r\n\r\nhello${http(ok, ['Content-Length: 2'], 'ok')}`,
);
add(
  'interim/100-bad-header',
  `HTTP/1.1 100 Continue\r\nX Bad: 1\r\n\r\n${http(ok, ['Content-Length: 2'], 'ok')}`,
);
add('interim/101-without-upgrade', 'HTTP/1.1 101 Switching Protocols\r\n\r\n');
add(
  'interim/101-with-upgrade-header',
  'HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nproto',
);
add(
  'interim/101-with-content-length',
  'HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 4\r\n\r\nbodyproto',
);
add(
  'interim/101-then-200',
  `HTTP/1.1 101 Switching Protocols\r\n\r\n${http(ok, ['Content-Length: 2'], 'ok')}`,
);

// ---------------------------------------------------------------------------------------------
// Responses without a body (RFC 9112 §6.3 item 1) and HEAD.
add('bodyless/204', 'HTTP/1.1 204 No Content\r\n\r\n', { after: 'keep', methods: getHead });
add('bodyless/204-with-content-length', http('HTTP/1.1 204 No Content', ['Content-Length: 5'], 'hello'), {
  after: 'keep',
  doubtful: 'a body on a response that cannot have one',
});
add(
  'bodyless/204-with-chunked',
  http('HTTP/1.1 204 No Content', ['Transfer-Encoding: chunked'], chunkedBody),
  {
    after: 'keep',
    doubtful: 'a body on a response that cannot have one',
  },
);
add(
  'bodyless/204-then-response',
  `HTTP/1.1 204 No content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!`,
  {
    after: 'keep',
    doubtful: extraAfterBody,
  },
);
add(
  'bodyless/204-close-then-data',
  `HTTP/1.1 204 No content\r\nConnection: close\r\n\r\nHTTP/1.1 200 OK\r\n\r\n`,
  {
    doubtful: extraAfterBody,
  },
);
add('bodyless/304', 'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n', { after: 'keep', methods: getHead });
add(
  'bodyless/304-with-content-length',
  http('HTTP/1.1 304 Not Modified', ['ETag: "x"', 'Content-Length: 5'], 'hello'),
  {
    after: 'keep',
    doubtful: 'a body on a response that cannot have one',
  },
);
add('bodyless/304-content-length-no-body', http('HTTP/1.1 304 Not Modified', ['Content-Length: 500']), {
  after: 'keep',
});
add('bodyless/head-content-length-no-body', http(ok, ['Content-Length: 123']), {
  after: 'keep',
  methods: ['HEAD'],
});
add('bodyless/head-chunked-no-body', http(ok, ['Transfer-Encoding: chunked']), {
  after: 'keep',
  methods: ['HEAD'],
});
add('bodyless/head-with-body-bytes', http(ok, ['Content-Length: 5'], 'hello'), {
  after: 'keep',
  methods: ['HEAD'],
  doubtful: 'a body on a response to HEAD',
});
add('bodyless/head-no-framing', http(ok, ['Content-Type: text/plain']), { after: 'keep', methods: ['HEAD'] });
add('bodyless/head-bad-content-length', http(ok, ['Content-Length: abc']), {
  after: 'keep',
  methods: ['HEAD'],
});

// ---------------------------------------------------------------------------------------------
// Responses that end early: the target closes in the middle.
const full = http(ok, ['Content-Type: text/plain', 'Content-Length: 11'], 'hello world');
for (const cut of [1, 5, 9, 12, 15, 20, 30, 45, 60, full.length - 1]) {
  add(`early/close-after-${cut}-bytes`, full.slice(0, cut));
}
add('early/close-in-chunk-data', chunked('b\r\nhello'));
add('early/close-after-head-length', http(ok, ['Content-Length: 11']));
add('early/close-after-head-chunked', http(ok, ['Transfer-Encoding: chunked']));
add('early/close-after-cr-of-empty-line', `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r`);

// ---------------------------------------------------------------------------------------------
// Connection management (RFC 9112 §9).
add(
  'connection/close-data-after-length',
  http(ok, ['Content-Length: 5', 'Connection: close'], 'hello-and-more'),
  {
    doubtful: extraAfterBody,
  },
);
add('connection/close-uppercase', http(ok, ['Connection: CLOSE', 'Content-Length: 2'], 'ok'));
add('connection/close-in-list', http(ok, ['Connection: foo, close', 'Content-Length: 2'], 'ok'));
add('connection/keep-alive-http-1.1', http(ok, ['Connection: keep-alive', 'Content-Length: 2'], 'ok'), {
  after: 'keep',
});
add('connection/closed-token-is-not-close', http(ok, ['Connection: closed', 'Content-Length: 2'], 'ok'), {
  after: 'keep',
});
add(
  'connection/names-extra-header',
  http(ok, ['Connection: X-Hop', 'X-Hop: secret', 'Content-Length: 2'], 'ok'),
  {
    after: 'keep',
  },
);
add('connection/keep-alive-zero-timeout', http(ok, ['Keep-Alive: timeout=0', 'Content-Length: 2'], 'ok'), {
  after: 'keep',
});
add(
  'connection/keep-alive-garbage',
  http(ok, ['Keep-Alive: timeout=abc, max=-1', 'Content-Length: 2'], 'ok'),
  {
    after: 'keep',
  },
);
add(
  'connection/http-1.0-204-keep-alive-then-data',
  'HTTP/1.0 204 No content\r\nConnection: keep-alive\r\n\r\nHTTP/1.0 200 OK\r\n',
  {
    doubtful: extraAfterBody,
  },
);
add(
  'connection/http-1.1-until-close-with-response-in-body',
  'HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n\r\n',
);

// ---------------------------------------------------------------------------------------------
// More shapes seen in the wild and in node's own client tests.
add('more/http-1.0-no-headers-body', 'HTTP/1.0 200 OK\r\n\r\nan old server');
add(
  'more/content-type-repeated',
  http(ok, ['Content-Type: text/plain', 'Content-Type: text/html', 'Content-Length: 2'], 'ok'),
  {
    after: 'keep',
  },
);
add(
  'more/www-authenticate-repeated',
  http('HTTP/1.1 401 Unauthorized', [
    'WWW-Authenticate: Basic realm="a"',
    'WWW-Authenticate: Bearer',
    'Content-Length: 0',
  ]),
  {
    after: 'keep',
  },
);
add(
  'more/location-relative',
  http('HTTP/1.1 301 Moved Permanently', ['Location: ../up?x=1#f', 'Content-Length: 0']),
  {
    after: 'keep',
  },
);
add('more/value-trailing-mixed-whitespace', http(ok, ['X-Ws: a \t \t', 'Content-Length: 0']), {
  after: 'keep',
});
add('more/name-uppercase', http(ok, ['X-UPPER: 1', 'CONTENT-LENGTH: 2'], 'ok'), { after: 'keep' });
add('more/chunk-size-0X-prefix', chunked('0X5\r\nhello\r\n0\r\n\r\n'));
add('more/chunk-extension-quoted-cr', chunked('5;a="x\ry"\r\nhello\r\n0\r\n\r\n'));
add('more/chunk-extension-quoted-tab', chunked('5;a="x\ty"\r\nhello\r\n0\r\n\r\n'), { after: 'keep' });
add('more/te-mixed-case-list', http(ok, ['Transfer-Encoding: GZIP, Chunked'], chunkedBody), {
  after: 'keep',
});
add('more/status-reason-only-spaces', http('HTTP/1.1 200    ', ['Content-Length: 2'], 'ok'), {
  after: 'keep',
});
add(
  'more/103-twice-then-200',
  `HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </b>\r\n\r\n${http(ok, ['Content-Length: 2'], 'ok')}`,
  { after: 'keep' },
);
add('more/content-length-plus-zero', http(ok, ['Content-Length: +0']));
add('more/content-length-many-zeros', http(ok, [`Content-Length: ${'0'.repeat(25)}5`], 'hello'), {
  after: 'keep',
});
add('more/te-in-trailer', chunked('5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n'));
add('more/set-cookie-with-obs-text', http(ok, ['Set-Cookie: n=caf\xe9; Path=/', 'Content-Length: 0']), {
  after: 'keep',
});
add(
  'more/header-value-with-semicolon-crlf-text',
  http(ok, ['X-Text: \\r\\n is text here', 'Content-Length: 0']),
  {
    after: 'keep',
  },
);
add('more/response-with-nul-body', http(ok, ['Content-Length: 3'], '\x00\x00\x00'), { after: 'keep' });
add('more/chunk-data-with-crlf-inside', chunked('4\r\n\r\n\r\n\r\n0\r\n\r\n'), { after: 'keep' });
add(
  'more/status-201-chunked-empty',
  http('HTTP/1.1 201 Created', ['Transfer-Encoding: chunked'], '0\r\n\r\n'),
  {
    after: 'keep',
  },
);

// ---------------------------------------------------------------------------------------------
// Cut just after the first wrong byte, then closed: llhttp refuses at that byte, so the proxy
// must answer 502 (a refusal), not 503 (a target that closed early).
const cuts: Array<[string, string]> = [
  ['cut/garbage-first-byte', 'Q'],
  ['cut/status-letter', 'HTTP/1.1 2x'],
  ['cut/version', 'HTTP/1.2'],
  ['cut/header-name-space', 'HTTP/1.1 200 OK\r\nX A'],
  ['cut/header-value-nul', 'HTTP/1.1 200 OK\r\nX-A: a\x00'],
  ['cut/header-value-bare-lf', 'HTTP/1.1 200 OK\r\nX-A: a\nb'],
  ['cut/content-length-letter', 'HTTP/1.1 200 OK\r\nContent-Length: x'],
  ['cut/content-length-plus', 'HTTP/1.1 200 OK\r\nContent-Length: +'],
  ['cut/content-length-duplicate', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6'],
  ['cut/content-length-after-te', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5'],
  ['cut/te-after-content-length', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked'],
  ['cut/content-length-overflow', `HTTP/1.1 200 OK\r\nContent-Length: ${'9'.repeat(30)}`],
];
for (const [name, text] of cuts) add(name, text);
add('cut/chunk-size-letter', chunked('g'));
add('cut/chunk-extension-double-semicolon', chunked('5;;'));
add('cut/chunk-size-overflow', chunked('f'.repeat(20)));
add(
  'interim/103-then-empty-line-then-200',
  `HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\r\n${http(ok, ['Content-Length: 2'], 'ok')}`,
);

// ---------------------------------------------------------------------------------------------
// 0xA0 (NBSP in latin1) is obs-text to llhttp but whitespace to String.prototype.trim(): a
// parser that trims framing values with it disagrees with llhttp on the body length.
add('nbsp/te-before-chunked', http(ok, ['Transfer-Encoding:\xa0chunked'], chunkedBody));
add('nbsp/te-after-chunked', http(ok, ['Transfer-Encoding: chunked\xa0'], chunkedBody));
add('nbsp/content-length-before', http(ok, ['Content-Length:\xa05'], 'hello'));
add('nbsp/content-length-after', http(ok, ['Content-Length: 5\xa0'], 'hello'));
add('nbsp/connection-close', http(ok, ['Connection: close\xa0', 'Content-Length: 2'], 'ok'), {
  after: 'keep',
});
add('nbsp/chunk-size', chunked('5\xa0\r\nhello\r\n0\r\n\r\n'));
add('nbsp/other-header-value', http(ok, ['X-A:\xa0a\xa0', 'Content-Length: 2'], 'ok'), { after: 'keep' });
add('cut/header-empty-name', 'HTTP/1.1 200 OK\r\n:');

/** The corpus, in a fixed order. */
export const corpus: readonly CorpusEntry[] = entries;

// ---------------------------------------------------------------------------------------------
// A raw TCP target: reads request heads (`GET /e/<index>...`) and writes the entry's bytes.

export interface RawTarget {
  port: number;
  url: string;
  /** Sockets open on the target's side right now. */
  readonly open: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Requests read so far. */
  readonly requests: number;
  /** Destroys every open socket. */
  dropAll(): void;
  close(): Promise<void>;
}

/**
 * Answers `/<letters>/<index>` with `respond(index)`: each write of the list (awaiting `gap` between them,
 * if set), then the connection ends when `after` says `close`. Request bodies are not expected.
 */
export async function startRawTarget(
  respond: (index: number) => { writes: readonly Buffer[]; after: 'close' | 'keep'; gapMs?: number },
): Promise<RawTarget> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  let requests = 0;
  const server: Server = createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let buffer = Buffer.alloc(0);
    let busy = false;
    const next = async (): Promise<void> => {
      if (busy) return;
      const end = buffer.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = buffer.toString('latin1', 0, end);
      buffer = buffer.subarray(end + 4);
      requests++;
      const match = /^[A-Z]+ \/[a-z]+\/(\d+)/.exec(head);
      if (!match) {
        socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      const { writes, after, gapMs } = respond(Number(match[1]));
      busy = true;
      for (let i = 0; i < writes.length; i++) {
        if (socket.destroyed) return;
        if (i > 0 && gapMs !== undefined) await new Promise((resolve) => setTimeout(resolve, gapMs));
        if (socket.destroyed) return;
        socket.write(writes[i]!);
      }
      busy = false;
      if (after === 'close') socket.end();
      else await next();
    };
    socket.on('data', (data: Buffer) => {
      buffer = Buffer.concat([buffer, data]);
      void next();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    get open() {
      return sockets.size;
    },
    get accepted() {
      return accepted;
    },
    get requests() {
      return requests;
    },
    dropAll() {
      for (const socket of sockets) socket.destroy();
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

// ---------------------------------------------------------------------------------------------
// One response as node:http's client sees it.

export interface Observation {
  /**
   * `complete`: the response ended as framed; `incomplete`: the head was accepted, then the body
   * failed or the connection closed early; `rejected`: an error before any head was accepted;
   * `upgrade`: node reported a protocol switch; `hang`: nothing ended it before the deadline.
   */
  outcome: 'complete' | 'incomplete' | 'rejected' | 'upgrade' | 'hang';
  status?: number;
  statusMessage?: string;
  rawHeaders?: string[];
  /** Interim (1xx) statuses node reported before the final response. */
  interim: number[];
  /** Body bytes received (for `incomplete`: those that arrived before the failure). */
  body: Buffer;
  /** The error's code (HPE_..., ECONNRESET) and message. */
  error?: string;
  /** The error on bytes that followed a response llhttp had completed (which still counts as accepted). */
  afterEnd?: string;
  /** Whether the request went out on a kept-alive connection used before. */
  reusedSocket: boolean;
}

/** Requests `url` with node:http and reports what happened, never rejecting. */
export function observe(
  url: string,
  options: { method: Method; agent: Agent | false; deadlineMs: number },
): Promise<Observation> {
  return new Promise((resolve) => {
    const interim: number[] = [];
    const chunks: Buffer[] = [];
    let response: IncomingMessage | undefined;
    let settled = false;
    let afterEnd: string | undefined;
    const req = request(url, { method: options.method, agent: options.agent });
    const finish = (outcome: Observation['outcome'], error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const code = (error as NodeJS.ErrnoException | undefined)?.code;
      resolve({
        outcome,
        ...(response
          ? {
              status: response.statusCode,
              statusMessage: response.statusMessage,
              rawHeaders: response.rawHeaders,
            }
          : {}),
        interim,
        body: Buffer.concat(chunks),
        ...(error ? { error: `${code ?? 'ERROR'}: ${error.message}` } : {}),
        ...(afterEnd ? { afterEnd } : {}),
        reusedSocket: req.reusedSocket,
      });
      if (outcome !== 'complete') req.destroy();
    };
    const timer = setTimeout(() => finish('hang'), options.deadlineMs);
    req.on('information', (info) => interim.push(info.statusCode));
    req.on('upgrade', (res, socket) => {
      response = res;
      socket.destroy();
      finish('upgrade');
    });
    req.on('response', (res) => {
      response = res;
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => finish(res.complete ? 'complete' : 'incomplete'));
      res.on('aborted', () => finish('incomplete', new Error('aborted')));
      res.on('error', (error) => finish('incomplete', error));
      res.on('close', () =>
        finish(res.complete ? 'complete' : 'incomplete', new Error('closed before the end')),
      );
    });
    req.on('error', (error) => {
      // Bytes after a response llhttp had already completed: the response stands, the connection not.
      if (response?.complete)
        afterEnd = `${(error as NodeJS.ErrnoException).code ?? 'ERROR'}: ${error.message}`;
      else finish(response ? 'incomplete' : 'rejected', error);
    });
    req.on('close', () => {
      if (!response) finish('rejected', new Error('closed without a response'));
    });
    req.end();
  });
}

/** A short printable form of an observation, for failure messages. */
export function describe(observation: Observation): string {
  const body = observation.body.toString('latin1');
  return JSON.stringify({
    ...observation,
    body: body.length > 200 ? `${body.slice(0, 200)}... (${body.length} bytes)` : body,
    rawHeaders: observation.rawHeaders?.map((item) =>
      item.length > 100 ? `${item.slice(0, 100)}...` : item,
    ),
  });
}

// ---------------------------------------------------------------------------------------------
// The rule of issue 10 for one request: what llhttp saw against what came through the proxy.

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) the proxy does not relay; the client sees its own
 * connection's instead. Headers a target names in `Connection` may be dropped too, or relayed.
 */
export const hopByHop: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
]);

/** The end-to-end headers of a raw header list, as [name, value] pairs in order. */
function endToEnd(raw: readonly string[], alsoDrop: ReadonlySet<string>): string[][] {
  const pairs: string[][] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (hopByHop.has(name) || alsoDrop.has(name)) continue;
    pairs.push([raw[i]!, raw[i + 1]!]);
  }
  return pairs;
}

/** Header names a response's `Connection` header lists (each may be relayed or dropped). */
function connectionNamed(raw: readonly string[]): Set<string> {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'connection') continue;
    for (const token of raw[i + 1]!.split(',')) {
      const name = token.trim().toLowerCase();
      if (name && name !== 'close' && name !== 'keep-alive') named.add(name);
    }
  }
  return named;
}

function hasHeader(raw: readonly string[] | undefined, name: string): boolean {
  for (let i = 0; i < (raw?.length ?? 0); i += 2) if (raw![i]!.toLowerCase() === name) return true;
  return false;
}

/** Whether the llhttp failure is the connection closing before a head, rather than a parse error. */
export function closedEarly(oracle: Observation): boolean {
  return /^(ECONNRESET|ERROR: closed without a response)/.test(oracle.error ?? '');
}

export interface Verdict {
  problems: string[];
  /** The proxy refused the response (502/503) or cut it: the exchange was not a clean relay. */
  refused: boolean;
  /** The proxy answered with an error of its own (502, or 503 for a target that closed early). */
  errorAnswer: boolean;
}

/**
 * The rule of issue 10, for one request: what llhttp rejects the proxy rejects; what llhttp accepts
 * the proxy relays exactly, except where the entry says RFC 9112 lets it reject instead.
 */
export function judge(entry: CorpusEntry, oracle: Observation, proxied: Observation): Verdict {
  const problems: string[] = [];
  const proxyError =
    proxied.outcome === 'complete' &&
    (proxied.status === 502 || (proxied.status === 503 && closedEarly(oracle)));
  if (proxied.outcome === 'hang' && oracle.outcome !== 'hang')
    problems.push("the proxy's answer did not end before the deadline");
  switch (oracle.outcome) {
    case 'complete': {
      if (proxyError && (entry.stricter ?? leeway(entry.bytes))) break; // the RFCs let it refuse this
      if (proxied.outcome !== 'complete') {
        problems.push(`llhttp accepted it, but the proxy's answer was ${proxied.outcome}`);
        break;
      }
      if (proxied.status !== oracle.status) {
        problems.push(`status ${proxied.status} through the proxy, ${oracle.status} from llhttp`);
        break;
      }
      if (!proxied.body.equals(oracle.body))
        problems.push(
          `body of ${proxied.body.length} bytes through the proxy, ${oracle.body.length} from llhttp`,
        );
      const named = connectionNamed(oracle.rawHeaders!);
      const expected = endToEnd(oracle.rawHeaders!, named);
      // The proxy's own server adds a Date when the target sent none.
      const added = new Set(named);
      if (!hasHeader(oracle.rawHeaders, 'date')) added.add('date');
      const relayed = endToEnd(proxied.rawHeaders!, added);
      if (JSON.stringify(relayed) !== JSON.stringify(expected))
        problems.push(`headers differ: proxy ${JSON.stringify(relayed)}, llhttp ${JSON.stringify(expected)}`);
      break;
    }
    case 'rejected':
    case 'upgrade': {
      if (proxyError) {
        const leaked = targetHeaderNames(entry.bytes).filter((name) => hasHeader(proxied.rawHeaders, name));
        if (leaked.length > 0)
          problems.push(`the proxy's error answer carries the target's ${leaked.join(', ')}`);
        break;
      }
      problems.push(
        `llhttp ${oracle.outcome === 'upgrade' ? 'switched protocols' : 'rejected it'}, but the proxy answered ` +
          `${proxied.outcome} ${proxied.status ?? ''} (expected 502${closedEarly(oracle) ? ' or 503' : ''})`,
      );
      break;
    }
    case 'incomplete': {
      // llhttp accepted the head, so the proxy may have committed to it: then the client's
      // connection is cut, before or after the head reached it.
      if (proxyError || proxied.outcome === 'rejected') break;
      if (proxied.outcome !== 'incomplete') {
        problems.push(
          `llhttp failed in the body, but the proxy's answer was ${proxied.outcome} ${proxied.status ?? ''} ` +
            '(expected a 502 or a cut response)',
        );
        break;
      }
      // (The body bytes are not compared: node drops what its stream still buffered when it fails.)
      if (proxied.status !== oracle.status)
        problems.push(`status ${proxied.status} through the proxy, ${oracle.status} from llhttp`);
      break;
    }
    case 'hang':
      break; // llhttp waits for ever too; the proxy may wait or give up
  }
  return { problems, refused: proxied.outcome !== 'complete' || proxyError, errorAnswer: proxyError };
}

/** Headers an error answer of the proxy has of its own. */
const proxyOwn = new Set([
  'content-type',
  'content-length',
  'date',
  'connection',
  'keep-alive',
  'transfer-encoding',
]);

/** The names of the header lines in a raw response's first head, but those the proxy sets itself. */
function targetHeaderNames(raw: Buffer): string[] {
  const end = raw.indexOf('\r\n\r\n');
  const head = raw.toString('latin1', 0, end === -1 ? raw.length : end);
  const names = new Set<string>();
  for (const line of head.split('\r\n').slice(1)) {
    const match = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):/.exec(line);
    if (match && !proxyOwn.has(match[1]!.toLowerCase())) names.add(match[1]!.toLowerCase());
  }
  return [...names];
}

/**
 * Why the RFCs let the proxy refuse a response whose status lines llhttp accepts, or undefined:
 * llhttp takes any HTTP/, RTSP/ or ICE/ version it knows, any three digits, CTLs in the reason and
 * empty lines before a status line; RFC 9112 §4 and RFC 9110 §15 do not, and node:http could not
 * send a status under 100 or a CTL in a reason on. A 101 to a request without Upgrade (RFC 9110
 * §15.2.2) cannot be relayed either. Interim (1xx) heads are looked through to the final one.
 */
export function leeway(raw: Buffer): string | undefined {
  let text = raw.toString('latin1');
  for (;;) {
    if (/^[\r\n]/.test(text))
      return 'empty lines before a status line (RFC 9112 §2.2 allows them before requests)';
    const eol = text.indexOf('\r\n');
    const line = eol === -1 ? text : text.slice(0, eol);
    const match = /^([A-Z]+\/\d\.\d) (\d{3})(?: (.*))?$/s.exec(line);
    if (!match) return undefined; // llhttp rejects it, or stops before: nothing to allow
    const status = Number(match[2]);
    if (match[1] !== 'HTTP/1.1' && match[1] !== 'HTTP/1.0') return `not an HTTP/1.x status line: ${match[1]}`;
    if (status < 100 || status > 599) return `status ${match[2]} outside 100-599 (RFC 9110 §15)`;
    if (hasCtl(match[3] ?? '')) return 'a CTL in the reason phrase (RFC 9112 §4)';
    if (status === 101) return 'a 101 to a request without Upgrade (RFC 9110 §15.2.2)';
    if (status >= 200) return undefined;
    const end = text.indexOf('\r\n\r\n');
    if (end === -1) return undefined;
    text = text.slice(end + 4);
  }
}

/** Whether `text` holds a control character other than HTAB. */
function hasCtl(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if ((code < 0x20 && code !== 0x09) || code === 0x7f) return true;
  }
  return false;
}
